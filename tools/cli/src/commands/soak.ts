// `fedai soak --minutes N`: starts its own local network (as `fedai up` does: relay, settlement,
// router, wallet fleet, two nodes, embedded PGlite) in a fresh temporary folder on free ports, runs a
// steady paid load from a few clients against the router's OpenAI-compatible API, samples every
// service process (RSS, heap, fds, event-loop delay) and the clients' counts, checks the ledger at
// the end and writes the report (soak-core.ts) as JSON and Markdown. Every child stops on exit,
// Ctrl-C included (superviseNetwork).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { loadOrCreateKeyFile, readReadyFile } from '@fed-ai/kit';
import { createNip98Header, publicKeyOf } from '@fed-ai/protocol';
import { z } from 'zod';
import { bold, EXIT, fail, green, red } from '../output';
import { ensureApiKey } from './devnet-key';
import {
  buildReport,
  formatReport,
  type LedgerCheck,
  type LoadSample,
  promValue,
  type ServiceSeries,
  type SoakReport,
  warmupMsFor,
} from './soak-core';
import { resolveModel, sleep, superviseNetwork, waitFor } from './up';

export interface SoakFlags {
  minutes?: string;
  out?: string;
  clients?: string;
  sampleS?: string;
  model?: string;
  keepData?: boolean;
}

const MAX_MINUTES = 24 * 60;
const REQUEST_TIMEOUT_MS = 60_000;
/** Each client sends at most one request this often (4 clients: 240 a minute, under the key's 600). */
const CLIENT_INTERVAL_MS = 1000;
const FUND_MSAT = 50_000_000;
const MAX_FAILURE_CODES = 50;

const ledgerSchema = z.looseObject({
  ok: z.boolean(),
  accounts: z.number().int(),
  transfers: z.number().int(),
  problems: z.array(z.object({ code: z.string(), detail: z.string() })),
});

function positive(name: string, raw: string | undefined, fallback: number, max: number): number {
  if (raw === undefined) return fallback;
  const value = Number(raw);
  if (!Number.isFinite(value) || value <= 0 || value > max)
    fail('BAD_OPTION', `--${name} takes a number above 0 and at most ${max} (got ${raw})`, {
      exit: EXIT.usage,
    });
  return value;
}

export async function soak(flags: SoakFlags): Promise<void> {
  const minutes = positive('minutes', flags.minutes, 60, MAX_MINUTES);
  const clients = positive('clients', flags.clients, 4, 16);
  if (!Number.isInteger(clients))
    fail('BAD_OPTION', `--clients takes a whole number from 1 to 16 (got ${flags.clients})`, {
      exit: EXIT.usage,
    });
  const sampleEveryMs = Math.round(positive('sample-s', flags.sampleS, 5, 600) * 1000);
  const outDir = resolve(flags.out ?? join(process.cwd(), 'data', 'soak'));
  if (process.platform !== 'linux')
    fail('BAD_OPTION', 'fedai soak reads /proc/<pid> and runs only on Linux', { exit: EXIT.usage });

  const dir = mkdtempSync(join(tmpdir(), 'fedai-soak-'));
  let failed = false;
  process.on('exit', () => {
    // A finished (or interrupted) run leaves only its report; a failed one keeps the services' logs.
    if (!failed && !flags.keepData) rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`soak data and logs kept in ${dir}\n`);
  });
  const { launch, stopAll, step } = superviseNetwork(dir);
  try {
    step(`soak: a fresh network in ${dir} for ${minutes} min, ${clients} clients`);
    const net = await startNetwork(dir, flags.model, launch, step);
    const durationMs = Math.round(minutes * 60_000);
    const warmupMs = warmupMsFor(durationMs);
    const series: ServiceSeries[] = net.services.map((s) => ({ name: s.name, pid: s.pid, samples: [] }));
    const counts = { ok: 0, failed: 0 };
    const failuresByCode: Record<string, number> = {};
    const loadSeries: LoadSample[] = [];
    const startedAt = new Date().toISOString();
    const t0 = Date.now();
    const take = async () => {
      const tMs = Date.now() - t0;
      const looks = await Promise.all(net.services.map((s) => sampleProcess(s, tMs)));
      looks.forEach((look, i) => {
        if (look) series[i]!.samples.push(look);
      });
      loadSeries.push({ tMs, ...counts });
    };

    step(`load: ${clients} clients for ${minutes} min; a sample every ${sampleEveryMs / 1000} s`);
    const deadline = t0 + durationMs;
    const load = Promise.all(
      Array.from({ length: clients }, (_, client) =>
        runClient(client, deadline, net, (ok, code) => {
          if (ok) counts.ok++;
          else {
            counts.failed++;
            const key =
              code in failuresByCode || Object.keys(failuresByCode).length < MAX_FAILURE_CODES
                ? code
                : 'OTHER';
            failuresByCode[key] = (failuresByCode[key] ?? 0) + 1;
          }
        }),
      ),
    );
    await take();
    let lastLine = Date.now();
    while (Date.now() < deadline) {
      await sleep(Math.min(sampleEveryMs, Math.max(0, deadline - Date.now())));
      await take();
      if (Date.now() - lastLine >= 30_000) {
        lastLine = Date.now();
        const rss = series.map((s) => `${s.name} ${Math.round((s.samples.at(-1)?.rssBytes ?? 0) / 2 ** 20)}`);
        step(
          `${Math.round((Date.now() - t0) / 1000)} s: ${counts.ok} ok, ${counts.failed} failed; RSS MB ${rss.join(', ')}`,
        );
      }
    }
    await load;
    await take();

    step('load done: waiting for the tab to settle, then ledger verify');
    await waitFor(async () => (await tab(net)).reserved === 0, 30_000).catch(() => undefined);
    const ledger = await verifyLedgerAt(net.settlementUrl, net.operatorKey).catch((error: unknown) => ({
      ok: false as const,
      error: error instanceof Error ? error.message : String(error),
    }));

    const report = buildReport({
      startedAt,
      minutes,
      warmupMs,
      sampleEveryMs,
      clients,
      model: net.model,
      loadAverage: loadavg(),
      durationMs: Date.now() - t0,
      series,
      loadSeries,
      failuresByCode,
      ledger,
    });
    writeReport(outDir, report);
    process.stdout.write(`\n${bold('soak report')}\n\n${formatReport(report)}\n`);
    process.stdout.write(
      `${report.goals.all ? green('every goal held') : red('a goal did not hold')}; report: ${join(outDir, 'soak.md')}, ${join(outDir, 'soak.json')}\n`,
    );
    await stopAll(report.goals.all ? EXIT.ok : EXIT.failure);
  } catch (error) {
    failed = true;
    process.stderr.write(`fedai soak failed: ${error instanceof Error ? error.message : String(error)}\n`);
    await stopAll(EXIT.failure);
  }
}

