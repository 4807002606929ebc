// The local network `fedai soak` and `fedai chaos` run against, and their load: the services `fedai up`
// starts (relay, settlement, router, wallet fleet, two nodes, embedded PGlite) in a temporary folder
// on free ports under superviseNetwork, a funded API key, the paying clients, the tab and the ledger
// verify route. Shared by soak.ts and chaos.ts.
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { loadOrCreateKeyFile, readReadyFile } from '@fed-ai/kit';
import { createNip98Header, publicKeyOf } from '@fed-ai/protocol';
import { z } from 'zod';
import { EXIT, fail } from '../output';
import { parseAnswer } from './chaos-core';
import { ensureApiKey } from './devnet-key';
import type { LedgerCheck } from './soak-core';
import { resolveModel, sleep, type superviseNetwork, waitFor } from './up';

const REQUEST_TIMEOUT_MS = 60_000;
/** Each client sends at most one request this often (4 clients: 240 a minute, under the key's 600). */
const CLIENT_INTERVAL_MS = 1000;
export const FUND_MSAT = 50_000_000;

const ledgerSchema = z.looseObject({
  ok: z.boolean(),
  accounts: z.number().int(),
  transfers: z.number().int(),
  problems: z.array(z.object({ code: z.string(), detail: z.string() })),
});

export function positive(name: string, raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > max)
    fail('BAD_OPTION', `--${name} takes a number above 0 and at most ${max} (got ${raw})`, {
      exit: EXIT.usage,
    });
  return value;
}

export interface Network {
  routerUrl: string;
  settlementUrl: string;
  apiKey: string;
  model: string;
  operatorKey: Uint8Array;
  services: { name: string; pid: number; metricsUrl: string }[];
}

export type Launch = ReturnType<typeof superviseNetwork>['launch'];

/** A port nothing listens on now (the service falls back to any free one if it is taken by then). */
function freePort(): Promise<number> {
  return new Promise((done, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      server.close(() => done(port));
    });
  });
}

