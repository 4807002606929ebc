// Spending leases at settlement (issue 15): a lease moves part of a tab into its own account;
// captures drawn from it are charged exactly the node-signed cost out of it and never more than
// it holds; closing gives the rest back; a capture after the close (or once the lease is spent) is
// charged from the tab directly, once; the sweep closes expired leases. Real books on PGlite,
// real node-signed records; `ledger verify` after every test.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { afterEach, beforeEach, test } from 'node:test';
import { type Db, migrate, openDb } from '@fed-ai/kit';
import { Ledger, verifyLedger } from '@fed-ai/ledger';
import { InternalLightning } from '@fed-ai/lightning';
import { FedAiError, generateSecretKey, publicKeyOf, splitCharge } from '@fed-ai/protocol';
import { ACCOUNTS, BOOKS_MIGRATIONS, Books } from '../src/books';
import { signedMetering } from './signed-metering';

const FEE_BPS = 1000;
const PRICE = { input_msat_per_1k: 10_000, output_msat_per_1k: 20_000 };
/** 100 tokens in, 200 out at PRICE: 5,000 msat. */
const COST_MSAT = 5000;

let db: Db;
let ledger: Ledger;
let books: Books;
let clockS: number;
const routerKey = generateSecretKey();
const router = publicKeyOf(routerKey);
const nodeKey = generateSecretKey();
const node = publicKeyOf(nodeKey);

beforeEach(async () => {
  db = await openDb({});
  ledger = await Ledger.open(db);
  const internal = await InternalLightning.open(db, randomBytes(32).toString('hex'));
  await migrate(db, 'settlement-books', BOOKS_MIGRATIONS);
  clockS = Math.floor(Date.now() / 1000);
  books = new Books(db, ledger, internal, { routerFeeBps: FEE_BPS, faucetEnabled: true, nowS: () => clockS });
  await books.init();
});

afterEach(async () => {
  const report = await verifyLedger(db);
  assert.equal(report.ok, true, JSON.stringify(report.problems));
  await db.close();
});

async function fundedPayer(payer: string, amountMsat: number): Promise<void> {
  await books.faucetPay((await books.openTopup(payer, amountMsat)).bolt11);
}

const metering = (opId: string, signer = nodeKey, audience = router) =>
  signedMetering({ opId, router: audience, nodeKey: signer, tokensIn: 100, tokensOut: 200, price: PRICE })
    .metering;

async function balances(payer: string, leaseId: string) {
  const [tab, lease, earnings, fees] = await Promise.all(
    [ACCOUNTS.tab(payer), ACCOUNTS.lease(leaseId), ACCOUNTS.earnings(node), ACCOUNTS.routerFees].map(
      async (id) => (await ledger.lookupAccounts([id]))[0],
    ),
  );
  const net = (a: typeof tab) => (a ? a.creditsPosted - a.debitsPosted - a.debitsPending : 0);
  return { tab: net(tab), lease: net(lease), earnings: net(earnings), fees: net(fees) };
}

const chargesOf = async (opIds: string[]) =>
  (
    await db.query<{ op_id: string; amount_msat: number; account: string }>(
      'SELECT op_id, amount_msat, account FROM charges WHERE op_id = ANY($1) ORDER BY op_id',
      [opIds],
    )
  ).rows;

