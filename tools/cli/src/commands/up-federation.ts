// `fedai up --routers N`: a federated local network on 127.0.0.1. One relay, one devnet Lightning
// service (an LNbits-compatible stand-in that settles invoices between its own wallets; see
// docs/lightning.md), and per router its own settlement (LNbits backend, its own wallet there), its
// own router and one node. Every router serves the demo model; the last one also serves a model
// no other router has. The first request asks the first router for that model: it is auctioned
// over the relay and offloaded, paid, to the last router; the answer shows both receipts.
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { loadOrCreateKeyFile } from '@fed-ai/kit';
import { createNip98Header, publicKeyOf } from '@fed-ai/protocol';
import { type Devnet, dataDir, devnetPath } from '../devnet-file';
import { bold, cyan, dim, EXIT, green, yellow } from '../output';
import { ensureApiKey } from './devnet-key';
import { DEMO_NOTICE, fundFromFaucet, resolveModel, superviseNetwork, type UpOptions, waitFor } from './up';

const PORTS = { relay: 7447, lightning: 7400, router: 7000, settlement: 7200, node: 7101 };
/** Each router's float at its settlement: what it pays peers from before clients refill it. */
const FLOAT_MSAT = 5_000_000;

interface RouterFacts {
  name: string;
  url: string;
  pubkey: string;
  settlement_url: string;
  models: string[];
}