/** The services `fedai up` starts, with the same settings, on free ports under `dir`. */
export async function startNetwork(
  dir: string,
  modelFlag: string | undefined,
  launch: Launch,
  step: (text: string) => void,
  options: {
    /** The settlement URL the router is given (chaos: a delaying proxy in front of settlement). */
    routerSettlementUrl?: (settlementUrl: string) => Promise<string>;
    /** More router settings (chaos: a shorter RESERVATION_TIMEOUT_S). */
    routerEnv?: Record<string, string>;
    /** PostgreSQL databases instead of embedded PGlite (chaos --postgres); nodes keep PGlite. */
    databaseUrls?: { router: string; settlement: string; walletFleet: string };
  } = {},
): Promise<Network> {
  const key = (name: string) => loadOrCreateKeyFile(resolve(dir, `${name}.key`));
  const operator = key('operator');
  const routerKey = key('router');
  const settlementKey = key('settlement');
  const fleetKey = key('wallet-fleet');
  const ownerKey = key('owner');
  const model = await resolveModel(modelFlag, dir);
  const started: { name: string; url: string }[] = [];
  const start = async (spec: Parameters<Launch>[0]) => {
    const s = await launch(spec);
    started.push({ name: spec.name, url: s.url });
    return s;
  };

  const relay = await start({
    service: 'relay',
    name: 'relay',
    portVar: 'RELAY_PORT',
    preferredPort: await freePort(),
    env: { RELAY_HOST: '127.0.0.1' },
    timeoutMs: 30_000,
  });
  const settlement = await start({
    service: 'settlement',
    name: 'settlement',
    portVar: 'SETTLEMENT_PORT',
    preferredPort: await freePort(),
    env: {
      SETTLEMENT_HOST: '127.0.0.1',
      SETTLEMENT_KEY_FILE: resolve(dir, 'settlement.key'),
      CREATE_KEY: 'true',
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey.secretKey),
      SETTLEMENT_OPERATOR_PUBKEYS: publicKeyOf(operator.secretKey),
      SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(fleetKey.secretKey),
      FAUCET: 'true',
      DATA_DIR: resolve(dir, 'settlement'),
      ...(options.databaseUrls ? { DATABASE_URL: options.databaseUrls.settlement } : {}),
    },
    identity: { path: '/v1/info', pubkey: publicKeyOf(settlementKey.secretKey) },
    timeoutMs: 60_000,
  });
  const routerPubkey = publicKeyOf(routerKey.secretKey);
  const router = await start({
    service: 'router',
    name: 'router',
    portVar: 'ROUTER_PORT',
    preferredPort: await freePort(),
    env: {
      ROUTER_HOST: '127.0.0.1',
      ROUTER_KEY_FILE: resolve(dir, 'router.key'),
      CREATE_KEY: 'true',
      ROUTER_NAME: 'fedai-soak',
      OPERATOR_PUBKEYS: publicKeyOf(operator.secretKey),
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      DATA_DIR: resolve(dir, 'router'),
      RELAY_URLS: relay.url,
      SETTLEMENT_URL: options.routerSettlementUrl
        ? await options.routerSettlementUrl(settlement.url)
        : settlement.url,
      L402_ENABLED: 'true',
      ...(options.databaseUrls ? { DATABASE_URL: options.databaseUrls.router } : {}),
      ...options.routerEnv,
    },
    identity: { path: '/v1/router', pubkey: routerPubkey },
    timeoutMs: 60_000,
  });
  const fleet = start({
    service: 'wallet-fleet',
    name: 'wallet-fleet',
    portVar: 'WALLET_FLEET_PORT',
    preferredPort: await freePort(),
    env: {
      WALLET_FLEET_HOST: '127.0.0.1',
      WALLET_FLEET_KEY_FILE: resolve(dir, 'wallet-fleet.key'),
      CREATE_KEY: 'true',
      FLEET_OWNER_PUBKEYS: publicKeyOf(ownerKey.secretKey),
      RELAY_URLS: relay.url,
      SETTLEMENT_URL: settlement.url,
      DATA_DIR: resolve(dir, 'wallet-fleet'),
      ...(options.databaseUrls ? { DATABASE_URL: options.databaseUrls.walletFleet } : {}),
    },
    identity: { path: '/v1/info', pubkey: publicKeyOf(fleetKey.secretKey) },
    timeoutMs: 60_000,
  });
  step(`starting node-1 and node-2 (${model.label})`);
  const ports = [await freePort(), await freePort()];
  await Promise.all(
    ports.map((preferredPort, index) => {
      const name = `node-${index + 1}`;
      const nodeKey = key(name);
      return start({
        service: 'node',
        name,
        portVar: 'NODE_PORT',
        preferredPort,
        env: {
          NODE_HOST: '127.0.0.1',
          NODE_KEY_FILE: resolve(dir, `${name}.key`),
          CREATE_KEY: 'true',
          ROUTER_URLS: router.url,
          ROUTER_PUBKEYS: routerPubkey,
          DATA_DIR: resolve(dir, name),
          PRICE_INPUT_MSAT_PER_1K: String(1000 + index * 200),
          PRICE_OUTPUT_MSAT_PER_1K: String(2000 + index * 400),
          HEARTBEAT_INTERVAL_S: '5',
          ...model.env,
        },
        identity: { path: '/v1/info', pubkey: publicKeyOf(nodeKey.secretKey) },
        timeoutMs: 180_000,
      });
    }),
  );
  await fleet;
  step('waiting for the nodes to register with the router');
  await waitFor(async () => {
    const list = (await (await fetch(`${router.url}/v1/models`)).json()) as { data?: { id: string }[] };
    return (list.data ?? []).filter((m) => m.id === model.id).length > 0;
  }, 60_000);
  const { key: apiKey } = await ensureApiKey(dir, router.url, operator.secretKey);
  const net: Network = {
    routerUrl: router.url,
    settlementUrl: settlement.url,
    apiKey,
    model: model.id,
    operatorKey: operator.secretKey,
    services: started.map((s) => {
      const ready = readReadyFile(resolve(dir, 'run', `${s.name}.ready.json`));
      if (!ready) throw new Error(`${s.name}: its ready file is gone`);
      return { name: s.name, pid: ready.pid, metricsUrl: `${s.url}/metrics` };
    }),
  };
  await fundTab(net, FUND_MSAT);
  step(`API key funded with ${FUND_MSAT} msat from the devnet faucet`);
  return net;
}

