// fedai: the command line of fed-ai. Exit codes: 0 ok, 1 failure, 2 usage/config, 3 unreachable,
// 4 doctor found problems.
// Start time: this file imports only commander and ./output. Each command's implementation (and
// through it the SDK, zod, settlement...) is imported inside its action, so --version and --help
// load nothing else (tools/cli/test/cli-start.test.ts checks; pnpm bench:cli measures).
import { Command, Option } from 'commander';
import { EXIT, fail, failUnexpected } from './output';

const program = new Command('fedai')
  .description('fed-ai: a federated pay-as-you-go AI inference network')
  .version('0.1.0')
  .showHelpAfterError()
  .exitOverride((error) => process.exit(error.exitCode === 0 ? EXIT.ok : EXIT.usage));

const routerOptions = (cmd: Command) =>
  cmd
    .option('--router <url>', 'router URL (default: FEDAI_ROUTER_URL or ./data/devnet.json)')
    .option('--api-key <key>', 'API key (default: FEDAI_API_KEY or ./data/devnet.json)')
    .option('--json', 'machine-readable output');

program
  .command('up')
  .description('start a local network: relay, router and two nodes on 127.0.0.1, then send one request')
  .option('--detach', 'run in the background; stop with fedai down')
  .option(
    '--model <pathOrUrl>',
    'GGUF path, hf: URI or OpenAI-compatible base URL (default: FEDAI_MODEL, local servers, demo model)',
  )
  .option('--no-first-request', 'skip the first request')
  .option(
    '--routers <n>',
    'federated: n routers (2-5), each with its own settlement and node, on one relay and one devnet Lightning service',
  )
  .action(async (flags) => {
    const { up } = await import('./commands/up');
    const routers = flags.routers === undefined ? 1 : Number(flags.routers);
    if (!Number.isInteger(routers) || routers < 1 || routers > 5) {
      process.stderr.write('fedai up: --routers takes a whole number from 1 to 5\n');
      process.exit(EXIT.usage);
    }
    await up({ detach: flags.detach, model: flags.model, firstRequest: flags.firstRequest, routers });
  });

program
  .command('down')
  .description('stop a network started with fedai up --detach')
  .action(async () => (await import('./commands/up')).down());

const keys = program
  .command('keys')
  .description('your Nostr identity key (nsec/npub), stored with mode 0600');
keys
  .command('new')
  .description('create a key file')
  .option('--file <path>', 'key file (default ./data/user.key)')
  .option('--force', 'show the existing key instead of refusing')
  .option('--json', 'machine-readable output')
  .action(async (flags) => (await import('./commands/keys')).keysNew(flags));
keys
  .command('show')
  .description('show the public key (and --secret for the nsec)')
  .option('--file <path>', 'key file (default ./data/user.key)')
  .option('--secret', 'also print the nsec')
  .option('--json', 'machine-readable output')
  .action(async (flags) => (await import('./commands/keys')).keysShow(flags));

routerOptions(
  program
    .command('chat')
    .description('send a prompt and stream the answer')
    .argument('<prompt>', 'what to ask')
    .option('--model <id>', 'model id (default: the network model)')
    .option('--max-tokens <n>', 'most tokens to generate', '128')
    .option('--temperature <t>', 'sampling temperature 0..2')
    .option('--system <text>', 'system message')
    .addOption(new Option('--sort <mode>', 'prefer nodes by').choices(['price', 'latency', 'throughput'])),
).action(async (prompt, flags) => (await import('./commands/chat')).chat(prompt, flags));

const modelsCmd = routerOptions(
  program.command('models').description('models on the network with prices'),
).action(async (flags) => (await import('./commands/info')).models(flags));
modelsCmd
  .command('demo')
  .description('write the demo GGUF model (seeded random weights: its output is noise)')
  .option('--out <dir>', 'folder (default ./data/models)')
  .action(async (flags: { out?: string }) => {
    const { resolve } = await import('node:path');
    const { dataDir } = await import('./devnet-file');
    const { REPO_ROOT } = await import('./services');
    const mod = (await import(resolve(REPO_ROOT, 'services/node/src/demo-model.ts'))) as {
      ensureDemoModel: (dir: string) => Promise<string> | string;
    };
    const path = await mod.ensureDemoModel(flags.out ?? resolve(dataDir(), 'models'));
    process.stdout.write(`${path}\n(demo model: deterministic random weights, answers are noise)\n`);
  });