test('captures come out of the lease at exactly the signed cost; closing gives the rest back', async () => {
  await fundedPayer('p1', 100_000);
  const opened = await books.openLease('lease-p1-aaaa', 'p1', 40_000, 600, router);
  assert.equal(opened.balanceMsat, 60_000, 'the lease left the tab');
  const ops = ['rq-p1-0001', 'rq-p1-0002', 'rq-p1-0003'];
  const charged = await Promise.all(
    ops.map((op) => books.capture(op, node, metering(op), router, 'lease-p1-aaaa')),
  );
  assert.deepEqual(
    charged.map((c) => c.chargedMsat),
    [COST_MSAT, COST_MSAT, COST_MSAT],
  );
  const { nodeMsat, routerMsat } = splitCharge(COST_MSAT, FEE_BPS);
  let b = await balances('p1', 'lease-p1-aaaa');
  assert.deepEqual(b, {
    tab: 60_000,
    lease: 40_000 - 3 * COST_MSAT,
    earnings: 3 * nodeMsat,
    fees: 3 * routerMsat,
  });
  assert.equal(
    (await books.tab('p1')).reserved_msat,
    40_000 - 3 * COST_MSAT,
    'the open lease shows as reserved',
  );
  const rows = await chargesOf(ops);
  assert.deepEqual(
    rows.map((r) => [r.op_id, Number(r.amount_msat), r.account]),
    ops.map((op) => [op, COST_MSAT, ACCOUNTS.tab('p1')]),
  );

  // A retried capture changes nothing.
  assert.equal(
    (await books.capture(ops[0]!, node, metering(ops[0]!), router, 'lease-p1-aaaa')).chargedMsat,
    COST_MSAT,
  );
  await books.closeLease('lease-p1-aaaa', router);
  await books.closeLease('lease-p1-aaaa', router); // idempotent
  b = await balances('p1', 'lease-p1-aaaa');
  assert.deepEqual(b, {
    tab: 100_000 - 3 * COST_MSAT,
    lease: 0,
    earnings: 3 * nodeMsat,
    fees: 3 * routerMsat,
  });
  assert.equal((await books.tab('p1')).reserved_msat, 0);

  // A retry after the close still changes nothing: its transfers exist.
  await books.capture(ops[1]!, node, metering(ops[1]!), router, 'lease-p1-aaaa');
  assert.equal((await balances('p1', 'lease-p1-aaaa')).tab, 100_000 - 3 * COST_MSAT);
});

test('a lease never pays out more than it holds: the capture that does not fit is charged from the tab', async () => {
  await fundedPayer('p2', 100_000);
  await books.openLease('lease-p2-aaaa', 'p2', 12_000, 600, router); // room for two 5,000 msat charges
  const ops = ['rq-p2-0001', 'rq-p2-0002', 'rq-p2-0003'];
  for (const op of ops) await books.capture(op, node, metering(op), router, 'lease-p2-aaaa');
  const b = await balances('p2', 'lease-p2-aaaa');
  assert.equal(b.lease, 2000, 'two charges out of the lease');
  assert.equal(b.tab, 100_000 - 12_000 - COST_MSAT, 'the third from the tab');
  assert.equal(b.earnings + b.fees, 3 * COST_MSAT, 'each charged once');
  assert.equal((await ledger.lookupTransfers(['chg:rq-p2-0003'])).length, 1);
  assert.equal((await ledger.lookupTransfers(['chg:rq-p2-0001'])).length, 0);
  // Retrying the tab-paid one finds it paid: no second charge.
  await books.capture(ops[2]!, node, metering(ops[2]!), router, 'lease-p2-aaaa');
  assert.equal((await balances('p2', 'lease-p2-aaaa')).tab, 100_000 - 12_000 - COST_MSAT);
  assert.equal((await chargesOf(ops)).length, 3);
});

test('a capture after the lease closed is charged from the tab, once', async () => {
  await fundedPayer('p3', 50_000);
  await books.openLease('lease-p3-aaaa', 'p3', 20_000, 600, router);
  await books.closeLease('lease-p3-aaaa', router);
  await books.capture('rq-p3-0001', node, metering('rq-p3-0001'), router, 'lease-p3-aaaa');
  await books.capture('rq-p3-0001', node, metering('rq-p3-0001'), router, 'lease-p3-aaaa');
  const b = await balances('p3', 'lease-p3-aaaa');
  assert.deepEqual([b.tab, b.lease, b.earnings + b.fees], [50_000 - COST_MSAT, 0, COST_MSAT]);
});

