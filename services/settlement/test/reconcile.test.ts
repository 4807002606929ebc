// Reconciliation (issue 14): Books over PGlite with the real LND adapter against the LND double.
// An invoice settled behind the ledger's back (the watcher not running, or past its window) is
// found and credited once; a payment stuck in flight is reported, then resolved by lookup; the
// balance difference is reported (and the internal backend says it has none). The operator route
// refuses non-operators and bad bodies with reason codes and answers the report.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type Db, migrate, openDb } from '@fed-ai/kit';
import { availableMsat, Ledger, verifyLedger } from '@fed-ai/ledger';
import { encodeInvoice, InternalLightning, LndBackend } from '@fed-ai/lightning';
import { createNip98Header, generateSecretKey, publicKeyOf } from '@fed-ai/protocol';
import { type LndDouble, startLndDouble } from '../../../packages/lightning/test/lnd-double';
import { rawRequest } from '../../router/test/raw-http';
import { ACCOUNTS, BOOKS_MIGRATIONS, Books } from '../src/books';
import { settlementConfigSchema } from '../src/config';
import { compareBalance, decidePendingPayment, decideTopup, reconcile } from '../src/reconcile';
import { type RunningSettlement, startSettlement } from '../src/settlement';

let db: Db;
let ledger: Ledger;
let lnd: LndDouble;
let backend: LndBackend;
/** The clock Books and reconciliation read; the LND double keeps real time. */
let clockS = Math.floor(Date.now() / 1000);
const nowS = () => clockS;
let books: Books;
const INITIAL_NODE_MSAT = 10_000_000;

before(async () => {
  db = await openDb({});
  ledger = await Ledger.open(db);
  await migrate(db, 'settlement-books', BOOKS_MIGRATIONS);
  lnd = await startLndDouble();
  backend = new LndBackend({
    url: lnd.url,
    macaroonHex: lnd.macaroonHex,
    // Unary calls get a loaded machine's time (1 s failed once under a full suite plus another
    // run); the hung payment still ends on the 1 s pay timeout.
    timeoutMs: 10_000,
    payTimeoutSeconds: 1,
    pollIntervalMs: 60_000,
  });
  books = new Books(db, ledger, backend, { routerFeeBps: 500, nowS, refundMaxFeeMsat: 0 });
  await books.init();
});

after(async () => {
  await backend.destroy();
  await lnd.close();
  await db.close();
});

async function tabMsat(payer: string): Promise<number> {
  const [tab] = await ledger.lookupAccounts([ACCOUNTS.tab(payer)]);
  return tab ? availableMsat(tab) : 0;
}

async function topupTransfers(hash: string): Promise<number> {
  const rows = await db.query<{ n: number }>(
    `SELECT COUNT(*)::bigint AS n FROM ledger_transfers WHERE id = $1`,
    [`topup:${hash}`],
  );
  return Number(rows.rows[0]?.n);
}

test('pure decisions: a recorded settlement is credited, an unproven one is not, the internal backend has no balance', () => {
  const row = {
    payment_hash: 'a'.repeat(64),
    account: 'tab:x',
    amount_msat: 1000,
    expires_at_s: 100,
    settled_at_s: null,
  };
  const invoice = {
    paymentHash: row.payment_hash,
    bolt11: 'lnbcrt1',
    amountMsat: 1000,
    description: '',
    createdAtS: 0,
    expiresAtS: 100,
  };
  assert.equal(decideTopup({ ...row, settled_at_s: 5 }, 'not_asked', 50), 'credit');
  assert.equal(
    decideTopup(row, { ...invoice, state: 'settled', preimage: 'b'.repeat(64) }, 500),
    'record_and_credit',
  );
  assert.equal(decideTopup(row, { ...invoice, state: 'settled' }, 50), 'unproven');
  assert.equal(decideTopup(row, { ...invoice, state: 'open' }, 50), 'open');
  assert.equal(decideTopup(row, { ...invoice, state: 'open' }, 100), 'expired_unpaid');
  assert.equal(decideTopup(row, null, 50), 'unknown_at_backend');
  const payment = { created_at_s: 1000 } as Parameters<typeof decidePendingPayment>[0];
  assert.equal(decidePendingPayment(payment, 1000 + 3599, 3600), 'in_flight');
  assert.equal(decidePendingPayment(payment, 1000 + 3600, 3600), 'stuck');
  assert.equal(compareBalance('internal', 5, null).difference_msat, null);
  assert.match(compareBalance('internal', 5, null).note, /no outside balance/);
  assert.equal(compareBalance('lnd', 5000, 7000).difference_msat, 2000);
  assert.equal(compareBalance('lnd', 5000, 'unreachable').difference_msat, null);
});

