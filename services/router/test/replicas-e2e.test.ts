// Two router replicas (real processes) and two settlement replicas on ONE PostgreSQL server, each
// pair behind a round-robin proxy: limits, revocation, tabs and a SIGKILL behave as one router.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { type Db, openDb, serviceNodeArgs, startPostgres } from '@fed-ai/kit';
import { verifyLedger } from '@fed-ai/ledger';
import {
  createEnvelope,
  createNip98Header,
  generateSecretKey,
  KIND,
  publicKeyOf,
  secretKeyHex,
} from '@fed-ai/protocol';
// Relative, as settlement's tests import this folder's doubles: the router package does not depend on settlement.
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '../../settlement/src/index';
import { RoundRobinProxy } from './round-robin-proxy';
import { SigningNodeDouble } from './signing-node-double';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'fedai-replicas-'));
const routerKey = generateSecretKey();
const routerPubkey = publicKeyOf(routerKey);
const settlementKey = generateSecretKey();
const operatorKey = generateSecretKey();
const PER_REQUEST_MSAT = 125; // 4 output tokens at 31,250 msat per 1k; input free
const CACHE_TTL_MS = 2_000;
const NODE_RELOAD_MS = 500;

let postgres: Awaited<ReturnType<typeof startPostgres>>;
let admin: Db;
let routerDbUrl: string;
let settlementDbUrl: string;
const settlements: RunningSettlement[] = [];
let settlementProxy: RoundRobinProxy;
let proxy: RoundRobinProxy;
const routers: { port: number; proc?: ChildProcess }[] = [];
const nodes = [new SigningNodeDouble(), new SigningNodeDouble()];
let heartbeats: NodeJS.Timeout | undefined;

const routerUrl = (i: number) => `http://127.0.0.1:${routers[i]!.port}`;

function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

function spawnRouter(i: number): ChildProcess {
  const env = {
    ROUTER_PORT: String(routers[i]!.port),
    ROUTER_KEY: secretKeyHex(routerKey), // one router identity, several replicas
    OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
    ALLOW_PRIVATE_ENDPOINTS: 'true',
    SETTLEMENT_URL: settlementProxy.url,
    SETTLEMENT_PUBKEY: publicKeyOf(settlementKey),
    RESERVATION_TIMEOUT_S: '10',
    CANCEL_GRACE_MS: '300',
    OUTBOX_RETRY_MS: '200',
    PROBE_INTERVAL_S: '0',
    API_KEY_CACHE_TTL_MS: String(CACHE_TTL_MS),
    NODE_RELOAD_MS: String(NODE_RELOAD_MS),
    KEY_SLOT_LEASE_MS: '3000',
    DATA_DIR: join(dir, `router${i}`),
    DATABASE_URL: routerDbUrl,
  };
  return spawn(
    process.execPath,
    serviceNodeArgs(resolve(root, 'services/router/src/main.ts'), ['--import', 'tsx']),
    {
      cwd: root,
      env: { ...process.env, LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'ignore', openSync(join(dir, `router${i}.err.log`), 'a')],
    },
  );
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 30_000): Promise<T> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 50));
  }
  const logs = routers.map((_, i) => {
    try {
      return `router${i}: ${readFileSync(join(dir, `router${i}.err.log`), 'utf8').slice(-1500)}`;
    } catch {
      return `router${i}: (no log)`;
    }
  });
  throw new Error(`timed out waiting for ${what}\n${logs.join('\n')}`);
}

/** Each replica gets its own heartbeat (a different body, so the shared replay store takes both). */
function heartbeat(node: SigningNodeDouble, i: number): Promise<unknown> {
  const envelope = createEnvelope(
    KIND.nodeHeartbeat,
    { free_slots: 4 - i, queue_depth: 0, models_loaded: ['double-model'], ready: true },
    { audience: routerPubkey },
    node.secretKey,
  );
  return fetch(`${routerUrl(i)}/v1/nodes/heartbeat`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(envelope),
  }).catch(() => undefined);
}

const servingNodes = async (i: number) => {
  const models = (await (await fetch(`${routerUrl(i)}/v1/models`)).json()) as { data: { nodes: number }[] };
  return models.data[0]?.nodes ?? 0;
};