test('the sweep closes expired leases; open ones stay', async () => {
  await fundedPayer('p4', 50_000);
  await books.openLease('lease-p4-old1', 'p4', 10_000, 30, router);
  await books.openLease('lease-p4-new1', 'p4', 10_000, 600, router);
  await books.capture('rq-p4-0001', node, metering('rq-p4-0001'), router, 'lease-p4-old1');
  clockS += 31;
  assert.equal(await books.closeExpiredLeases(), 1);
  assert.equal(await books.closeExpiredLeases(), 0);
  const old = await balances('p4', 'lease-p4-old1');
  assert.equal(old.lease, 0);
  assert.equal(old.tab, 50_000 - 10_000 - COST_MSAT, 'the expired lease gave back all but its charge');
  assert.equal((await balances('p4', 'lease-p4-new1')).lease, 10_000);
});

test('refused: another router, an unknown lease, a record not for this request, a lease over the tab', async () => {
  await fundedPayer('p5', 30_000);
  await books.openLease('lease-p5-aaaa', 'p5', 10_000, 600, router);
  const other = publicKeyOf(generateSecretKey());
  const code = async (p: Promise<unknown>) => {
    try {
      await p;
    } catch (error) {
      return error instanceof FedAiError ? error.code : String(error);
    }
    return 'OK';
  };
  assert.equal(
    await code(
      books.capture('rq-p5-0001', node, metering('rq-p5-0001', nodeKey, other), other, 'lease-p5-aaaa'),
    ),
    'NOT_FOUND',
  );
  assert.equal(
    await code(books.capture('rq-p5-0001', node, metering('rq-p5-0001'), router, 'lease-p5-none')),
    'NOT_FOUND',
  );
  assert.equal(
    await code(books.capture('rq-p5-0001', node, metering('rq-p5-0002'), router, 'lease-p5-aaaa')),
    'BAD_METERING',
  );
  assert.equal(
    await code(
      books.capture('rq-p5-0001', node, metering('rq-p5-0001', generateSecretKey()), router, 'lease-p5-aaaa'),
    ),
    'BAD_METERING',
  );
  assert.equal(await code(books.closeLease('lease-p5-aaaa', other)), 'NOT_FOUND');
  assert.equal(
    await code(books.openLease('lease-p5-bbbb', 'p5', 25_000, 600, router)),
    'INSUFFICIENT_BALANCE',
  );
  assert.equal(
    await code(books.openLease('lease-p5-cccc', 'nobody', 1000, 600, router)),
    'INSUFFICIENT_BALANCE',
  );
  const b = await balances('p5', 'lease-p5-aaaa');
  assert.deepEqual([b.tab, b.lease, b.earnings], [20_000, 10_000, 0], 'nothing moved');
  const rows = await db.query<{ lease_id: string }>('SELECT lease_id FROM leases ORDER BY lease_id');
  assert.deepEqual(
    rows.rows.map((r) => r.lease_id),
    ['lease-p5-aaaa'],
    'a refused opening leaves no lease',
  );
});

test('concurrent captures on one lease never overdraw it (one transaction, many ops)', async () => {
  await fundedPayer('p6', 200_000);
  await books.openLease('lease-p6-aaaa', 'p6', 33_000, 600, router); // room for six
  const ops = Array.from({ length: 20 }, (_, i) => `rq-p6-${String(i).padStart(4, '0')}`);
  await Promise.all(ops.map((op) => books.capture(op, node, metering(op), router, 'lease-p6-aaaa')));
  const b = await balances('p6', 'lease-p6-aaaa');
  assert.equal(b.lease, 3000);
  assert.equal(b.tab, 200_000 - 33_000 - 14 * COST_MSAT);
  assert.equal(b.earnings + b.fees, 20 * COST_MSAT);
  assert.equal((await chargesOf(ops)).length, 20);
});