test('an invoice settled behind the ledger’s back (expired, past the watcher) is credited once', async () => {
  const payer = 'behind-the-back';
  const invoice = await books.openTopup(payer, 7000, { expirySeconds: 600 });
  lnd.settle(invoice.paymentHash); // paid at the node; settlement's watcher is not running
  // Much later: the invoice expired long ago, so the watcher's poll never looks at it again.
  clockS += 3600;
  assert.equal(await books.creditSettledTopups(), 0, 'the watcher misses it');
  assert.equal(await tabMsat(payer), 0);

  const first = await reconcile(books, ledger, backend, { nowS });
  assert.deepEqual(
    first.topups.credited.map((c) => [c.payment_hash, c.amount_msat, c.expired]),
    [[invoice.paymentHash, 7000, true]],
  );
  assert.ok(
    first.mismatches.some((m) => m.kind === 'topup_uncredited' && m.payment_hash === invoice.paymentHash),
  );
  assert.equal(await tabMsat(payer), 7000);

  const second = await reconcile(books, ledger, backend, { nowS });
  assert.deepEqual(second.topups.credited, [], 'a second run credits nothing');
  assert.ok(!second.mismatches.some((m) => m.kind === 'topup_uncredited'));
  assert.equal(await tabMsat(payer), 7000, 'the tab moved exactly once');
  assert.equal(await topupTransfers(invoice.paymentHash), 1);
  assert.deepEqual((await verifyLedger(db)).problems, []);
});

test('reconciliation racing the watcher over an open settled invoice credits it once', async () => {
  const payer = 'racing';
  const invoice = await books.openTopup(payer, 4000, { expirySeconds: 7200 });
  lnd.settle(invoice.paymentHash);
  const [report, watcher] = await Promise.all([
    reconcile(books, ledger, backend, { nowS }),
    books.creditSettledTopups(),
  ]);
  assert.equal(report.topups.credited.length + watcher, 1, 'exactly one of them credited');
  assert.equal(await tabMsat(payer), 4000);
  assert.equal(await topupTransfers(invoice.paymentHash), 1);
  // An open, unpaid invoice is counted as open and left alone.
  await books.openTopup(payer, 1000, { expirySeconds: 7200 });
  const after = await reconcile(books, ledger, backend, { nowS });
  assert.equal(after.topups.open, 1);
  assert.deepEqual(after.topups.credited, []);
  assert.deepEqual((await verifyLedger(db)).problems, []);
});

test('a payment stuck in flight is reported stuck, then resolved by lookup once the node finishes it', async () => {
  const payer = 'stuck-payer';
  const funding = await books.openTopup(payer, 20_000);
  lnd.settle(funding.paymentHash);
  await books.creditSettledTopups();
  assert.equal(await tabMsat(payer), 20_000);
  const external = encodeInvoice({
    amountMsat: 5000,
    description: 'elsewhere',
    expirySeconds: 3600,
    // Made on settlement's clock (moved an hour on above), not the wall clock: made on the wall
    // clock within the second this file loaded, it was already expired (a full-suite failure).
    nowS: clockS,
    nodeSecretKeyHex: randomBytes(32).toString('hex'),
  });
  lnd.addPayee(external);
  lnd.script(external.paymentHash, { kind: 'hang' });
  const refund = await books.refund(payer, external.bolt11);
  assert.equal(refund.state, 'pending', 'the node did not finish within the pay timeout');

  clockS += 7200;
  const stuck = await reconcile(books, ledger, backend, { nowS });
  assert.deepEqual(
    stuck.payments.stuck.map((s) => s.payment_hash),
    [external.paymentHash],
  );
  assert.equal(stuck.payments.resolved, 0);
  assert.ok(stuck.mismatches.some((m) => m.kind === 'payment_stuck'));
  assert.equal((await books.paymentRow(external.paymentHash))?.state, 'pending');

  lnd.resolve(external.paymentHash, { kind: 'succeed', feeMsat: 0 });
  const resolved = await reconcile(books, ledger, backend, { nowS });
  assert.equal(resolved.payments.resolved, 1);
  assert.deepEqual(resolved.payments.stuck, []);
  assert.equal((await books.paymentRow(external.paymentHash))?.state, 'succeeded');
  assert.equal(await tabMsat(payer), 15_000, 'debited once');
  assert.equal(lnd.sends, 1, 'the node sent one payment');
  const again = await reconcile(books, ledger, backend, { nowS });
  assert.equal(again.payments.resolved, 0);
  assert.equal(await tabMsat(payer), 15_000);
  assert.deepEqual((await verifyLedger(db)).problems, []);
});

