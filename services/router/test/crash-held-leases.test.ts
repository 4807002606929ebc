// A router process SIGKILLed while it holds a spending lease for a payer (and one request drawn
// from it is in flight): the next process on the same data directory closes it at start, long
// before settlement's expiry (900 s here), and charges nothing it did not answer.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { serviceNodeArgs } from '@fed-ai/kit';
import { verifyLedger } from '@fed-ai/ledger';
import { createNip98Header, generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '../../settlement/src/index';
import { SigningNodeDouble } from './signing-node-double';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'fedai-held-'));
const routerKey = generateSecretKey();
const routerPubkey = publicKeyOf(routerKey);
const settlementKey = generateSecretKey();
const operatorKey = generateSecretKey();
const PER_REQUEST_MSAT = 125; // 4 output tokens at 31,250 msat per 1k; input free
/** The bucket of a request's upper bound (the power of two above it): a lease holds 8 of them. */
const SLOT_MSAT = 128;
const FUND_MSAT = 1_000_000; // far above 10 x the lease: this payer gets a spending lease

let settlement: RunningSettlement;
let port: number;
let router: ChildProcess | undefined;
const node = new SigningNodeDouble();
let heartbeats: NodeJS.Timeout | undefined;
const routerUrl = () => `http://127.0.0.1:${port}`;

function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as { port: number }).port;
      s.close(() => done(p));
    });
  });
}