routerOptions(program.command('nodes').description('nodes known to the router')).action(async (flags) =>
  (await import('./commands/info')).nodes(flags),
);
routerOptions(
  program.command('peers').description('peer routers this router discovered on its federation relays'),
).action(async (flags) => (await import('./commands/peers')).peers(flags));
routerOptions(program.command('status').description('router status')).action(async (flags) =>
  (await import('./commands/info')).status(flags),
);
routerOptions(
  program
    .command('quote')
    .description('the most a prompt can cost')
    .argument('<prompt>')
    .option('--model <id>', 'model id')
    .option('--max-tokens <n>', 'most tokens to generate', '128'),
).action(async (prompt, flags) => (await import('./commands/info')).quote(prompt, flags));

const apikey = program
  .command('apikey')
  .description('API keys (operator: NIP-98 signed with ./data/operator.key)');
const adminOptions = (cmd: Command) =>
  routerOptions(cmd).option('--operator-key <file>', 'operator key file (default ./data/operator.key)');
adminOptions(
  apikey
    .command('create')
    .description('create an API key (shown once)')
    .requiredOption('--name <name>', 'label')
    .option('--rpm <n>', 'requests per minute')
    .option('--tpm <n>', 'tokens per minute')
    .option('--parallel <n>', 'max parallel requests')
    .option('--budget-day <msat>', 'spend budget in msat per UTC day')
    .option('--budget-month <msat>', 'spend budget in msat per UTC month'),
).action(async (flags) => (await import('./commands/apikey')).apikeyCreate(flags));
adminOptions(
  apikey
    .command('budget')
    .description('set (or with "none" remove) a key\'s spend budgets')
    .argument('<id>')
    .option('--day <msat|none>', 'msat per UTC day')
    .option('--month <msat|none>', 'msat per UTC month'),
).action(async (id, flags) => (await import('./commands/apikey')).apikeyBudget(id, flags));
adminOptions(apikey.command('list').description('list API keys')).action(async (flags) =>
  (await import('./commands/apikey')).apikeyList(flags),
);
adminOptions(apikey.command('revoke').description('revoke an API key').argument('<id>')).action(
  async (id, flags) => (await import('./commands/apikey')).apikeyRevoke(id, flags),
);

const tab = program
  .command('tab')
  .description("your API key's prepaid tab: top up, balance, history, refund (amounts in msat)");
routerOptions(
  tab
    .command('topup')
    .description('ask for a BOLT11 invoice; on the local network (devnet.json) pay it from the faucet')
    .argument('<amount_msat>', 'msat to add (1 sat = 1000 msat), at least 1000')
    .option('--faucet', 'pay it from the devnet faucet (default: when the router is the one of devnet.json)')
    .option('--no-faucet', 'only print the invoice'),
).action(async (amount, flags) => (await import('./commands/tab')).tabTopup(amount, flags));
routerOptions(tab.command('balance').description('balance and reserved amount')).action(async (flags) =>
  (await import('./commands/tab')).tabBalance(flags),
);
routerOptions(tab.command('history').description('recent charges, each with its node-signed receipt')).action(
  async (flags) => (await import('./commands/tab')).tabHistory(flags),
);
routerOptions(
  tab
    .command('refund')
    .description('pay the unused balance to a BOLT11 invoice (its amount)')
    .argument('<bolt11>', 'the invoice to pay'),
).action(async (bolt11, flags) => (await import('./commands/tab')).tabRefund(bolt11, flags));

const dispute = program
  .command('dispute')
  .description('dispute a charge of your API key by its receipt (docs/disputes.md)');
routerOptions(
  dispute
    .command('open')
    .description('open a case: the node-signed receipt and, from the native API, the signed response')
    .requiredOption('--receipt <file>', 'the receipt (JSON, or the x-fedai-receipt header value)')
    .option('--response <file>', 'the router-signed inference response (native API)'),
).action(async (flags) => (await import('./commands/dispute')).disputeOpen(flags));
routerOptions(dispute.command('show').description('show a case and its verdict').argument('<id>')).action(
  async (id, flags) => (await import('./commands/dispute')).disputeShow(id, flags),
);

const wallet = program
  .command('wallet')
  .description(
    "agents' wallets in a wallet fleet (owner: NIP-98 signed with ./data/owner.key; amounts in msat)",
  );