test('a request captured from its own reservation and then again from a lease is charged once', async () => {
  await fundedPayer('p7', 50_000);
  await books.openLease('lease-p7-aaaa', 'p7', 20_000, 600, router);
  await books.reserve('rq-p7-0001', 'p7', 8000, 600);
  await books.capture('rq-p7-0001', node, metering('rq-p7-0001'), router);
  // Its charge row answers the second capture: the same charge, already made (nothing moves).
  assert.deepEqual(await books.capture('rq-p7-0001', node, metering('rq-p7-0001'), router, 'lease-p7-aaaa'), {
    chargedMsat: COST_MSAT,
  });
  const b = await balances('p7', 'lease-p7-aaaa');
  assert.deepEqual([b.tab, b.lease, b.earnings + b.fees], [50_000 - 20_000 - COST_MSAT, 20_000, COST_MSAT]);
});

test('captures from one lease in a batch move one transfer per receiving account; each keeps its charge row', async () => {
  await fundedPayer('p9', 200_000);
  await books.openLease('lease-p9-aaaa', 'p9', 100_000, 600, router);
  const ops = Array.from({ length: 12 }, (_, i) => `rq-p9-${String(i).padStart(4, '0')}`);
  const records = new Map(ops.map((op) => [op, metering(op)]));
  // As the server passes them: the record's text, every quote of its content escaped.
  await Promise.all(
    ops.map((op) => books.capture(op, node, JSON.stringify(records.get(op)), router, 'lease-p9-aaaa')),
  );
  const stored = await db.query<{ op_id: string; metering: unknown }>(
    'SELECT op_id, metering FROM charges WHERE op_id = ANY($1)',
    [ops],
  );
  assert.equal(stored.rows.length, ops.length);
  for (const row of stored.rows)
    assert.deepEqual(
      row.metering,
      records.get(row.op_id),
      `${row.op_id}: the charge row keeps its own record`,
    );
  const moved = (
    await db.query<{ id: string; credit_account_id: string; amount_msat: number; user_data: string }>(
      'SELECT id, credit_account_id, amount_msat, user_data FROM ledger_transfers WHERE debit_account_id = $1',
      [ACCOUNTS.lease('lease-p9-aaaa')],
    )
  ).rows;
  const batches = new Set(moved.map((t) => t.user_data));
  assert.ok(batches.size < ops.length, `${batches.size} batches for ${ops.length} captures`);
  assert.equal(moved.length, 2 * batches.size, 'one to the earnings, one to the fees, per batch');
  assert.ok(moved.every((t) => t.id.startsWith('lc:')));
  const { nodeMsat, routerMsat } = splitCharge(COST_MSAT, FEE_BPS);
  const to = (account: string) =>
    moved.filter((t) => t.credit_account_id === account).reduce((sum, t) => sum + Number(t.amount_msat), 0);
  assert.equal(to(ACCOUNTS.earnings(node)), 12 * nodeMsat);
  assert.equal(to(ACCOUNTS.routerFees), 12 * routerMsat);
  assert.equal((await ledger.lookupTransfers(ops.map((op) => `pay:${op}`))).length, 0);
  const rows = await chargesOf(ops);
  assert.deepEqual(
    rows.map((r) => [r.op_id, Number(r.amount_msat)]),
    ops.map((op) => [op, COST_MSAT]),
  );
  assert.equal((await balances('p9', 'lease-p9-aaaa')).lease, 100_000 - 12 * COST_MSAT);
});

