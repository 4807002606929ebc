// The processes behind each path of `pnpm bench:gateway`, every service its own child process on
// 127.0.0.1 (so its CPU can be read from /proc/<pid>/stat): the fake upstream, a bare Node proxy,
// fed-ai free (router -> node on the OpenAI runner -> upstream), fed-ai paid (the same plus
// settlement and a funded tab), and Portkey's gateway. Logs go to files in the run's temp dir.
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { Agent } from 'node:http';
import { createServer } from 'node:net';
import { join, resolve } from 'node:path';
import { openDb, startPostgres } from '@fed-ai/kit';
import { createNip98Header, generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { FAKE_MODEL } from './fake-upstream';
import type { Target } from './gateway-client';
import { cpuMsWithChildren } from './gateway-proc';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const START_TIMEOUT_MS = 120_000;
export const PATH_NAMES = [
  'baseline',
  'node-proxy',
  'fedai-free',
  'fedai-paid',
  'portkey',
  'fedai-pg-1r',
  'fedai-pg-2r',
  'fedai-paid-pg',
] as const;
/**
 * What a plain run measures; the PostgreSQL paths (replicas, issue 18; settlement on PostgreSQL)
 * are asked for by --paths.
 */
export const DEFAULT_PATHS: readonly PathName[] = [
  'baseline',
  'node-proxy',
  'fedai-free',
  'fedai-paid',
  'portkey',
];
export type PathName = (typeof PATH_NAMES)[number];

export interface Service {
  name: string;
  child: ChildProcess;
  exited: Promise<void>;
  /** Its CPU ms so far when /proc/<child pid> alone does not hold it (PostgreSQL's backends). */
  cpuMs?: () => number;
}

export interface Path {
  name: PathName;
  target: Target;
  /** The gateway's own processes (the upstream is counted apart). */
  services: Service[];
  /** What must finish before a batch's CPU is read (paid: captures after the answers). */
  settle?: () => Promise<void>;
  /** msat left on the tab (paid only). */
  balance?: () => Promise<number>;
  /** The router's and settlement's /metrics (paid: reservations held ahead, ledger batch sizes). */
  metricsUrls?: string[];
}

function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(url: string, check: (r: Response) => Promise<boolean> = async (r) => r.status < 500) {
  const deadline = Date.now() + START_TIMEOUT_MS;
  while (Date.now() < deadline) {
    const ok = await fetch(url)
      .then(check)
      .catch(() => false);
    if (ok) return;
    await sleep(100);
  }
  throw new Error(`timeout waiting for ${url}`);
}

export class Services {
  readonly all: Service[] = [];
  /** Run after every process stopped (a PostgreSQL server). */
  readonly cleanups: (() => Promise<void>)[] = [];
  constructor(private readonly dir: string) {}

  start(name: string, entry: string, args: string[], env: Record<string, string> = {}): Service {
    const log = openSync(join(this.dir, `${name}.log`), 'a');
    // BENCH_CPU_PROF=DIR: every service writes a V8 CPU profile under DIR/<name> when it stops.
    const profile = process.env.BENCH_CPU_PROF
      ? [`--cpu-prof-dir=${join(process.env.BENCH_CPU_PROF, name)}`, '--cpu-prof']
      : [];
    // BENCH_NODE_ARGS="--trace-gc-nvp ...": flags for every service process (their output goes to
    // the service's log; BENCH_KEEP_LOGS=1 keeps the logs; gc-log-summary.ts reads GC traces).
    const extra = process.env.BENCH_NODE_ARGS?.split(/\s+/).filter(Boolean) ?? [];
    // BENCH_BUNDLES=DIR: services run from the container bundles (DIR/<service>/main.mjs, made by
    // `node tools/containers/src/bundle.mjs <service> DIR/<service>`), what the images run.
    const bundled = entry.match(/^services\/([a-z-]+)\/src\/main\.ts$/)?.[1];
    const run =
      process.env.BENCH_BUNDLES && bundled
        ? [join(process.env.BENCH_BUNDLES, bundled, 'main.mjs')]
        : ['--import', 'tsx', resolve(root, entry)];
    const child = spawn(process.execPath, [...profile, ...extra, ...run, ...args], {
      cwd: root,
      env: { ...process.env, LOG_LEVEL: process.env.BENCH_LOG_LEVEL ?? 'silent', ...env },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    const exited = new Promise<void>((done) => child.once('exit', () => done()));
    const service = { name, child, exited };
    this.all.push(service);
    return service;
  }

  async stopAll(): Promise<void> {
    for (const s of this.all) s.child.kill('SIGTERM');
    // A CPU profile of a long run takes V8 more than 10 s to write at exit.
    const graceMs = process.env.BENCH_CPU_PROF ? 60_000 : 10_000;
    const timer = setTimeout(() => {
      for (const s of this.all) s.child.kill('SIGKILL');
    }, graceMs);
    await Promise.all(this.all.map((s) => s.exited));
    clearTimeout(timer);
    for (const cleanup of this.cleanups) await cleanup();
  }
}

const agent = () => new Agent({ keepAlive: true, maxSockets: 256 });
const chatUrl = (base: string) => new URL('/v1/chat/completions', base);

async function startUpstream(
  services: Services,
  tokenIntervalMs: number,
): Promise<{ url: string; service: Service }> {
  const port = await freePort();
  const service = services.start('upstream', 'tools/bench/src/fake-upstream.ts', [
    String(port),
    String(tokenIntervalMs),
  ]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/v1/models`);
  return { url, service };
}

async function startProxy(services: Services, upstream: string): Promise<Path> {
  const port = await freePort();
  const proxy = services.start('proxy', 'tools/bench/src/gateway-proxy.ts', [String(port), upstream]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/v1/models`);
  const target = { url: chatUrl(url), headers: {}, model: FAKE_MODEL, agent: agent(), fedai: false };
  return { name: 'node-proxy', target, services: [proxy] };
}

async function startPortkey(services: Services, upstream: string): Promise<Path> {
  const port = await freePort();
  const portkey = services.start('portkey', 'tools/bench/src/gateway-portkey.ts', [
    `--port=${port}`,
    '--headless',
  ]);
  const url = `http://127.0.0.1:${port}`;
  await waitFor(`${url}/`);
  const headers = {
    authorization: 'Bearer fake-key',
    'x-portkey-provider': 'openai',
    'x-portkey-custom-host': `${upstream}/v1`,
  };
  return {
    name: 'portkey',
    target: { url: chatUrl(url), headers, model: FAKE_MODEL, agent: agent(), fedai: false },
    services: [portkey],
  };
}

async function createApiKey(routerUrl: string, operatorKey: Uint8Array): Promise<string> {
  const keyUrl = `${routerUrl}/admin/apikeys`;
  const body = JSON.stringify({
    name: 'bench',
    requests_per_min: 1_000_000,
    tokens_per_min: 100_000_000,
    max_parallel: 10_000,
  });
  const created = await fetch(keyUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(keyUrl, 'POST', body, operatorKey),
    },
    body,
  });
  if (!created.ok) throw new Error(`api key: ${created.status} ${await created.text()}`);
  return ((await created.json()) as { key: string }).key;
}

async function tab(routerUrl: string, apiKey: string, path: string, body?: unknown) {
  const response = await fetch(`${routerUrl}/v1/tabs/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  const json = (await response.json()) as Record<string, unknown>;
  if (!response.ok) throw new Error(`tab ${path}: ${JSON.stringify(json)}`);
  return json;
}

interface FedAiStack {
  name: 'fedai-free' | 'fedai-paid' | 'fedai-paid-pg';
  upstream: string;
  settlementUrl?: string;
  settlementPubkey?: string;
  routerKey: Uint8Array;
}

/** A router and one node on the OpenAI runner (pointed at the upstream), registered and serving. */
async function startRouterAndNode(services: Services, dir: string, stack: FedAiStack) {
  const tag = stack.name.replace(/^fedai-/, '');
  const operatorKey = generateSecretKey();
  const [routerPort, nodePort] = [await freePort(), await freePort()];
  const routerUrl = `http://127.0.0.1:${routerPort}`;
  const router = services.start(`router-${tag}`, 'services/router/src/main.ts', [], {
    ROUTER_PORT: String(routerPort),
    ROUTER_KEY: secretKeyHex(stack.routerKey),
    ALLOW_PRIVATE_ENDPOINTS: 'true',
    OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
    DATA_DIR: join(dir, `router-${tag}`),
    ...(stack.settlementUrl
      ? { SETTLEMENT_URL: stack.settlementUrl, SETTLEMENT_PUBKEY: stack.settlementPubkey! }
      : {}),
  });
  const node = services.start(`node-${tag}`, 'services/node/src/main.ts', [], {
    NODE_PORT: String(nodePort),
    NODE_KEY: secretKeyHex(generateSecretKey()),
    DATA_DIR: join(dir, `node-${tag}`),
    RUNNER: 'openai',
    OPENAI_BASE_URL: `${stack.upstream}/v1`,
    ROUTER_URLS: routerUrl,
    ROUTER_PUBKEYS: publicKeyOf(stack.routerKey),
    // The upstream answers at once: let the node pass c = 64 through instead of queueing it.
    MAX_CONCURRENCY: '64',
    QUEUE_MAX: '256',
    HEARTBEAT_INTERVAL_S: '5',
  });
  await waitFor(
    `${routerUrl}/v1/models`,
    async (r) =>
      ((await r.json()) as { data?: { id: string }[] }).data?.some((m) => m.id === FAKE_MODEL) ?? false,
  );
  const apiKey = await createApiKey(routerUrl, operatorKey);
  const target: Target = {
    url: chatUrl(routerUrl),
    headers: { authorization: `Bearer ${apiKey}` },
    model: FAKE_MODEL,
    agent: agent(),
    fedai: true,
  };
  return { routerUrl, apiKey, target, services: [router, node] };
}

async function startFree(services: Services, dir: string, upstream: string): Promise<Path> {
  const started = await startRouterAndNode(services, dir, {
    name: 'fedai-free',
    upstream,
    routerKey: generateSecretKey(),
  });
  return { name: 'fedai-free', target: started.target, services: started.services };
}

const FUNDING_MSAT = 1_000_000_000;

/**
 * fed-ai paid: settlement on embedded PGlite, or (`onPostgres`) on the shared PostgreSQL server,
 * whose postmaster and backends then count as one of the path's processes.
 */
async function startPaid(
  services: Services,
  dir: string,
  upstream: string,
  onPostgres = false,
): Promise<Path> {
  const name = onPostgres ? 'fedai-paid-pg' : 'fedai-paid';
  const tag = onPostgres ? '-pg' : '';
  const routerKey = generateSecretKey();
  const settlementKey = generateSecretKey();
  const port = await freePort();
  const settlementUrl = `http://127.0.0.1:${port}`;
  const pg = onPostgres ? await database(services, 'settlement_paid') : null;
  const settlement = services.start(`settlement${tag}`, 'services/settlement/src/main.ts', [], {
    SETTLEMENT_PORT: String(port),
    SETTLEMENT_KEY: secretKeyHex(settlementKey),
    SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
    FAUCET: 'true',
    DATA_DIR: join(dir, `settlement${tag}`),
    ...(pg ? { DATABASE_URL: pg.url } : {}),
  });
  await waitFor(`${settlementUrl}/v1/info`, async (r) => r.ok);
  const started = await startRouterAndNode(services, dir, {
    name,
    upstream,
    settlementUrl,
    settlementPubkey: publicKeyOf(settlementKey),
    routerKey,
  });
  const { routerUrl, apiKey } = started;
  const invoice = await tab(routerUrl, apiKey, 'topup', { amount_msat: FUNDING_MSAT });
  await tab(routerUrl, apiKey, 'faucet', { bolt11: invoice.bolt11 });
  const settle = async () => {
    for (let i = 0; i < 2_000; i++) {
      if ((await tab(routerUrl, apiKey, 'me')).reserved_msat === 0) return;
      await sleep(20);
    }
    throw new Error('paid: holds still open 40 s after the batch');
  };
  const balance = async () => Number((await tab(routerUrl, apiKey, 'me')).balance_msat);
  return {
    name,
    target: started.target,
    services: [started.services[0]!, settlement, started.services[1]!, ...(pg ? [pg.server] : [])],
    settle,
    balance,
    metricsUrls: [`${routerUrl}/metrics`, `${settlementUrl}/metrics`],
  };
}

let postgres: Promise<{ url: string; dataDir: string }> | undefined;

/**
 * One PostgreSQL server for the paths that use one, a database per path. `server` stands for the
 * postmaster and its backends in a path's process list (its CPU, read from /proc).
 */
async function database(services: Services, name: string): Promise<{ url: string; server: Service }> {
  // synchronous_commit on, as a real deployment; fsync stays off (a bench machine does not crash).
  postgres ??= startPostgres({ durableCommits: true }).then((pg) => {
    services.cleanups.push(() => pg.stop());
    return pg;
  });
  const { url, dataDir } = await postgres;
  const admin = await openDb({ url });
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.close();
  // postmaster.pid's first line is the postmaster's pid.
  const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
  const server: Service = {
    name: 'postgres',
    child: { pid } as ChildProcess,
    exited: new Promise<void>(() => {}),
    cpuMs: () => cpuMsWithChildren(pid),
  };
  return { url: url.replace(/\/postgres$/, `/${name}`), server };
}

/**
 * fed-ai free with `replicas` routers on one PostgreSQL (one key, one database) behind the
 * round-robin proxy, one node registered with every replica (issue 18: one and two replicas in
 * the same run, both through the same proxy).
 */
async function startReplicas(
  services: Services,
  dir: string,
  upstream: string,
  replicas: 1 | 2,
): Promise<Path> {
  const tag = `pg-${replicas}r`;
  const routerKey = generateSecretKey();
  const operatorKey = generateSecretKey();
  const databaseUrl = (await database(services, `router_${replicas}r`)).url;
  const routerUrls: string[] = [];
  const routers: Service[] = [];
  for (let i = 0; i < replicas; i++) {
    const port = await freePort();
    routerUrls.push(`http://127.0.0.1:${port}`);
    routers.push(
      services.start(`router-${tag}-${i}`, 'services/router/src/main.ts', [], {
        ROUTER_PORT: String(port),
        ROUTER_KEY: secretKeyHex(routerKey),
        ALLOW_PRIVATE_ENDPOINTS: 'true',
        OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
        DATABASE_URL: databaseUrl,
        DATA_DIR: join(dir, `router-${tag}-${i}`),
      }),
    );
    // One at a time: both run the same migrations.
    await waitFor(`${routerUrls[i]}/v1/models`, async (r) => r.ok);
  }
  const nodePort = await freePort();
  const node = services.start(`node-${tag}`, 'services/node/src/main.ts', [], {
    NODE_PORT: String(nodePort),
    NODE_KEY: secretKeyHex(generateSecretKey()),
    DATA_DIR: join(dir, `node-${tag}`),
    RUNNER: 'openai',
    OPENAI_BASE_URL: `${upstream}/v1`,
    ROUTER_URLS: routerUrls.join(','),
    ROUTER_PUBKEYS: publicKeyOf(routerKey),
    MAX_CONCURRENCY: '64',
    QUEUE_MAX: '256',
    HEARTBEAT_INTERVAL_S: '5',
  });
  for (const url of routerUrls)
    await waitFor(
      `${url}/v1/models`,
      async (r) =>
        ((await r.json()) as { data?: { id: string }[] }).data?.some((m) => m.id === FAKE_MODEL) ?? false,
    );
  const apiKey = await createApiKey(routerUrls[0]!, operatorKey);
  const proxyPort = await freePort();
  const proxy = services.start(`proxy-${tag}`, 'tools/bench/src/gateway-proxy.ts', [
    String(proxyPort),
    routerUrls.join(','),
  ]);
  const proxyUrl = `http://127.0.0.1:${proxyPort}`;
  await waitFor(`${proxyUrl}/v1/models`, async (r) => r.ok);
  return {
    name: replicas === 1 ? 'fedai-pg-1r' : 'fedai-pg-2r',
    target: {
      url: chatUrl(proxyUrl),
      headers: { authorization: `Bearer ${apiKey}` },
      model: FAKE_MODEL,
      agent: agent(),
      fedai: true,
    },
    services: [proxy, ...routers, node],
  };
}

const STARTERS: Record<
  Exclude<PathName, 'baseline'>,
  (s: Services, dir: string, upstream: string) => Promise<Path>
> = {
  'node-proxy': (s, _dir, upstream) => startProxy(s, upstream),
  portkey: (s, _dir, upstream) => startPortkey(s, upstream),
  'fedai-free': startFree,
  'fedai-paid': (s, dir, upstream) => startPaid(s, dir, upstream),
  'fedai-paid-pg': (s, dir, upstream) => startPaid(s, dir, upstream, true),
  'fedai-pg-1r': (s, dir, upstream) => startReplicas(s, dir, upstream, 1),
  'fedai-pg-2r': (s, dir, upstream) => startReplicas(s, dir, upstream, 2),
};

/** Starts the upstream and every chosen path (in parallel); the baseline goes straight to the upstream. */
export async function startPaths(
  services: Services,
  dir: string,
  names: readonly PathName[],
  tokenIntervalMs = 0,
) {
  const upstream = await startUpstream(services, tokenIntervalMs);
  const paths = await Promise.all(
    names.map((name) =>
      name === 'baseline'
        ? Promise.resolve<Path>({
            name,
            target: {
              url: chatUrl(upstream.url),
              headers: {},
              model: FAKE_MODEL,
              agent: agent(),
              fedai: false,
            },
            services: [],
          })
        : STARTERS[name](services, dir, upstream.url),
    ),
  );
  return { upstream: upstream.service, paths };
}
