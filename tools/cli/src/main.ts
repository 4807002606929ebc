// fedai: the command line of fed-ai. Exit codes: 0 ok, 1 failure, 2 usage/config, 3 unreachable,
// 4 doctor found problems.
import { resolve } from 'node:path';
import { Command, Option } from 'commander';
import { apikeyCreate, apikeyList, apikeyRevoke } from './commands/apikey';
import { chat } from './commands/chat';
import { doctor } from './commands/doctor';
import { models, nodes, quote, status } from './commands/info';
import { keysNew, keysShow } from './commands/keys';
import { ledgerVerify } from './commands/ledger';
import { down, up } from './commands/up';
import { dataDir } from './devnet-file';
import { EXIT } from './output';
import { REPO_ROOT, SERVICE_ENTRY, type ServiceName } from './services';

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
  .action((flags) => up({ detach: flags.detach, model: flags.model, firstRequest: flags.firstRequest }));

program
  .command('down')
  .description('stop a network started with fedai up --detach')
  .action(() => down());

const keys = program
  .command('keys')
  .description('your Nostr identity key (nsec/npub), stored with mode 0600');
keys
  .command('new')
  .description('create a key file')
  .option('--file <path>', 'key file (default ./data/user.key)')
  .option('--force', 'show the existing key instead of refusing')
  .option('--json', 'machine-readable output')
  .action((flags) => keysNew(flags));
keys
  .command('show')
  .description('show the public key (and --secret for the nsec)')
  .option('--file <path>', 'key file (default ./data/user.key)')
  .option('--secret', 'also print the nsec')
  .option('--json', 'machine-readable output')
  .action((flags) => keysShow(flags));

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
).action((prompt, flags) => chat(prompt, flags));

const modelsCmd = routerOptions(
  program.command('models').description('models on the network with prices'),
).action((flags) => models(flags));
modelsCmd
  .command('demo')
  .description('write the demo GGUF model (seeded random weights: its output is noise)')
  .option('--out <dir>', 'folder', resolve(dataDir(), 'models'))
  .action(async (flags) => {
    const mod = (await import(resolve(REPO_ROOT, 'services/node/src/demo-model.ts'))) as {
      ensureDemoModel: (dir: string) => Promise<string> | string;
    };
    const path = await mod.ensureDemoModel(flags.out);
    process.stdout.write(`${path}\n(demo model: deterministic random weights, answers are noise)\n`);
  });

routerOptions(program.command('nodes').description('nodes known to the router')).action((flags) =>
  nodes(flags),
);
routerOptions(program.command('status').description('router status')).action((flags) => status(flags));
routerOptions(
  program
    .command('quote')
    .description('the most a prompt can cost')
    .argument('<prompt>')
    .option('--model <id>', 'model id')
    .option('--max-tokens <n>', 'most tokens to generate', '128'),
).action((prompt, flags) => quote(prompt, flags));

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
    .option('--parallel <n>', 'max parallel requests'),
).action((flags) => apikeyCreate(flags));
adminOptions(apikey.command('list').description('list API keys')).action((flags) => apikeyList(flags));
adminOptions(apikey.command('revoke').description('revoke an API key').argument('<id>')).action((id, flags) =>
  apikeyRevoke(id, flags),
);

for (const service of ['node', 'router', 'relay', 'settlement'] as const) {
  program
    .command(service)
    .description(`run a ${service} (configured by environment variables; see docs/cli.md)`)
    .command('start')
    .description(`start a ${service} in the foreground`)
    .action(() => startService(service));
}

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
  .action((flags) => ledgerVerify(flags));

program
  .command('doctor')
  .description('check Node, ports, database, relay, model files, key permissions and clock skew')
  .option('--ports <list>', 'ports to check, comma separated (default 7447,7000,7101,7102)')
  .option('--json', 'machine-readable output')
  .action((flags) => doctor(flags));

async function startService(service: ServiceName): Promise<void> {
  await import(resolve(REPO_ROOT, SERVICE_ENTRY[service]));
}

await program.parseAsync(process.argv);