export async function upFederation(options: UpOptions): Promise<void> {
  const count = options.routers ?? 3;
  const dir = dataDir();
  const fedDir = resolve(dir, 'federation');
  mkdirSync(fedDir, { recursive: true });
  const startedAtMs = Date.now();
  const { logsDir, launch, stopAll, step } = superviseNetwork(dir);
  try {
    const operator = loadOrCreateKeyFile(resolve(dir, 'operator.key'));
    const model = await resolveModel(options.model, dir);
    if (model.demo) process.stdout.write(`${yellow('note:')} ${DEMO_NOTICE}\n`);
    const offloadModel = model.demo ? 'fedai-demo-noise-only-last' : `${model.id}-only-last`;
    const relay = await launch({
      service: 'relay',
      name: 'relay',
      portVar: 'RELAY_PORT',
      preferredPort: PORTS.relay,
      env: { RELAY_HOST: '127.0.0.1' },
      timeoutMs: 30_000,
    });
    const lightning = await launch({
      service: 'lightning-devnet',
      name: 'lightning',
      portVar: 'LIGHTNING_DEVNET_PORT',
      preferredPort: PORTS.lightning,
      env: { LIGHTNING_DEVNET_HOST: '127.0.0.1', DATA_DIR: resolve(fedDir, 'lightning') },
      describe: 'devnet Lightning (LNbits API; settles only its own wallets)',
      timeoutMs: 60_000,
    });
    const wallets = await devnetWallets(lightning.url, resolve(fedDir, 'lightning'), count);
    const keys = Array.from({ length: count }, (_, i) =>
      loadOrCreateKeyFile(resolve(fedDir, `r${i + 1}-router.key`)),
    );
    const pubkeys = keys.map((k) => publicKeyOf(k.secretKey));
    // Each router's chain (settlement, router, node) starts at once with the others'.
    const startOne = async (i: number) => {
      const name = `r${i + 1}`;
      const settlementKey = loadOrCreateKeyFile(resolve(fedDir, `${name}-settlement.key`));
      const settlement = await launch({
        service: 'settlement',
        name: `${name}-settlement`,
        portVar: 'SETTLEMENT_PORT',
        preferredPort: PORTS.settlement + i * 10,
        env: {
          SETTLEMENT_HOST: '127.0.0.1',
          SETTLEMENT_KEY_FILE: resolve(fedDir, `${name}-settlement.key`),
          CREATE_KEY: 'true',
          SETTLEMENT_ROUTER_PUBKEYS: pubkeys[i]!,
          // The router's own account: the float it pays peer routers from.
          SETTLEMENT_WALLET_PUBKEYS: pubkeys[i]!,
          SETTLEMENT_OPERATOR_PUBKEYS: publicKeyOf(operator.secretKey),
          LIGHTNING_BACKEND: 'lnbits',
          LNBITS_URL: lightning.url,
          LNBITS_ADMIN_KEY: wallets.settlements[i]!,
          LNBITS_FAUCET_KEY: wallets.mint,
          FAUCET: 'true',
          SWEEP_INTERVAL_MS: '500',
          DATA_DIR: resolve(fedDir, `${name}-settlement`),
        },
        describe: `ledger, LNbits wallet at the devnet Lightning service`,
        identity: { path: '/v1/info', pubkey: publicKeyOf(settlementKey.secretKey) },
        timeoutMs: 60_000,
      });
      const router = await launch({
        service: 'router',
        name: `${name}-router`,
        portVar: 'ROUTER_PORT',
        preferredPort: PORTS.router + i * 10,
        env: {
          ROUTER_HOST: '127.0.0.1',
          ROUTER_KEY_FILE: resolve(fedDir, `${name}-router.key`),
          CREATE_KEY: 'true',
          ROUTER_NAME: `fedai-devnet-${name}`,
          OPERATOR_PUBKEYS: publicKeyOf(operator.secretKey),
          ALLOW_PRIVATE_ENDPOINTS: 'true',
          DATA_DIR: resolve(fedDir, `${name}-router`),
          SETTLEMENT_URL: settlement.url,
          FEDERATION_RELAYS: relay.url,
          FEDERATION_PEER_MODE: 'allowlist',
          FEDERATION_ALLOWLIST: pubkeys.filter((_, j) => j !== i).join(','),
          ANNOUNCE_REFRESH_S: '30',
        },
        identity: { path: '/v1/router', pubkey: pubkeys[i]! },
        timeoutMs: 60_000,
      });
      const last = i === count - 1;
      const nodeName = `${name}-node`;
      const nodeKey = loadOrCreateKeyFile(resolve(fedDir, `${nodeName}.key`));
      const nodeStart = launch({
        service: 'node',
        name: nodeName,
        portVar: 'NODE_PORT',
        preferredPort: PORTS.node + i * 10,
        env: {
          NODE_HOST: '127.0.0.1',
          NODE_KEY_FILE: resolve(fedDir, `${nodeName}.key`),
          CREATE_KEY: 'true',
          ROUTER_URLS: router.url,
          ROUTER_PUBKEYS: pubkeys[i]!,
          DATA_DIR: resolve(fedDir, nodeName),
          PRICE_INPUT_MSAT_PER_1K: String(1000 + i * 100),
          PRICE_OUTPUT_MSAT_PER_1K: String(2000 + i * 200),
          HEARTBEAT_INTERVAL_S: '5',
          ...model.env,
          // The last router's node serves the model under a name no other router has.
          ...(last ? { MODEL_ID: offloadModel } : {}),
        },
        identity: { path: '/v1/info', pubkey: publicKeyOf(nodeKey.secretKey) },
        timeoutMs: (options.readyTimeoutS ?? 180) * 1000,
        ...(i === 0 ? { progress: 'loading the model on the nodes' } : {}),
      }).then((n) => ({ name: nodeName, url: n.url, pubkey: n.pubkey ?? '' }));
      const facts: RouterFacts = {
        name,
        url: router.url,
        pubkey: pubkeys[i]!,
        settlement_url: settlement.url,
        models: [last ? offloadModel : model.id],
      };
      return { facts, nodeStart };
    };
    step(`starting ${count} settlements, routers and nodes (${model.label})`);
    const started = await Promise.all(Array.from({ length: count }, (_, i) => startOne(i)));
    const routers = started.map((s) => s.facts);
    const nodes = await Promise.all(started.map((s) => s.nodeStart));
    step("funding each router's float from the devnet mint (a paid invoice per router)");
    for (const [i, r] of routers.entries())
      await fundFloat(r.settlement_url, keys[i]!.secretKey, lightning.url, wallets.mint);
    const first = routers[0]!;
    const lastRouter = routers[routers.length - 1]!;
    step(`waiting for ${first.name} to discover ${lastRouter.name}'s ${offloadModel} on the relay`);
    await waitFor(async () => {
      const body = (await (await fetch(`${first.url}/v1/federation/peers`)).json()) as {
        peers: { pubkey: string; prices: { model: string }[] }[];
      };
      return body.peers.some(
        (p) => p.pubkey === lastRouter.pubkey && p.prices.some((s) => s.model === offloadModel),
      );
    }, 60_000);
    const { key: apiKey } = await ensureApiKey(dir, first.url, operator.secretKey);
    const balanceMsat = await fundFromFaucet(first.url, apiKey);
    const devnet: Devnet = {
      version: 1,
      pid: process.pid,
      started_at: new Date().toISOString(),
      router_url: first.url,
      router_pubkey: first.pubkey,
      relay_url: relay.url,
      settlement_url: first.settlement_url,
      api_key: apiKey,
      model: model.id,
      model_is_demo: model.demo,
      nodes,
      data_dir: dir,
      logs_dir: logsDir,
      federation: { lightning_url: lightning.url, routers, offload_model: offloadModel },
    };
    writeFileSync(devnetPath(dir), `${JSON.stringify(devnet, null, 2)}\n`, { mode: 0o600 });
    printSummary(devnet, routers, Date.now() - startedAtMs, balanceMsat);
    if (options.firstRequest !== false)
      await offloadedRequest(first.url, apiKey, offloadModel, lastRouter.name);
    process.stdout.write(`\n${green('federated network running')} — press Ctrl-C to stop.\n`);
    await new Promise(() => {});
  } catch (error) {
    process.stderr.write(`fedai up failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.stderr.write(`logs: ${logsDir}\n`);
    await stopAll(EXIT.failure);
  }
}

/** The devnet wallets: one mint (the only place devnet money is created) and one per settlement. */
async function devnetWallets(
  url: string,
  dataDir: string,
  count: number,
): Promise<{ mint: string; settlements: string[] }> {
  const path = resolve(dataDir, 'wallets.json');
  let saved: { mint?: string; settlements?: string[] } = {};
  try {
    saved = JSON.parse(readFileSync(path, 'utf8')) as typeof saved;
  } catch {
    // First start: no wallets yet.
  }
  const adminKey = readFileSync(resolve(dataDir, 'admin.key'), 'utf8').trim();
  const create = async (name: string, mint: boolean) => {
    const response = await fetch(`${url}/devnet/wallets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-admin-key': adminKey },
      body: JSON.stringify({ name, mint }),
    });
    const body = (await response.json()) as { adminkey?: string; detail?: string };
    if (response.status !== 201 || !body.adminkey)
      throw new Error(`devnet wallet ${name}: ${body.detail ?? response.status}`);
    return body.adminkey;
  };
  const mint = saved.mint ?? (await create('mint', true));
  const settlements = saved.settlements ?? [];
  while (settlements.length < count)
    settlements.push(await create(`settlement-r${settlements.length + 1}`, false));
  writeFileSync(path, `${JSON.stringify({ mint, settlements }, null, 2)}\n`, { mode: 0o600 });
  return { mint, settlements };
}

