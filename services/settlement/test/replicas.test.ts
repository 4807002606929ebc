// Two settlement replicas (one key, one PostgreSQL database) given the same operations at the same
// time, as a load balancer with retries would: the same faucet payment, the same refund, the same
// reserve and capture, many times over. Each operation takes effect once; the ledger verifies.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { openDb, startPostgres } from '@fed-ai/kit';
import { verifyLedger } from '@fed-ai/ledger';
import {
  createEnvelope,
  createNip98Header,
  generateSecretKey,
  KIND,
  publicKeyOf,
  secretKeyHex,
} from '@fed-ai/protocol';
import { settlementConfigSchema } from '../src/config';
import { type RunningSettlement, startSettlement } from '../src/settlement';
import { signedMetering } from './signed-metering';

const dir = mkdtempSync(join(tmpdir(), 'fedai-settlement-replicas-'));
const routerKey = generateSecretKey();
const settlementKey = generateSecretKey();
const nodeKey = generateSecretKey();
let pg: Awaited<ReturnType<typeof startPostgres>>;
let replicas: RunningSettlement[] = [];

before(async () => {
  pg = await startPostgres();
  const admin = await openDb({ url: pg.url });
  await admin.query('CREATE DATABASE settlement');
  await admin.close();
  const config = (name: string) =>
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      SETTLEMENT_KEY: secretKeyHex(settlementKey),
      DATABASE_URL: pg.url.replace(/\/postgres$/, '/settlement'),
      DATA_DIR: join(dir, name),
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
      FAUCET: 'true',
      RECONCILE_INTERVAL_S: '0',
      PAYOUT_INTERVAL_S: '0',
    });
  // One after the other: both run the same migrations.
  replicas.push(await startSettlement(config('a')));
  replicas.push(await startSettlement(config('b')));
});

after(async () => {
  for (const r of replicas) await r.close();
  replicas = [];
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function call(replica: number, path: string, body: unknown) {
  const url = `${replicas[replica]!.url}${path}`;
  const text = JSON.stringify(body);
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(url, 'POST', text, routerKey),
    },
    body: text,
  });
  return { status: response.status, body: (await response.json()) as Record<string, unknown> };
}

const balance = async (payer: string) => (await replicas[0]!.books.tab(payer)).balance_msat;
/** The same call to both replicas, `times` times each, all at once. */
const both = (times: number, path: string, body: unknown) =>
  Promise.all(Array.from({ length: times * 2 }, (_, i) => call(i % 2, path, body)));

async function funded(payer: string, amountMsat: number): Promise<void> {
  const topup = await call(0, '/v1/topups', { payer, amount_msat: amountMsat });
  const paid = await both(5, '/v1/faucet/pay', { bolt11: topup.body.bolt11 });
  assert.equal(paid.filter((p) => p.status === 200).length, 1, JSON.stringify(paid.map((p) => p.body)));
  assert.equal(await balance(payer), amountMsat, 'credited once');
}

test('the same faucet payment to both replicas ten times credits the tab once', async () => {
  await funded('replica-alice', 20_000);
  assert.equal((await replicas[1]!.books.tab('replica-alice')).balance_msat, 20_000, 'both see it');
  assert.deepEqual((await verifyLedger(replicas[0]!.ledger.db)).problems, []);
});

test('the same refund to both replicas ten times pays the invoice once and debits the tab once', async () => {
  await funded('replica-bob', 10_000);
  const target = await call(1, '/v1/topups', { payer: 'replica-carol', amount_msat: 4000 });
  const refunds = await both(5, '/v1/refunds', { payer: 'replica-bob', bolt11: target.body.bolt11 });
  const succeeded = refunds.filter((r) => r.status === 200 && r.body.state === 'succeeded');
  assert.equal(succeeded.length, 1, JSON.stringify(refunds.map((r) => r.body)));
  assert.ok(
    refunds.every((r) => r.status === 200 || r.status === 409),
    'the rest are refused, not lost',
  );
  assert.equal(await balance('replica-bob'), 6000);
  assert.equal(await balance('replica-carol'), 4000, 'the invoice was paid once');
  assert.deepEqual((await verifyLedger(replicas[0]!.ledger.db)).problems, []);
});