const walletOptions = (cmd: Command) =>
  cmd
    .option('--fleet <url>', 'wallet fleet URL (default: FEDAI_WALLET_FLEET_URL or ./data/devnet.json)')
    .option(
      '--owner-key <file>',
      'owner key file (default: devnet.json wallet_owner_key_file or ./data/owner.key)',
    )
    .option('--json', 'machine-readable output');
const walletCommands = () => import('./commands/wallet');
walletOptions(
  wallet
    .command('create')
    .description('create a wallet (default policy: live, 100,000 msat a UTC day, approval above 50,000)')
    .requiredOption('--name <name>', 'label')
    .option('--group <group>', 'group (for group switches)')
    .option('--policy <file>', 'policy JSON file, or - for stdin'),
).action(async (flags) => (await walletCommands()).walletCreate(flags));
walletOptions(wallet.command('list').description('your wallets with balance and policy')).action(
  async (flags) => (await walletCommands()).walletList(flags),
);
walletOptions(wallet.command('show').description('one wallet, with its policy').argument('<id>')).action(
  async (id, flags) => (await walletCommands()).walletShow(id, flags),
);
walletOptions(
  wallet
    .command('policy')
    .description("a wallet's policy")
    .command('set')
    .description('a new policy version')
    .argument('<id>')
    .requiredOption('--file <file>', 'policy JSON file, or - for stdin'),
).action(async (id, flags) => (await walletCommands()).walletPolicySet(id, flags));
walletOptions(
  wallet
    .command('connect')
    .description('a new NWC connection: prints its nostr+walletconnect:// URI (the secret is shown once)')
    .argument('<id>')
    .option('--name <name>', 'label (default agent)')
    .option('--expires-in <seconds>', 'the connection expires after this many seconds'),
).action(async (id, flags) => (await walletCommands()).walletConnect(id, flags));
walletOptions(
  wallet.command('revoke').description('revoke an NWC connection').argument('<client-pubkey>'),
).action(async (pubkey, flags) => (await walletCommands()).walletRevoke(pubkey, flags));
walletOptions(
  wallet
    .command('fund')
    .description('move msat from your treasury to a wallet (idempotent by op id)')
    .argument('<id>')
    .argument('<amount_msat>')
    .option('--op-id <id>', 'operation id; reuse it to retry (default: random, printed)'),
).action(async (id, amount, flags) => (await walletCommands()).walletFund(id, amount, flags));
const treasury = walletOptions(wallet.command('treasury').description('your treasury balance')).action(
  async (flags) => (await walletCommands()).walletTreasury(flags),
);
walletOptions(
  treasury
    .command('topup')
    .description('a treasury invoice (BOLT11); --faucet pays it from the local network faucet')
    .argument('<amount_msat>', 'at least 1000')
    .option(
      '--faucet',
      'pay it through the devnet router faucet (./data/devnet.json) and wait for the credit',
    ),
).action(async (amount, _flags, cmd: Command) =>
  // --json, --fleet and --owner-key may also land on `treasury` (it has them too): take both.
  (await walletCommands()).walletTreasuryTopup(amount, cmd.optsWithGlobals()),
);
walletOptions(wallet.command('approvals').description('payments waiting for your approval')).action(
  async (flags) => (await walletCommands()).walletApprovals(flags),
);
for (const [name, approve] of [
  ['approve', true],
  ['deny', false],
] as const)
  walletOptions(
    wallet.command(name).description(`${name} a pending payment`).argument('<approval-id>'),
  ).action(async (id, flags) => (await walletCommands()).walletDecide(id, approve, flags));
for (const [name, what] of [
  ['kill', 'stop payments and cancel pending approvals'],
  ['pause', 'stop payments for now'],
  ['revive', 'let payments through again'],
] as const)
  walletOptions(
    wallet
      .command(name)
      .description(`${what}: one wallet, a group, or --all of yours`)
      .argument('[wallet-id]')
      .option('--group <group>', 'every wallet of this group')
      .option('--all', 'every wallet of yours (the fleet switch)'),
  ).action(async (id, flags) => (await walletCommands()).walletSwitch(name, id, flags));
