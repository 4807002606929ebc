// pnpm bench:router — what the router adds. One node (embedded demo model, 1 token per answer) and
// one router run as separate processes; autocannon drives the same load (a) straight at the node
// with requests signed as the router would, and (b) through the router's OpenAI-compatible API.
// Overhead = (b) - (a) at p50/p99, plus the router's own x-fedai-overhead-ms over sequential requests.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import {
  createEnvelope,
  createNip98Header,
  generateSecretKey,
  initCrypto,
  KIND,
  publicKeyOf,
  secretKeyHex,
} from '@fed-ai/protocol';
import autocannon from 'autocannon';
import { fmt, summarize } from './stats';

const DURATION_S = Number(process.env.BENCH_DURATION_S ?? 10);
const CONNECTIONS = Number(process.env.BENCH_CONNECTIONS ?? 8);
const root = resolve(new URL('../../..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'fedai-bench-router-'));
const routerKey = generateSecretKey();
const operatorKey = generateSecretKey();
const MODEL = 'fedai-demo-noise-v1';

function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

function start(entry: string, env: Record<string, string>): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', resolve(root, entry)], {
    cwd: root,
    env: { ...process.env, LOG_LEVEL: 'silent', ...env },
    stdio: 'ignore',
  });
}

async function waitFor(
  url: string,
  check: (r: Response) => Promise<boolean> = async (r) => r.ok,
): Promise<void> {
  for (let i = 0; i < 600; i++) {
    try {
      const r = await fetch(url);
      if (await check(r)) return;
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`timeout waiting for ${url}`);
}

const routerPort = await freePort();
const nodePort = await freePort();
const routerUrl = `http://127.0.0.1:${routerPort}`;
const nodeUrl = `http://127.0.0.1:${nodePort}`;
const router = start('services/router/src/main.ts', {
  ROUTER_PORT: String(routerPort),
  ROUTER_KEY: secretKeyHex(routerKey),
  ALLOW_PRIVATE_ENDPOINTS: 'true',
  OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
  DATA_DIR: join(dir, 'router'),
});
const node = start('services/node/src/main.ts', {
  NODE_PORT: String(nodePort),
  DATA_DIR: join(dir, 'node'),
  DEMO_MODEL: 'true',
  ROUTER_URLS: routerUrl,
  ROUTER_PUBKEYS: publicKeyOf(routerKey),
  MAX_CONCURRENCY: '4',
  QUEUE_MAX: '64',
  HEARTBEAT_INTERVAL_S: '2',
});
try {
  await waitFor(`${nodeUrl}/ready`);
  await waitFor(
    `${routerUrl}/v1/models`,
    async (r) => ((await r.json()) as { data: unknown[] }).data.length > 0,
  );
  const keyUrl = `${routerUrl}/admin/apikeys`;
  const keyBody = JSON.stringify({
    name: 'bench',
    requests_per_min: 1_000_000,
    tokens_per_min: 100_000_000,
    max_parallel: 10_000,
  });
  const created = await fetch(keyUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(keyUrl, 'POST', keyBody, operatorKey),
    },
    body: keyBody,
  });
  const apiKey = ((await created.json()) as { key: string }).key;
  const nodePubkey = ((await (await fetch(`${nodeUrl}/v1/info`)).json()) as { pubkey: string }).pubkey;
  const messages = [{ role: 'user' as const, content: 'Hi' }];

  // Signed ahead of the run so the client's signing is not measured (each is used once: replay-safe).
  await initCrypto();
  const presigned = Array.from({ length: Number(process.env.BENCH_PRESIGNED ?? 12_000) }, (_, i) =>
    JSON.stringify(
      createEnvelope(
        KIND.inferenceRequest,
        {
          request_id: `bench-direct-${i}-${process.pid}`,
          model: MODEL,
          messages,
          max_tokens: 1,
          temperature: 0,
          stream: false,
        },
        { audience: nodePubkey, expiresInS: 600 },
        routerKey,
      ),
    ),
  );
  let counter = 0;
  const direct = await autocannon({
    url: `${nodeUrl}/v1/infer`,
    connections: CONNECTIONS,
    duration: DURATION_S,
    requests: [
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        setupRequest: (request) => {
          request.body = presigned[counter++ % presigned.length];
          return request;
        },
      },
    ],
  });
  const routed = await autocannon({
    url: `${routerUrl}/v1/chat/completions`,
    connections: CONNECTIONS,
    duration: DURATION_S,
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
    body: JSON.stringify({ model: MODEL, messages, max_tokens: 1, temperature: 0 }),
  });

  // The router's own added time, as it reports it, over sequential requests (no queueing).
  const overhead: number[] = [];
  for (let i = 0; i < 300; i++) {
    const r = await fetch(`${routerUrl}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
      body: JSON.stringify({ model: MODEL, messages, max_tokens: 1, temperature: 0 }),
    });
    await r.arrayBuffer();
    if (r.ok) overhead.push(Number(r.headers.get('x-fedai-overhead-ms')));
  }
  const own = summarize(overhead);

  const row = (name: string, r: autocannon.Result) =>
    `| ${name} | ${fmt(r.requests.average)} | ${fmt(r.latency.p50, 2)} | ${fmt(r.latency.p99, 2)} | ${r.non2xx} | ${r.errors} |`;
  console.log(
    `router bench: ${CONNECTIONS} connections x ${DURATION_S} s each; demo model, 1 token per answer (node ${process.version})`,
  );
  console.log('| path | req/s (mean) | latency p50 ms | latency p99 ms | non-2xx | errors |');
  console.log('|---|---|---|---|---|---|');
  console.log(row('direct to node (signed)', direct));
  console.log(row('through router (OpenAI API)', routed));
  console.log(
    `router overhead under load: p50 ${fmt(routed.latency.p50 - direct.latency.p50, 2)} ms, p99 ${fmt(routed.latency.p99 - direct.latency.p99, 2)} ms; throughput ratio ${fmt(routed.requests.average / direct.requests.average, 2)}`,
  );
  console.log(
    `router's own added time (x-fedai-overhead-ms, 300 sequential requests): p50 ${fmt(own.median, 2)} ms, p99 ${fmt(own.p99, 2)} ms`,
  );
} finally {
  router.kill('SIGTERM');
  node.kill('SIGTERM');
  await new Promise((r) => setTimeout(r, 500));
  rmSync(dir, { recursive: true, force: true });
}