function spawnRouter(): ChildProcess {
  const env = {
    ROUTER_PORT: String(port),
    ROUTER_KEY: secretKeyHex(routerKey),
    OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
    ALLOW_PRIVATE_ENDPOINTS: 'true',
    SETTLEMENT_URL: settlement.url,
    SETTLEMENT_PUBKEY: publicKeyOf(settlementKey),
    RESERVATION_TIMEOUT_S: '900',
    RESERVE_AHEAD_SLOTS: '8',
    OUTBOX_RETRY_MS: '200',
    PROBE_INTERVAL_S: '0',
    DATA_DIR: join(dir, 'router'),
  };
  return spawn(
    process.execPath,
    serviceNodeArgs(resolve(root, 'services/router/src/main.ts'), ['--import', 'tsx']),
    {
      cwd: root,
      env: { ...process.env, LOG_LEVEL: 'warn', ...env },
      stdio: ['ignore', 'ignore', openSync(join(dir, 'router.err.log'), 'a')],
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
  const log = (() => {
    try {
      return readFileSync(join(dir, 'router.err.log'), 'utf8').slice(-1500);
    } catch {
      return '(no log)';
    }
  })();
  throw new Error(`timed out waiting for ${what}\n${log}`);
}

async function startRouterProcess(): Promise<void> {
  router = spawnRouter();
  await waitFor('router ready', async () => ((await fetch(`${routerUrl()}/ready`)).ok ? true : undefined));
  assert.equal((await node.register(routerUrl(), routerPubkey)).status, 200);
  await waitFor('node serving', async () => {
    const models = (await (await fetch(`${routerUrl()}/v1/models`)).json()) as { data: { nodes: number }[] };
    return (models.data[0]?.nodes ?? 0) === 1 ? true : undefined;
  });
}

async function call(method: string, path: string, auth: string, body?: unknown) {
  const response = await fetch(`${routerUrl()}${path}`, {
    method,
    headers: { authorization: auth, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const operatorAuth = (path: string, method: string, body: string) =>
  createNip98Header(`${routerUrl()}${path}`, method, body, operatorKey);

const chat = (key: string) =>
  call('POST', '/v1/chat/completions', `Bearer ${key}`, {
    model: 'double-model',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 4,
  });

before(async () => {
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      SETTLEMENT_KEY: secretKeyHex(settlementKey),
      SETTLEMENT_ROUTER_PUBKEYS: routerPubkey,
      FAUCET: 'true',
      SWEEP_INTERVAL_MS: '200',
      DATA_DIR: join(dir, 'settlement'),
    }),
  );
  port = await freePort();
  node.price = { input_msat_per_1k: 0, output_msat_per_1k: 31_250 };
  await node.start();
  heartbeats = setInterval(() => void node.heartbeat(routerUrl(), routerPubkey).catch(() => {}), 300);
  await startRouterProcess();
});

after(async () => {
  if (heartbeats) clearInterval(heartbeats);
  if (router && router.exitCode === null && router.signalCode === null) {
    const exited = new Promise((done) => router!.once('exit', done));
    router.kill('SIGTERM');
    await exited;
  }
  await settlement?.close();
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A new API key whose tab holds `fundMsat`. */
async function fundedKey(name: string, fundMsat: number): Promise<{ id: string; key: string }> {
  const keyBody = JSON.stringify({ name, requests_per_min: 1_000, max_parallel: 100 });
  const created = await call('POST', '/admin/apikeys', operatorAuth('/admin/apikeys', 'POST', keyBody), {
    name,
    requests_per_min: 1_000,
    max_parallel: 100,
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const key = created.body as { id: string; key: string };
  const invoice = await call('POST', '/v1/tabs/topup', `Bearer ${key.key}`, { amount_msat: fundMsat });
  assert.equal(invoice.status, 200, JSON.stringify(invoice.body));
  const paid = await call('POST', '/v1/tabs/faucet', `Bearer ${key.key}`, { bolt11: invoice.body.bolt11 });
  assert.equal(paid.status, 200, JSON.stringify(paid.body));
  return key;
}

/** SIGKILLs the router process and waits for it to be gone. */
async function killRouter(): Promise<void> {
  const victim = router!;
  const exited = new Promise((done) => victim.once('exit', done));
  victim.kill('SIGKILL');
  await exited;
}

test('a spending lease held by a SIGKILLed router is closed by the next process at start', async () => {
  const key = await fundedKey('held', FUND_MSAT);

  // The first request reserves on the spot and learns the balance; a lease is then opened.
  assert.equal((await chat(key.key)).status, 200);
  // Eight bounds of the request's bucket (the spot reservation is captured meanwhile).
  await waitFor('a lease open', async () => {
    const tab = await settlement.books.tab(key.id);
    return tab.reserved_msat === 8 * SLOT_MSAT && tab.charges.length === 1 ? true : undefined;
  });
  // A second request draws from the lease and is in flight (a slow node) when the router dies.
  node.tokenDelayMs = 2_000;
  const inFlight = chat(key.key).catch(() => null);
  await waitFor('request at the node', async () => (node.requests >= 2 ? true : undefined));
  await killRouter();
  assert.equal(await inFlight, null, 'the in-flight request died with the router');
  node.tokenDelayMs = 5;
  const afterKill = await settlement.books.tab(key.id);
  assert.equal(
    afterKill.reserved_msat,
    8 * SLOT_MSAT,
    'the lease (one request drawn) is still held after the kill',
  );

  await startRouterProcess();
  // Closed at start by the sweep, not by settlement's expiry (900 s).
  await waitFor('no reservation left', async () => {
    const tab = await settlement.books.tab(key.id);
    return tab.reserved_msat === 0 ? true : undefined;
  });
  const tab = await settlement.books.tab(key.id);
  assert.equal(tab.balance_msat, FUND_MSAT - PER_REQUEST_MSAT, 'only the answered request was charged');
  assert.equal(tab.charges.length, 1);
  // Still serving, with a lease again.
  assert.equal((await chat(key.key)).status, 200);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test('a reservation made on the spot for a request in flight when the router is SIGKILLed is released at the next start', async () => {
  // 5,000 msat: under 10 x a lease of 8 x 128 msat, so this payer gets none (a reserve per request).
  const key = await fundedKey('spot', 5_000);
  node.tokenDelayMs = 2_000;
  const before = node.requests;
  const inFlight = chat(key.key).catch(() => null);
  await waitFor('request at the node', async () => (node.requests > before ? true : undefined));
  const held = await settlement.books.tab(key.id);
  assert.ok(
    held.reserved_msat > 0 && held.reserved_msat < 1_000,
    `one request's hold: ${held.reserved_msat}`,
  );
  await killRouter();
  assert.equal(await inFlight, null);
  node.tokenDelayMs = 5;
  await startRouterProcess();
  await waitFor('the spot hold released', async () => {
    const tab = await settlement.books.tab(key.id);
    return tab.reserved_msat === 0 ? true : undefined;
  });
  const tab = await settlement.books.tab(key.id);
  assert.equal(tab.balance_msat, 5_000, 'nothing charged for the answer that never came');
  assert.equal(tab.charges.length, 0);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});
