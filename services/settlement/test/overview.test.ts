// The operator's money overview (`GET /v1/admin/overview`, overview.ts) over a real settlement on
// PGlite: fees, tabs and owed earnings are the ledger's exact numbers after real reserves and
// captures (node-signed metering), the last-24-hours window leaves older charges out, lists are
// bounded and ordered; only routers and operators may read it, and a bad limit is refused.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { verifyLedger } from '@fed-ai/ledger';
import { createNip98Header, generateSecretKey, publicKeyOf } from '@fed-ai/protocol';
import { settlementConfigSchema } from '../src/config';
import type { Overview } from '../src/overview';
import { type RunningSettlement, startSettlement } from '../src/settlement';
import { signedMetering } from './signed-metering';

const dir = mkdtempSync(join(tmpdir(), 'fedai-overview-'));
const routerKey = generateSecretKey();
const router = publicKeyOf(routerKey);
const operatorKey = generateSecretKey();
const nodeKey = generateSecretKey();
const node = publicKeyOf(nodeKey);
const price = { input_msat_per_1k: 10_000, output_msat_per_1k: 20_000 };
let settlement: RunningSettlement;

before(async () => {
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: dir,
      SETTLEMENT_ROUTER_PUBKEYS: router,
      SETTLEMENT_OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
      FAUCET: 'true',
      ROUTER_FEE_BPS: '500',
    }),
  );
});

after(async () => {
  await settlement.close();
  rmSync(dir, { recursive: true, force: true });
});

async function overview(key: Uint8Array, query = ''): Promise<{ status: number; body: unknown }> {
  const url = `${settlement.url}/v1/admin/overview${query}`;
  const response = await fetch(url, {
    headers: { authorization: createNip98Header(url, 'GET', undefined, key) },
  });
  return { status: response.status, body: await response.json() };
}

let seq = 0;
/** A capture of 100 in / 200 out tokens at `price`: 5,000 msat, 250 of it the router's fee. */
async function charge(payer: string): Promise<void> {
  const opId = `req-overview-${++seq}`;
  await settlement.books.reserve(opId, payer, 5000, 600);
  const { metering } = signedMetering({ opId, router, nodeKey, tokensIn: 100, tokensOut: 200, price });
  assert.equal((await settlement.books.capture(opId, node, metering, router)).chargedMsat, 5000);
}

async function fund(payer: string, amountMsat: number): Promise<void> {
  await settlement.books.faucetPay((await settlement.books.openTopup(payer, amountMsat)).bolt11);
}

test('fees, tabs and owed earnings are the exact msat of the charges; old charges leave the 24 h window', async () => {
  await fund('alice', 20_000);
  await fund('bob', 8_000);
  await fund('carol', 1_000);
  for (let i = 0; i < 3; i++) await charge('alice');
  await charge('bob');
  await settlement.books.reserve('req-overview-held', 'carol', 600, 600);
  // A spending lease of bob's: out of his tab's balance, still his, so reserved.
  await settlement.books.openLease('lease-overview-bob', 'bob', 2_000, 600, publicKeyOf(routerKey));
  // One of alice's charges is two days old: in the totals, not in the last 24 hours.
  await settlement.ledger.db.query(
    "UPDATE charges SET created_at = now() - interval '2 days' WHERE op_id = 'req-overview-1'",
  );

  const { status, body } = await overview(routerKey);
  assert.equal(status, 200, JSON.stringify(body));
  const o = body as Overview;
  assert.equal(o.fees.router_fees_msat, 4 * 250);
  assert.deepEqual(o.fees.last_24h, {
    requests: 3,
    charged_msat: 15_000,
    node_msat: 14_250,
    router_msat: 750,
  });
  assert.equal(o.tabs.count, 3);
  assert.equal(o.tabs.balance_msat, 20_000 - 15_000 + (8_000 - 5_000 - 2_000) + (1_000 - 600));
  assert.equal(o.tabs.reserved_msat, 600 + 2_000);
  assert.deepEqual(o.tabs.largest, [
    { payer: 'alice', balance_msat: 5_000, reserved_msat: 0 },
    { payer: 'bob', balance_msat: 1_000, reserved_msat: 2_000 },
    { payer: 'carol', balance_msat: 400, reserved_msat: 600 },
  ]);
  assert.deepEqual(o.payouts.owed, { count: 1, balance_msat: 4 * 4_750, reserved_msat: 0 });
  assert.deepEqual(o.payouts.recent, []);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);

  const one = (await overview(operatorKey, '?limit=1')).body as Overview;
  assert.deepEqual(
    one.tabs.largest.map((t) => t.payer),
    ['alice'],
    'an operator reads it too, bounded',
  );
  assert.equal(one.tabs.count, 3, 'the sums are over every tab, not the listed ones');
});

test('a node key, a stranger and no signature are refused; a bad limit or an unknown parameter is 400', async () => {
  assert.equal((await overview(nodeKey)).status, 403);
  assert.equal((await overview(generateSecretKey())).status, 403);
  assert.equal((await fetch(`${settlement.url}/v1/admin/overview`)).status, 401);
  for (const query of ['?limit=0', '?limit=101', '?limit=abc', '?limit=1.5', '?account=tab:alice']) {
    const { status, body } = await overview(routerKey, query);
    assert.equal(status, 400, `${query}: ${JSON.stringify(body)}`);
    assert.match(JSON.stringify(body), /"code":"[A-Z_]+"/);
  }
});