test('the Lightning account against the node balance: both numbers and the difference are reported', async () => {
  const report = await reconcile(books, ledger, backend, { nowS });
  // Money in: 7000 + 4000 + 20000 settled at the node and credited; out: the 5000 refund.
  assert.equal(report.lightning.ledger_msat, 7000 + 4000 + 20_000 - 5000);
  assert.equal(report.lightning.backend_msat, lnd.balanceMsat);
  assert.equal(report.lightning.difference_msat, INITIAL_NODE_MSAT, 'the node’s own funds');
  assert.ok(report.mismatches.some((m) => m.kind === 'balance_difference'));
  // Reported, not fixed: nothing moved.
  const again = await reconcile(books, ledger, backend, { nowS });
  assert.equal(again.lightning.ledger_msat, report.lightning.ledger_msat);

  // The internal backend: no outside balance, said so.
  const idb = await openDb({});
  try {
    const iledger = await Ledger.open(idb);
    await migrate(idb, 'settlement-books', BOOKS_MIGRATIONS);
    const internal = await InternalLightning.open(idb, randomBytes(32).toString('hex'));
    const ibooks = new Books(idb, iledger, internal, { routerFeeBps: 500 });
    await ibooks.init();
    const inside = await reconcile(ibooks, iledger, internal);
    assert.equal(inside.backend, 'internal');
    assert.equal(inside.lightning.backend_msat, null);
    assert.equal(inside.lightning.difference_msat, null);
    assert.match(inside.lightning.note, /no outside balance/);
    assert.deepEqual(inside.mismatches, []);
  } finally {
    await idb.close();
  }
});

test('POST /v1/admin/reconcile: operators only, bodies checked, the report answered, metrics counted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-reconcile-route-'));
  const operator = generateSecretKey();
  const router = generateSecretKey();
  let settlement: RunningSettlement | undefined;
  try {
    settlement = await startSettlement(
      settlementConfigSchema.parse({
        SETTLEMENT_PORT: '0',
        DATA_DIR: dir,
        SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(router),
        SETTLEMENT_OPERATOR_PUBKEYS: publicKeyOf(operator),
        RECONCILE_INTERVAL_S: '0',
      }),
    );
    const url = `${settlement.url}/v1/admin/reconcile`;
    const post = (body: string, key?: Uint8Array) =>
      rawRequest(
        settlement!.url,
        'POST',
        '/v1/admin/reconcile',
        body,
        key ? { authorization: createNip98Header(url, 'POST', body, key) } : {},
      );
    const code = (text: string) => (JSON.parse(text) as { error: { code: string } }).error.code;

    const anonymous = await post('{}');
    assert.equal(anonymous.status, 401, anonymous.text);
    assert.equal(code(anonymous.text), 'UNAUTHORIZED');
    const byRouter = await post('{}', router);
    assert.equal(byRouter.status, 403, byRouter.text);
    assert.equal(code(byRouter.text), 'FORBIDDEN');
    for (const bad of [
      '{"limit":0}',
      '{"limit":1.5}',
      '{"payment_grace_s":0}',
      '{"other":1}',
      '[1]',
      '{"limit":',
    ]) {
      const answer = await post(bad, operator);
      assert.equal(answer.status, 400, `${bad}: ${answer.text}`);
      assert.equal(code(answer.text), 'INVALID_REQUEST', bad);
    }
    const ok = await post('{"limit":10}', operator);
    assert.equal(ok.status, 200, ok.text);
    const report = JSON.parse(ok.text) as {
      backend: string;
      lightning: { note: string };
      mismatches: unknown[];
    };
    assert.equal(report.backend, 'internal');
    assert.match(report.lightning.note, /no outside balance/);
    assert.deepEqual(report.mismatches, []);
    const metrics = await fetch(`${settlement.url}/metrics`).then((r) => r.text());
    assert.match(metrics, /fedai_reconcile_runs_total\{service="settlement"\} 1/);
    assert.match(metrics, /fedai_reconcile_mismatches_total\{kind="payment_stuck",service="settlement"\} 0/);
    assert.match(metrics, /fedai_lightning_balance_difference_msat\{service="settlement"\} 0/);
    // Every scheduled job beats (kit's job-heartbeat.ts); reconcile is off here (interval 0).
    for (const job of ['settlement_sweeper', 'settlement_payouts', 'settlement_ledger_verify'])
      assert.match(metrics, new RegExp(`fedai_job_overdue\\{job_name="${job}",service="settlement"\\} 0`));
    assert.doesNotMatch(metrics, /job_name="settlement_reconcile"/);
  } finally {
    await settlement?.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