test('the same capture from a lease, at once and later, is charged once; another charge for its op id is refused', async () => {
  await fundedPayer('p10', 100_000);
  await books.openLease('lease-p10-aaaa', 'p10', 50_000, 600, router);
  const op = 'rq-p10-0001';
  const record = metering(op);
  const at = await Promise.all(
    Array.from({ length: 6 }, () => books.capture(op, node, record, router, 'lease-p10-aaaa')),
  );
  assert.deepEqual(
    at.map((c) => c.chargedMsat),
    Array(6).fill(COST_MSAT),
  );
  assert.equal((await books.capture(op, node, record, router, 'lease-p10-aaaa')).chargedMsat, COST_MSAT);
  // A record for the same request with more tokens (a different cost): refused, nothing moves.
  const other = signedMetering({
    opId: op,
    router,
    nodeKey,
    tokensIn: 100,
    tokensOut: 300,
    price: PRICE,
  }).metering;
  await assert.rejects(
    books.capture(op, node, other, router, 'lease-p10-aaaa'),
    (error: unknown) => error instanceof FedAiError && error.code === 'LEDGER_REJECTED',
  );
  const b = await balances('p10', 'lease-p10-aaaa');
  assert.deepEqual([b.tab, b.lease, b.earnings + b.fees], [50_000, 50_000 - COST_MSAT, COST_MSAT]);
  assert.equal((await chargesOf([op])).length, 1);
});

test('a request charged from a lease and then captured from its own reservation is charged once', async () => {
  await fundedPayer('p11', 50_000);
  await books.openLease('lease-p11-aaaa', 'p11', 20_000, 600, router);
  await books.reserve('rq-p11-0001', 'p11', 8000, 600);
  await books.capture('rq-p11-0001', node, metering('rq-p11-0001'), router, 'lease-p11-aaaa');
  // The charge row answers the reservation's capture: already charged, the hold is not posted.
  assert.deepEqual(await books.capture('rq-p11-0001', node, metering('rq-p11-0001'), router), {
    chargedMsat: COST_MSAT,
  });
  let b = await balances('p11', 'lease-p11-aaaa');
  assert.deepEqual(
    [b.tab, b.lease, b.earnings + b.fees],
    [50_000 - 20_000 - 8000, 20_000 - COST_MSAT, COST_MSAT],
  );
  await books.release('rq-p11-0001');
  b = await balances('p11', 'lease-p11-aaaa');
  assert.equal(b.tab, 50_000 - 20_000, 'the hold came back whole');
  assert.equal((await chargesOf(['rq-p11-0001'])).length, 1);
});

test('a zero-cost record from a lease charges nothing and writes no charge', async () => {
  await fundedPayer('p8', 50_000);
  await books.openLease('lease-p8-aaaa', 'p8', 20_000, 600, router);
  const free = signedMetering({
    opId: 'rq-p8-0001',
    router,
    nodeKey,
    tokensIn: 0,
    tokensOut: 0,
    price: PRICE,
  });
  const { chargedMsat } = await books.capture('rq-p8-0001', node, free.metering, router, 'lease-p8-aaaa');
  assert.equal(chargedMsat, 0);
  assert.equal((await chargesOf(['rq-p8-0001'])).length, 0);
  assert.equal((await balances('p8', 'lease-p8-aaaa')).lease, 20_000);
});

test('a record text with a raw control character is refused before anything is written', async () => {
  await fundedPayer('p12', 100_000);
  await books.openLease('lease-p12-aaaa', 'p12', 40_000, 600, router);
  const text = JSON.stringify(metering('rq-p12-0001')).replace('"kind"', '"\u0001kind"');
  await assert.rejects(
    books.capture('rq-p12-0001', node, text, router, 'lease-p12-aaaa'),
    (error: FedAiError) => error.code === 'BAD_METERING',
  );
  assert.deepEqual(await chargesOf(['rq-p12-0001']), []);
  const charged = await books.capture(
    'rq-p12-0001',
    node,
    JSON.stringify(metering('rq-p12-0001')),
    router,
    'lease-p12-aaaa',
  );
  assert.equal(charged.chargedMsat, COST_MSAT, 'the same record as text is charged');
  assert.equal((await chargesOf(['rq-p12-0001']))[0]?.amount_msat, COST_MSAT);
});
