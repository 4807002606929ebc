// The local network `fedai soak` and `fedai chaos` run against, and their load: the services `fedai up`
// starts (relay, settlement, router, wallet fleet, two nodes, embedded PGlite) in a temporary folder
// on free ports under superviseNetwork, a funded API key, the paying clients, the tab and the ledger
// verify route. Shared by soak.ts and chaos.ts.
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { readReadyFile } from '@fed-ai/kit';
import { createNip98Header, publicKeyOf } from '@fed-ai/protocol';
import { z } from 'zod';
import { EXIT, fail } from '../output';
import { parseAnswer } from './chaos-core';
import { ensureApiKey } from './devnet-key';
import {
  networkKeys,
  nodeSpec,
  relaySpec,
  routerSpec,
  settlementSpec,
  walletFleetSpec,
} from './network-specs';
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
  const keys = networkKeys(dir);
  const model = await resolveModel(modelFlag, dir);
  const started: { name: string; url: string }[] = [];
  const start = async (spec: Parameters<Launch>[0]) => {
    const s = await launch(spec);
    started.push({ name: spec.name, url: s.url });
    return s;
  };
  const db = options.databaseUrls;
  const relay = await start(relaySpec(await freePort()));
  const settlement = await start(
    settlementSpec(dir, keys, await freePort(), db ? { DATABASE_URL: db.settlement } : {}),
  );
  const routerPubkey = publicKeyOf(keys.router);
  const router = await start(
    routerSpec(
      dir,
      keys,
      await freePort(),
      {
        relay: relay.url,
        settlement: options.routerSettlementUrl
          ? await options.routerSettlementUrl(settlement.url)
          : settlement.url,
      },
      { ROUTER_NAME: 'fedai-soak', ...(db ? { DATABASE_URL: db.router } : {}), ...options.routerEnv },
    ),
  );
  const fleet = start(
    walletFleetSpec(
      dir,
      keys,
      await freePort(),
      { relay: relay.url, settlement: settlement.url },
      db ? { DATABASE_URL: db.walletFleet } : {},
    ),
  );
  step(`starting node-1 and node-2 (${model.label})`);
  const ports = [await freePort(), await freePort()];
  await Promise.all(
    ports.map((port, index) =>
      start(nodeSpec(dir, index, port, { url: router.url, pubkey: routerPubkey }, model.env, 180_000)),
    ),
  );
  await fleet;
  step('waiting for the nodes to register with the router');
  await waitFor(async () => {
    const list = (await (await fetch(`${router.url}/v1/models`)).json()) as { data?: { id: string }[] };
    return (list.data ?? []).filter((m) => m.id === model.id).length > 0;
  }, 60_000);
  const { key: apiKey } = await ensureApiKey(dir, router.url, keys.operator);
  const net: Network = {
    routerUrl: router.url,
    settlementUrl: settlement.url,
    apiKey,
    model: model.id,
    operatorKey: keys.operator,
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