/** Tops a router's own account at its settlement up to FLOAT_MSAT, paid from the devnet mint. */
async function fundFloat(
  settlementUrl: string,
  routerKey: Uint8Array,
  lightningUrl: string,
  mintKey: string,
): Promise<void> {
  const signed = (method: string, path: string, body?: string) =>
    fetch(`${settlementUrl}${path}`, {
      method,
      headers: {
        'content-type': 'application/json',
        authorization: createNip98Header(`${settlementUrl}${path}`, method, body, routerKey),
      },
      ...(body ? { body } : {}),
    }).then(async (r) => ({ ok: r.ok, body: (await r.json()) as Record<string, unknown> }));
  const balance = await signed('GET', '/v1/account/balance');
  const have = Number(balance.body.balance_msat ?? 0);
  if (have >= FLOAT_MSAT / 2) return;
  const invoice = await signed(
    'POST',
    '/v1/account/invoices',
    JSON.stringify({ amount_msat: FLOAT_MSAT - have - ((FLOAT_MSAT - have) % 1000) }),
  );
  if (!invoice.ok) throw new Error(`float invoice: ${JSON.stringify(invoice.body)}`);
  const paid = await fetch(`${lightningUrl}/api/v1/payments`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-api-key': mintKey },
    body: JSON.stringify({ out: true, bolt11: invoice.body.bolt11 }),
  });
  if (!paid.ok) throw new Error(`float payment: HTTP ${paid.status}`);
}