before(async () => {
  postgres = await startPostgres();
  admin = await openDb({ url: postgres.url, maxConnections: 1 });
  await admin.query('CREATE DATABASE router');
  await admin.query('CREATE DATABASE settlement');
  routerDbUrl = postgres.url.replace(/\/postgres$/, '/router');
  settlementDbUrl = postgres.url.replace(/\/postgres$/, '/settlement');
  // Replicas start one after another: migrations run once, then the second finds them applied.
  for (let i = 0; i < 2; i++)
    settlements.push(
      await startSettlement(
        settlementConfigSchema.parse({
          SETTLEMENT_PORT: '0',
          SETTLEMENT_KEY: secretKeyHex(settlementKey),
          SETTLEMENT_ROUTER_PUBKEYS: routerPubkey,
          FAUCET: 'true',
          SWEEP_INTERVAL_MS: '200',
          DATA_DIR: join(dir, `settlement${i}`),
          DATABASE_URL: settlementDbUrl,
        }),
      ),
    );
  settlementProxy = new RoundRobinProxy(settlements.map((s) => s.url));
  await settlementProxy.start();
  for (let i = 0; i < 2; i++) {
    routers.push({ port: await freePort() });
    routers[i]!.proc = spawnRouter(i);
    await waitFor(`router${i} ready`, async () =>
      (await fetch(`${routerUrl(i)}/ready`)).ok ? true : undefined,
    );
  }
  proxy = new RoundRobinProxy([routerUrl(0), routerUrl(1)]);
  await proxy.start();
  for (const node of nodes) {
    node.price = { input_msat_per_1k: 0, output_msat_per_1k: 31_250 };
    await node.start();
    // Registered at replica 0 only: replica 1 learns it from the nodes table (NODE_RELOAD_MS).
    assert.equal((await node.register(routerUrl(0), routerPubkey)).status, 200);
  }
  heartbeats = setInterval(() => {
    for (const node of nodes) for (let i = 0; i < routers.length; i++) void heartbeat(node, i);
  }, 300);
  for (let i = 0; i < 2; i++)
    await waitFor(`replica ${i} serving both nodes`, async () =>
      (await servingNodes(i)) === 2 ? true : undefined,
    );
});