function writeReport(outDir: string, report: SoakReport): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'soak.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(outDir, 'soak.md'), `# fedai soak\n\n${formatReport(report)}`);
}

interface Network {
  routerUrl: string;
  settlementUrl: string;
  apiKey: string;
  model: string;
  operatorKey: Uint8Array;
  services: { name: string; pid: number; metricsUrl: string }[];
}

type Launch = ReturnType<typeof superviseNetwork>['launch'];

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
async function startNetwork(
  dir: string,
  modelFlag: string | undefined,
  launch: Launch,
  step: (text: string) => void,
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
      SETTLEMENT_URL: settlement.url,
      L402_ENABLED: 'true',
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

async function tabCall(net: Network, path: string, body?: unknown): Promise<Record<string, unknown>> {
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

async function tab(net: Network): Promise<{ balance: number; reserved: number }> {
  const me = await tabCall(net, 'me');
  return { balance: Number(me.balance_msat), reserved: Number(me.reserved_msat) };
}

/** One client: a request at most every CLIENT_INTERVAL_MS until the deadline, streamed every other time. */
async function runClient(
  client: number,
  deadline: number,
  net: Network,
  count: (ok: boolean, code: string) => void,
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
      if (!response.ok) count(false, errorCode(text) ?? `HTTP_${response.status}`);
      else if (stream) count(text.includes('[DONE]'), 'STREAM_INCOMPLETE');
      else count(text.includes('"choices"'), 'BAD_ANSWER');
    } catch (error) {
      count(
        false,
        error instanceof Error && error.name === 'TimeoutError' ? 'CLIENT_TIMEOUT' : 'CLIENT_ERROR',
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

/** RSS and fds from /proc, heap and event-loop p99 from /metrics; null when the process is gone. */
async function sampleProcess(
  s: Network['services'][number],
  tMs: number,
): Promise<ServiceSeries['samples'][number] | null> {
  let rssBytes: number;
  let anonBytes: number | null;
  let fds: number;
  try {
    const status = readFileSync(`/proc/${s.pid}/status`, 'utf8');
    rssBytes = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN) * 1024;
    const anon = /^RssAnon:\s+(\d+) kB/m.exec(status)?.[1];
    anonBytes = anon === undefined ? null : Number(anon) * 1024;
    fds = readdirSync(`/proc/${s.pid}/fd`).length;
  } catch {
    return null;
  }
  if (!Number.isFinite(rssBytes)) return null;
  let metrics = '';
  try {
    const response = await fetch(s.metricsUrl, { signal: AbortSignal.timeout(3_000) });
    if (response.ok) metrics = await response.text();
  } catch {
    // No /metrics (the relay) or a slow answer: heap and event-loop delay are not available.
  }
  return {
    tMs,
    rssBytes,
    anonBytes,
    heapUsedBytes: promValue(metrics, 'nodejs_heap_size_used_bytes'),
    fds,
    eventLoopP99S: promValue(metrics, 'nodejs_eventloop_lag_p99_seconds'),
  };
}

/** The settlement route `fedai ledger verify` calls, NIP-98 signed with the operator key. */
async function verifyLedgerAt(settlementUrl: string, operatorKey: Uint8Array): Promise<LedgerCheck> {
  const url = `${settlementUrl}/v1/ledger/verify`;
  const response = await fetch(url, {
    headers: { authorization: createNip98Header(url, 'GET', undefined, operatorKey) },
    signal: AbortSignal.timeout(60_000),
  });
  if (!response.ok) throw new Error(`ledger verify: HTTP ${response.status}`);
  const parsed = ledgerSchema.parse(await response.json());
  return { ok: parsed.ok, accounts: parsed.accounts, transfers: parsed.transfers, problems: parsed.problems };
}