const audit = wallet.command('audit').description("the fleet's hash-chained audit log");
walletOptions(
  audit
    .command('export')
    .description('every entry as JSON lines (stdout or --out)')
    .option('--out <file>', 'write to this file (mode 0600)'),
).action(async (flags) => (await walletCommands()).walletAuditExport(flags));
walletOptions(
  audit
    .command('verify')
    .description('check the chain: ok with count and head hash, or the first bad seq (exit 4)'),
).action(async (flags) => (await walletCommands()).walletAuditVerify(flags));

const serviceCommands = new Map<string, Command>();
for (const service of ['node', 'router', 'relay', 'settlement'] as const) {
  const command = program
    .command(service)
    .description(`run a ${service} (configured by environment variables; see docs/cli.md)`);
  serviceCommands.set(service, command);
  command
    .command('start')
    .description(`start a ${service} in the foreground`)
    .action(async () => {
      const { resolve } = await import('node:path');
      const { REPO_ROOT, SERVICE_ENTRY } = await import('./services');
      await import(resolve(REPO_ROOT, SERVICE_ENTRY[service]));
    });
}

// A node's payouts (docs/lightning.md "Payouts"): NIP-98 signed with the node's own key.
const nodeOptions = (cmd: Command) =>
  cmd
    .option('--node-dir <dir>', "the node's DATA_DIR (default: DATA_DIR or ./data/node)")
    .option('--key <file>', "the node's key file (default: <node-dir>/node.key)")
    .option('--settlement <url>', 'settlement URL (default: SETTLEMENT_URL or ./data/devnet.json)')
    .option('--json', 'machine-readable output');
const payoutCommands = () => import('./commands/payout');
const nodePayout = serviceCommands
  .get('node')!
  .command('payout')
  .description("where settlement pays this node's earnings, and its payouts");
nodeOptions(
  nodePayout
    .command('set')
    .description('pay to a Lightning address or to the node wallet of an NWC connection')
    .option('--lightning-address <address>', 'name@domain (LUD-16)')
    .option('--nwc <uri>', 'nostr+walletconnect://… of the node wallet (needs make_invoice)'),
).action(async (flags) => (await payoutCommands()).payoutSet(flags));
nodeOptions(nodePayout.command('show').description('the destination and recent payouts')).action(
  async (flags) => (await payoutCommands()).payoutShow(flags),
);
nodeOptions(
  serviceCommands
    .get('node')!
    .command('statement')
    .description("settlement's signed payout statements")
    .command('verify')
    .description("check every paid statement against the node's own metering log (exit 4 on a problem)")
    .option('--settlement-pubkey <hex>', "settlement's key (default: the one its /v1/info names)"),
).action(async (flags) => (await payoutCommands()).statementVerify(flags));

// Operator: keep a node out of the router for good (NIP-98 signed with the operator key; no unban).
adminOptions(
  serviceCommands
    .get('node')!
    .command('ban')
    .description('ban a node at the router for good: no unban route exists (operator)')
    .argument('<id>', 'node pubkey (64 hex) or a unique prefix of it (fedai nodes)'),
).action(async (id, flags) => (await import('./commands/node-ban')).nodeBan(id, flags));

program
  .command('payouts')
  .description('node payouts at settlement (operators)')
  .command('run')
  .description('pay every node whose payable earnings pass the threshold, now')
  .option('--settlement <url>', 'a running settlement service (default: ./data/devnet.json)')
  .option('--operator-key <file>', 'operator key file (default ./data/operator.key)')
  .option('--json', 'machine-readable output')
  .action(async (flags) => (await payoutCommands()).payoutsRun(flags));

program
  .command('ledger')
  .description('the settlement ledger')
  .command('verify')
  .description(
    'prove total debits = total credits, every balance recomputed from transfers, flags held, no stale holds',
  )
  .option('--database-url <url>', 'PostgreSQL of the settlement service (default: DATABASE_URL)')
  .option('--settlement <url>', 'a running settlement service (default: ./data/devnet.json)')
  .option('--operator-key <file>', 'operator key file (default ./data/operator.key)')
  .option('--json', 'machine-readable output')
  .action(async (flags) => (await import('./commands/ledger')).ledgerVerify(flags));