export async function tabCall(net: Network, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const response = await fetch(`${net.routerUrl}/v1/tabs/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    signal: AbortSignal.timeout(15_000),
  });
  const json = (await response.json()) as Record<string, unknown>;
  if (!response.ok)
    throw new Error(`tab ${path}: HTTP ${response.status} ${JSON.stringify(json).slice(0, 300)}`);
  return json;
}

async function fundTab(net: Network, amountMsat: number): Promise<void> {
  const invoice = await tabCall(net, 'topup', { amount_msat: amountMsat });
  await tabCall(net, 'faucet', { bolt11: invoice.bolt11 });
}

export async function tab(net: Network): Promise<{ balance: number; reserved: number }> {
  const me = await tabCall(net, 'me');
  return { balance: Number(me.balance_msat), reserved: Number(me.reserved_msat) };
}

/** One client: a request at most every CLIENT_INTERVAL_MS until the deadline, streamed every other time. */
export async function runClient(
  client: number,
  deadline: number,
  net: Network,
  /** Each request's outcome; `body` is the answer's text when one came (HTTP 2xx), else null. */
  count: (ok: boolean, code: string, body: string | null) => void,
): Promise<void> {
  for (let i = 0; Date.now() < deadline; i++) {
    const began = Date.now();
    const stream = i % 2 === 1;
    try {
      const response = await fetch(`${net.routerUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${net.apiKey}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: net.model,
          messages: [{ role: 'user', content: `soak client ${client} request ${i}: say something short.` }],
          max_tokens: 16,
          temperature: 0,
          stream,
        }),
        signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      });
      const text = await response.text();
      if (!response.ok) count(false, errorCode(text) ?? `HTTP_${response.status}`, null);
      else {
        // A stream also ends in [DONE] after an error event: read it, do not just look for [DONE].
        const answer = parseAnswer(text);
        count(answer.ok, answer.ok ? '' : answer.code, text);
      }
    } catch (error) {
      count(
        false,
        error instanceof Error && error.name === 'TimeoutError' ? 'CLIENT_TIMEOUT' : 'CLIENT_ERROR',
        null,
      );
    }
    await sleep(Math.max(0, Math.min(CLIENT_INTERVAL_MS - (Date.now() - began), deadline - Date.now())));
  }
}

function errorCode(body: string): string | null {
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' && /^[A-Z_]{1,64}$/.test(code) ? code : null;
  } catch {
    return null;
  }
}

/** The settlement route `fedai ledger verify` calls, NIP-98 signed with the operator key. */
export async function verifyLedgerAt(settlementUrl: string, operatorKey: Uint8Array): Promise<LedgerCheck> {
  const url = `${settlementUrl}/v1/ledger/verify`;
  const response = await fetch(url, {
    headers: { authorization: createNip98Header(url, 'GET', undefined, operatorKey) },
    signal: AbortSignal.timeout(60_000),
  });
  if (!response.ok) throw new Error(`ledger verify: HTTP ${response.status}`);
  const parsed = ledgerSchema.parse(await response.json());
  return { ok: parsed.ok, accounts: parsed.accounts, transfers: parsed.transfers, problems: parsed.problems };
}