function printSummary(devnet: Devnet, routers: RouterFacts[], elapsedMs: number, balanceMsat: number): void {
  const line = (k: string, v: string) => process.stdout.write(`  ${k.padEnd(12)} ${v}\n`);
  process.stdout.write(
    `\n${bold('fed-ai federated local network ready')} in ${(elapsedMs / 1000).toFixed(1)} s\n`,
  );
  line('relay', devnet.relay_url);
  line('lightning', `${devnet.federation!.lightning_url}  ${dim('(devnet stand-in, LNbits API)')}`);
  for (const r of routers)
    line(r.name, `${r.url}  models: ${r.models.join(', ')}  ${dim(`settlement ${r.settlement_url}`)}`);
  line('api key', `${devnet.api_key}  (at ${routers[0]!.name}; tab: ${balanceMsat} msat from the faucet)`);
  line('facts', devnetPath(devnet.data_dir));
  line('logs', devnet.logs_dir);
  process.stdout.write(`\n${bold('try it')}\n`);
  process.stdout.write(`  pnpm fedai peers                      # what ${routers[0]!.name} discovered\n`);
  process.stdout.write(
    `  pnpm fedai chat --model ${devnet.federation!.offload_model} "Hello"   # offloaded to ${routers[routers.length - 1]!.name}\n`,
  );
}

async function offloadedRequest(
  routerUrl: string,
  apiKey: string,
  model: string,
  peerName: string,
): Promise<void> {
  process.stdout.write(`\n${bold('first request')} for ${model} (served only behind ${peerName}):\n`);
  const response = await fetch(`${routerUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model,
      messages: [{ role: 'user', content: 'Say hello to the federation.' }],
      max_tokens: 24,
    }),
  });
  const body = (await response.json()) as {
    choices?: { message: { content: string } }[];
    fedai?: {
      cost_msat: number;
      peer?: string;
      peer_cost_msat?: number;
      fee_msat?: number;
      receipt?: { id: string };
      peer_receipt?: { id: string };
    };
    error?: { code: string; message: string };
  };
  if (!response.ok || !body.fedai) {
    process.stdout.write(
      `  ${yellow('failed:')} ${body.error?.code ?? response.status} ${body.error?.message ?? ''}\n`,
    );
    return;
  }
  const f = body.fedai;
  process.stdout.write(`  ${body.choices?.[0]?.message.content.replace(/\n/g, ' ') ?? ''}\n`);
  process.stdout.write(
    `  ${cyan('›')} offloaded to ${f.peer?.slice(0, 16)}…: peer cost ${f.peer_cost_msat} msat + fee ${f.fee_msat} msat = ${f.cost_msat} msat charged\n`,
  );
  process.stdout.write(
    `  ${dim(`receipts: node-signed metering ${f.receipt?.id.slice(0, 16)}…, peer-signed offload result ${f.peer_receipt?.id.slice(0, 16)}…`)}\n`,
  );
}