program
  .command('reconcile')
  .description(
    'compare the ledger with the Lightning backend: credit top-ups settled behind its back, resolve pending payments, report the balance difference',
  )
  .option('--settlement <url>', 'a running settlement service (default: ./data/devnet.json)')
  .option('--operator-key <file>', 'operator key file (default ./data/operator.key)')
  .option('--limit <n>', 'most top-ups and payments this run looks at (1..1000)')
  .option('--json', 'machine-readable output')
  .action(async (flags) => (await import('./commands/reconcile')).reconcileCommand(flags));

program
  .command('simulate')
  .description(
    'run a market simulation (tools/simulator): the real scheduler, breaker and money rules on a virtual clock; writes report.json, report.md and SVG charts',
  )
  .argument('<scenario>', 'a scenario name in tools/simulator/scenarios (e.g. steady-market) or a JSON file')
  .option('--seed <n>', "override the scenario's seed (0..4294967295)")
  .option('--out <dir>', 'report folder (default ./data/simulations/<scenario>)')
  .option('--json', 'machine-readable output')
  .action(async (scenario: string, flags: { seed?: string; out?: string; json?: boolean }) => {
    const { resolve } = await import('node:path');
    const { REPO_ROOT } = await import('./services');
    const sim = (await import(resolve(REPO_ROOT, 'tools/simulator/src/shell.ts'))) as {
      simulateCommand: (
        nameOrPath: string,
        flags: { seed?: string; out?: string; json?: boolean },
      ) => unknown;
    };
    try {
      sim.simulateCommand(scenario, flags);
    } catch (error) {
      const e = error as { name?: unknown; code?: unknown; detail?: unknown };
      if (e?.name !== 'SimError') throw error;
      fail(String(e.code), String(e.detail), {
        exit: EXIT.usage,
        fix: 'see tools/simulator/scenarios and docs/simulator.md for the scenario format',
      });
    }
  });

program
  .command('soak')
  .description(
    'soak test: a fresh local network in a temporary folder, a steady paid load, every service sampled (RSS, heap, fds, event-loop delay), ledger verify; writes soak.json and soak.md',
  )
  .option('--minutes <n>', 'how long the load runs (fractions too, e.g. 0.5)', '60')
  .option('--out <dir>', 'report folder (default ./data/soak)')
  .option('--clients <n>', 'concurrent clients, each at most one request a second (1..16)', '4')
  .option('--sample-s <n>', 'seconds between samples', '5')
  .option('--model <pathOrUrl>', 'as for fedai up (default: FEDAI_MODEL, local servers, demo model)')
  .option('--keep-data', 'keep the temporary data folder (logs, databases)')
  .action(async (flags) => (await import('./commands/soak')).soak(flags));

program
  .command('chaos')
  .description(
    'chaos test: the soak network and paid load with seeded faults (SIGKILL + restart of a service, relay restart, a node stopped mid-stream, slow settlement, with --postgres a PostgreSQL crash); then ledger verify, charges against answers, reservations, breakers; writes chaos.json and chaos.md',
  )
  .option('--minutes <n>', 'how long the load runs (fractions too, e.g. 0.5)', '10')
  .option('--seed <n>', 'seed of the fault schedule (0..2^32-1; default: random, printed)')
  .option('--out <dir>', 'report folder (default ./data/chaos)')
  .option('--clients <n>', 'concurrent clients, each at most one request a second (1..16)', '4')
  .option('--model <pathOrUrl>', 'as for fedai up (default: FEDAI_MODEL, local servers, demo model)')
  .option(
    '--reservation-timeout-s <n>',
    "the router's RESERVATION_TIMEOUT_S: holds a killed router left expire after it (10..86400)",
    '60',
  )
  .option('--keep-data', 'keep the temporary data folder (logs, databases)')
  .option(
    '--postgres',
    'router, settlement and wallet fleet on one PostgreSQL server (Debian postgresql), which faults crash and restart',
  )
  .action(async (flags) => (await import('./commands/chaos')).chaos(flags));

program
  .command('doctor')
  .description(
    'check Node, ports, database, relay, model files, key permissions, clock skew and unsafe service settings',
  )
  .option('--ports <list>', 'ports to check, comma separated (default 7447,7000,7101,7102)')
  .option(
    '--services <list>',
    "services whose settings to check for a safe start (default: fedai.toml's sections, else all but lightning-devnet)",
  )
  .option('--json', 'machine-readable output')
  .action(async (flags) => (await import('./commands/doctor')).doctor(flags));

try {
  await program.parseAsync(process.argv);
} catch (error) {
  failUnexpected(error);
}