test('the same reserve and capture to both replicas: held once, charged once', async () => {
  await funded('replica-dave', 10_000);
  const opId = 'req-replicas-0001';
  const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
  const reserve = createEnvelope(
    KIND.settlementRequest,
    { op: 'reserve', op_id: opId, account: 'replica-dave', amount_msat: 6000, timeout_s: 600 },
    { audience: publicKeyOf(settlementKey) },
    routerKey,
  );
  const held = await Promise.all([0, 1, 0, 1].map((i) => call(i, '/v1/ops', reserve)));
  assert.ok(
    held.some((h) => h.status === 200),
    JSON.stringify(held.map((h) => h.body)),
  );
  assert.equal(await balance('replica-dave'), 4000, 'held once');
  const { metering } = signedMetering({
    opId,
    router: publicKeyOf(routerKey),
    nodeKey,
    tokensIn: 1000,
    tokensOut: 2000,
    price,
  });
  const capture = (n: number) =>
    createEnvelope(
      KIND.settlementRequest,
      {
        op: 'capture',
        op_id: opId,
        amount_msat: 5000,
        node: publicKeyOf(nodeKey),
        metering: JSON.stringify(metering),
      },
      // Distinct envelopes: a retry signs anew.
      { audience: publicKeyOf(settlementKey), tags: [['nonce', String(n)]] },
      routerKey,
    );
  const captured = await Promise.all([0, 1, 2, 3].map((i) => call(i % 2, '/v1/ops', capture(i))));
  assert.ok(
    captured.some((c) => c.status === 200),
    JSON.stringify(captured.map((c) => c.body)),
  );
  assert.equal(await balance('replica-dave'), 5000, 'charged 5,000 once, the rest released');
  assert.deepEqual((await verifyLedger(replicas[0]!.ledger.db)).problems, []);
});

test('the same captures from one lease to both replicas at once: each charged once, the lease exact', async () => {
  await funded('replica-erin', 100_000);
  const router = publicKeyOf(routerKey);
  const node = publicKeyOf(nodeKey);
  const [a, b] = [replicas[0]!.books, replicas[1]!.books];
  await a.openLease('lease-replica-erin', 'replica-erin', 60_000, 600, router);
  const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
  const ops = Array.from({ length: 8 }, (_, i) => `req-replicas-lease-${i}`);
  const records = ops.map(
    (opId) => signedMetering({ opId, router, nodeKey, tokensIn: 1000, tokensOut: 2000, price }).metering,
  );
  // Each capture five times to each replica, all at once: the two replicas' transactions race on
  // the lease's account and on the charge rows, the only guard a batched lease capture has.
  const charged = await Promise.all(
    ops.flatMap((opId, k) =>
      Array.from({ length: 10 }, (_, n) =>
        (n % 2 === 0 ? a : b).capture(opId, node, records[k], router, 'lease-replica-erin'),
      ),
    ),
  );
  assert.ok(charged.every((c) => c.chargedMsat === 5000));
  const rows = await replicas[0]!.ledger.db.query<{ n: number }>(
    'SELECT count(*)::int AS n FROM charges WHERE op_id = ANY($1)',
    [ops],
  );
  assert.equal(rows.rows[0]?.n, 8);
  const [lease] = await replicas[0]!.ledger.lookupAccounts(['lease:lease-replica-erin']);
  assert.equal(
    lease!.creditsPosted - lease!.debitsPosted,
    60_000 - 8 * 5000,
    'eight charges out of the lease',
  );
  assert.equal(await balance('replica-erin'), 40_000);
  assert.deepEqual((await verifyLedger(replicas[0]!.ledger.db)).problems, []);
});