after(async () => {
  if (heartbeats) clearInterval(heartbeats);
  for (const r of routers) {
    const p = r.proc;
    if (p && p.exitCode === null && p.signalCode === null) {
      const exited = new Promise((done) => p.once('exit', done));
      p.kill('SIGTERM');
      await exited;
    }
  }
  await proxy?.stop();
  await settlementProxy?.stop();
  for (const s of settlements) await s.close();
  for (const n of nodes) await n.stop();
  await admin?.close();
  await postgres?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function adminCall(method: string, path: string, body?: unknown): Promise<Record<string, unknown>> {
  const url = `${proxy.url}${path}`;
  const text = body === undefined ? undefined : JSON.stringify(body);
  const response = await fetch(url, {
    method,
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(url, method, text ?? '', operatorKey),
    },
    ...(text === undefined ? {} : { body: text }),
  });
  const answer = (await response.json()) as Record<string, unknown>;
  assert.equal(response.status, 200, JSON.stringify(answer));
  return answer;
}

const createKey = async (limits: Record<string, number>) =>
  (await adminCall('POST', '/admin/apikeys', { name: 'replicas', ...limits })) as { id: string; key: string };

const tabCall = async (base: string, key: string, path: string, body?: unknown) => {
  const response = await fetch(`${base}/v1/tabs/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
};

/** Funds the key's tab through the proxy: two tab calls (they count as requests of the key). */
async function fund(key: string, amountMsat: number): Promise<void> {
  const invoice = await tabCall(proxy.url, key, 'topup', { amount_msat: amountMsat });
  assert.equal(invoice.status, 200, JSON.stringify(invoice.body));
  const paid = await tabCall(proxy.url, key, 'faucet', { bolt11: invoice.body.bolt11 });
  assert.equal(paid.status, 200, JSON.stringify(paid.body));
}

async function chat(
  base: string,
  key: string,
  signal?: AbortSignal,
): Promise<{ status: number; body: Record<string, unknown> }> {
  const response = await fetch(`${base}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'double-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 4,
    }),
    ...(signal ? { signal } : {}),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const errorCode = (body: Record<string, unknown>) => (body.error as { code?: string } | undefined)?.code;
const minuteOf = () => Math.floor(Date.now() / 60_000);

test('replay protection is shared: one signed registration sent to both replicas is taken once', async () => {
  const envelope = createEnvelope(
    KIND.nodeRegistration,
    {
      endpoint: nodes[0]!.url,
      models: [{ id: 'double-model', context_window: 4096, max_output_tokens: 512, price: nodes[0]!.price }],
      capacity: { max_concurrency: 4, queue_max: 4 },
    },
    // A nonce: no registration the node double sends itself can be this very event.
    { audience: routerPubkey, tags: [['nonce', randomBytes(8).toString('hex')]] },
    nodes[0]!.secretKey,
  );
  const send = (i: number) =>
    fetch(`${routerUrl(i)}/v1/nodes/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(envelope),
    }).then(async (r) => ({
      status: r.status,
      code: errorCode((await r.json()) as Record<string, unknown>),
    }));
  const answers = await Promise.all([send(0), send(1)]);
  const shown = JSON.stringify(answers);
  // The envelope's id is recorded before anything else is checked, so whatever the first replica
  // then decides (under load its endpoint check may fail), the other sees a replay.
  assert.ok(answers.filter((a) => a.status === 200).length <= 1, `taken twice: ${shown}`);
  assert.equal(answers.filter((a) => a.code === 'REPLAYED').length, 1, `one replay: ${shown}`);
});

test('a key limited to N requests per minute gets exactly N through the proxy, not 2N', async () => {
  const N = 6;
  // A burst that crosses a UTC minute is repeated with a new key (a new window would be right).
  for (let attempt = 0; attempt < 3; attempt++) {
    const startMinute = minuteOf();
    const key = await createKey({ requests_per_min: N, max_parallel: 100 });
    await fund(key.key, 100 * PER_REQUEST_MSAT); // 2 of the N requests
    const results = await Promise.all(Array.from({ length: 3 * N }, () => chat(proxy.url, key.key)));
    if (minuteOf() !== startMinute) continue;
    const answered = results.filter((r) => r.status === 200).length;
    const limited = results.filter((r) => r.status === 429 && errorCode(r.body) === 'RATE_LIMITED');
    assert.equal(
      answered,
      N - 2,
      JSON.stringify(results.filter((r) => r.status !== 200 && r.status !== 429)),
    );
    assert.equal(limited.length, 3 * N - (N - 2));
    assert.match(
      String((limited[0]!.body.error as { message: string }).message),
      new RegExp(`${N} requests per minute`),
    );
    return;
  }
  assert.fail('three bursts in a row crossed a minute boundary');
});

test('max_parallel = 1 holds across replicas; the slot comes back when the request ends', async () => {
  const key = await createKey({ requests_per_min: 1_000, max_parallel: 1 });
  await fund(key.key, 100 * PER_REQUEST_MSAT);
  for (const n of nodes) n.mode = 'hang';
  const held = new AbortController();
  const holding = chat(proxy.url, key.key, held.signal).catch(() => null);
  // Wait until the held request has its slot (a node received it).
  await waitFor('the held request at a node', async () =>
    nodes.some((n) => n.requests > 0 && n.mode === 'hang') && (await slotsOf(key.id)) === 1
      ? true
      : undefined,
  );
  const servedBefore = [...proxy.served];
  const probes = [];
  for (let i = 0; i < 4; i++) probes.push(await chat(proxy.url, key.key)); // round robin: both replicas
  for (const p of probes) {
    assert.equal(p.status, 429, JSON.stringify(p.body));
    assert.match(String((p.body.error as { message: string }).message), /at most 1 parallel requests/);
  }
  assert.ok(
    proxy.served.every((n, i) => n - servedBefore[i]! >= 2),
    'each replica refused at least two of the probes',
  );
  held.abort();
  await holding;
  for (const n of nodes) n.mode = 'ok';
  // The slot is freed by one write after the request ends (or its lease): poll, no fixed sleep.
  const back = await waitFor('a new request admitted', async () => {
    const r = await chat(proxy.url, key.key);
    return r.status === 200 ? r : undefined;
  });
  assert.equal(back.status, 200);
});

test('a revoked key is refused by both replicas within API_KEY_CACHE_TTL_MS', async () => {
  const key = await createKey({ requests_per_min: 1_000, max_parallel: 100 });
  // Both replicas have the key cached before the revocation.
  for (let i = 0; i < 2; i++) assert.equal((await tabCall(routerUrl(i), key.key, 'me')).status, 200);
  const revokedAt = Date.now();
  await adminCall('DELETE', `/admin/apikeys/${key.id}`);
  const refused = await Promise.all(
    [0, 1].map((i) =>
      waitFor(`replica ${i} refuses the revoked key`, async () =>
        (await tabCall(routerUrl(i), key.key, 'me')).status === 401 ? Date.now() - revokedAt : undefined,
      ),
    ),
  );
  // Loose: the bound plus time for a loaded machine; the point is "bounded", not "fast".
  for (const elapsedMs of refused)
    assert.ok(elapsedMs < CACHE_TTL_MS + 10_000, `refused after ${elapsedMs} ms`);
});

test('10×N concurrent paid requests on a tab for N: exactly N answered, the ledger verifies', async () => {
  const N = 8; // 1,000 msat: the smallest top-up
  const key = await createKey({ requests_per_min: 10_000, max_parallel: 1_000 });
  await fund(key.key, N * PER_REQUEST_MSAT);
  const results = await Promise.all(Array.from({ length: 10 * N }, () => chat(proxy.url, key.key)));
  const answered = results.filter((r) => r.status === 200);
  assert.equal(answered.length, N);
  assert.equal(
    results.filter((r) => r.status === 402 && errorCode(r.body) === 'INSUFFICIENT_BALANCE').length,
    9 * N,
  );
  const tab = await waitFor('captures landed', async () => {
    const t = await tabCall(proxy.url, key.key, 'me');
    return t.body.reserved_msat === 0 ? t : undefined;
  });
  assert.equal(tab.body.balance_msat, 0);
  await withSettlementDb(async (db) => assert.deepEqual((await verifyLedger(db)).problems, []));
});

test('a changed price and a ban made at one replica reach the other within NODE_RELOAD_MS', async () => {
  const priceAt = async (i: number) => {
    const models = (await (await fetch(`${routerUrl(i)}/v1/models`)).json()) as {
      data: { price: { output_msat_per_1k: number } }[];
    };
    return models.data[0]?.price.output_msat_per_1k;
  };
  const cheap = nodes[1]!;
  cheap.price = { input_msat_per_1k: 0, output_msat_per_1k: 25_000 };
  const changedAt = Date.now();
  assert.equal((await cheap.register(routerUrl(0), routerPubkey)).status, 200);
  const priceMs = await waitFor('replica 1 sees the new price', async () =>
    (await priceAt(1)) === 25_000 ? Date.now() - changedAt : undefined,
  );
  const bannedAt = Date.now();
  await adminCall('POST', `/admin/nodes/${cheap.pubkey}/ban`);
  const banMs = await Promise.all(
    [0, 1].map((i) =>
      waitFor(`replica ${i} stops serving the banned node`, async () =>
        (await servingNodes(i)) === 1 ? Date.now() - bannedAt : undefined,
      ),
    ),
  );
  for (const elapsedMs of [priceMs, ...banMs])
    assert.ok(elapsedMs < NODE_RELOAD_MS + 10_000, `took ${elapsedMs} ms`);
});

test('SIGKILL of one router replica mid-run: no money lost, the other replica keeps serving', async () => {
  const FUND_MSAT = 200 * PER_REQUEST_MSAT;
  const key = await createKey({ requests_per_min: 10_000, max_parallel: 1_000 });
  await fund(key.key, FUND_MSAT);
  for (const n of nodes) n.tokenDelayMs = 200; // each answer takes ≥ 0.8 s: the kill lands mid-stream
  const answered = new Set<string>();
  /** Reason codes of answers other than 200, for the failure message (one 503 seen in session 15). */
  const refusals: string[] = [];
  const run = async () => {
    try {
      const r = await chat(proxy.url, key.key, AbortSignal.timeout(15_000));
      if (r.status !== 200)
        refusals.push(`${r.status} ${JSON.stringify(r.body.error ?? r.body).slice(0, 200)}`);
      const receipt = (r.body.fedai as { receipt?: { content: string } } | undefined)?.receipt;
      if (r.status === 200 && receipt)
        answered.add((JSON.parse(receipt.content) as { request_id: string }).request_id);
      return r.status;
    } catch {
      return 0; // the replica died under this request
    }
  };
  const startedBefore = nodes.reduce((sum, n) => sum + n.requests, 0);
  const first = Array.from({ length: 20 }, run);
  await waitFor('requests in flight', async () =>
    nodes.reduce((sum, n) => sum + n.requests, 0) - startedBefore >= 6 ? true : undefined,
  );
  const victim = routers[0]!.proc!;
  const exited = new Promise((done) => victim.once('exit', done));
  victim.kill('SIGKILL');
  await exited;
  const firstStatuses = await Promise.all(first);
  assert.ok(
    firstStatuses.some((s) => s !== 200),
    'some requests died with the replica',
  );
  assert.ok(
    firstStatuses.some((s) => s === 200),
    'the other replica answered meanwhile',
  );
  for (const n of nodes) n.tokenDelayMs = 5;
  // The proxy skips the dead replica (connection refused): every later request is served. In
  // waves of 4: one node serves (the previous test banned the other) and, to the survivor, it has
  // room for 7 (max_concurrency 4 + queue 4, less the 1 its heartbeat says others run), so 8 at
  // once is a rightful NO_FREE_SLOT when all overlap (the 503 seen in sessions 15 and 18).
  refusals.length = 0;
  const later: number[] = [];
  for (let wave = 0; wave < 2; wave++) later.push(...(await Promise.all(Array.from({ length: 4 }, run))));
  assert.deepEqual(
    later,
    Array(8).fill(200),
    `the surviving replica serves every request: ${refusals.join('; ')}`,
  );

  await withSettlementDb(async (db) => {
    // Reservations and leases the dead replica held expire (RESERVATION_TIMEOUT_S 10) and are swept.
    await waitFor(
      'no open reservation or lease',
      async () => {
        const open = await db.query<{ n: number }>(
          `SELECT ((SELECT COUNT(*) FROM ledger_transfers WHERE kind = 'pending' AND resolution IS NULL)
                 + (SELECT COUNT(*) FROM leases WHERE closed_at_s IS NULL))::int AS n`,
        );
        return open.rows[0]!.n === 0 ? true : undefined;
      },
      40_000,
    );
    assert.deepEqual((await verifyLedger(db)).problems, [], 'ledger verify passes');
    const { charges, tab } = await db.transaction(async (tx) => {
      await tx.query('SET TRANSACTION ISOLATION LEVEL REPEATABLE READ');
      return {
        charges: await tx.query<{ op_id: string; amount_msat: number }>(
          'SELECT op_id, amount_msat FROM charges WHERE account = $1',
          [`tab:${key.id}`],
        ),
        tab: await tx.query<{ credits_posted: number; debits_posted: number; debits_pending: number }>(
          'SELECT credits_posted, debits_posted, debits_pending FROM ledger_accounts WHERE id = $1',
          [`tab:${key.id}`],
        ),
      };
    });
    for (const c of charges.rows)
      assert.ok(answered.has(c.op_id), `charge ${c.op_id} has no answered request`);
    const charged = charges.rows.reduce((sum, c) => sum + c.amount_msat, 0);
    // Leases move money out of the tab and back: what it lost is what it was charged.
    const { credits_posted, debits_posted, debits_pending } = tab.rows[0]!;
    assert.equal(credits_posted - debits_posted, FUND_MSAT - charged, 'the tab paid exactly its charges');
    assert.equal(debits_pending, 0);
    assert.ok(charges.rows.length >= 8, `charged ${charges.rows.length} of ${answered.size} answered`);
  });
});

async function slotsOf(keyId: string): Promise<number> {
  const db = await openDb({ url: routerDbUrl, maxConnections: 1 });
  try {
    const rows = await db.query<{ n: number }>('SELECT COUNT(*)::int AS n FROM key_slots WHERE key_id = $1', [
      keyId,
    ]);
    return rows.rows[0]!.n;
  } finally {
    await db.close();
  }
}

async function withSettlementDb(fn: (db: Db) => Promise<void>): Promise<void> {
  const db = await openDb({ url: settlementDbUrl, maxConnections: 2 });
  try {
    await fn(db);
  } finally {
    await db.close();
  }
}
