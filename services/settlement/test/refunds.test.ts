// Refunds as a pending ledger transfer around payInvoice: success, failure (voided), duplicates
// (paid once), and crashes between the steps followed by recovery from the backend's answer.
// Books over PGlite with the internal Lightning backend behind a scriptable double.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, beforeEach, test } from 'node:test';
import { ConfigError, type Db, migrate, openDb, parseConfig } from '@fed-ai/kit';
import { availableMsat, Ledger, verifyLedger } from '@fed-ai/ledger';
import { InternalLightning, sha256Hex } from '@fed-ai/lightning';
import { FedAiError } from '@fed-ai/protocol';
import { ACCOUNTS, BOOKS_MIGRATIONS, Books, REFUND_IDS } from '../src/books';
import { settlementConfigSchema } from '../src/config';
import { LightningBackendDouble } from './lightning-backend-double';

let db: Db;
let ledger: Ledger;
let internal: InternalLightning;
let double: LightningBackendDouble;
let books: Books;
let run = 0;

const options = { routerFeeBps: 500, faucetEnabled: true };

before(async () => {
  db = await openDb({});
  ledger = await Ledger.open(db);
  internal = await InternalLightning.open(db, randomBytes(32).toString('hex'));
  await migrate(db, 'settlement-books', BOOKS_MIGRATIONS);
  double = new LightningBackendDouble(internal);
  books = new Books(db, ledger, double, options);
  await books.init();
});

after(async () => {
  await db.close();
});

beforeEach(() => {
  double.mode = 'ok';
  run += 1;
});

/** A fresh payer funded from the faucet, and a payee whose top-up invoice is the refund target. */
async function parties(fundMsat: number, invoiceMsat: number) {
  const alice = `alice-${run}`;
  const bob = `bob-${run}`;
  const funding = await books.openTopup(alice, fundMsat);
  await books.faucetPay(funding.bolt11);
  const invoice = await books.openTopup(bob, invoiceMsat);
  return { alice, bob, invoice };
}

async function balance(payer: string): Promise<{ available: number; held: number }> {
  const [tab] = await ledger.lookupAccounts([ACCOUNTS.tab(payer)]);
  return { available: tab ? availableMsat(tab) : 0, held: tab?.debitsPending ?? 0 };
}

async function assertBooksBalance() {
  assert.deepEqual((await verifyLedger(db)).problems, []);
}

const rejectsWith = (code: string) => (error: unknown) => {
  assert.ok(error instanceof FedAiError, String(error));
  assert.equal(error.code, code, error.message);
  return true;
};

test('success: the hold is posted to the payee, the preimage stored, the payee credited once', async () => {
  const { alice, bob, invoice } = await parties(5000, 3000);
  const refund = await books.refund(alice, invoice.bolt11);
  assert.equal(refund.state, 'succeeded');
  assert.equal(refund.amountMsat, 3000);
  assert.equal(refund.balanceMsat, 2000);
  assert.deepEqual(await balance(alice), { available: 2000, held: 0 });
  assert.deepEqual(await balance(bob), { available: 3000, held: 0 });
  const payment = await books.paymentRow(invoice.paymentHash);
  assert.equal(payment?.state, 'succeeded');
  assert.equal(sha256Hex(payment!.preimage!), invoice.paymentHash, 'the stored preimage is the proof');
  const [hold] = await ledger.lookupTransfers([REFUND_IDS.hold(invoice.paymentHash)]);
  const [post] = await ledger.lookupTransfers([REFUND_IDS.postTopup(invoice.paymentHash)]);
  assert.equal(hold?.resolution, 'posted');
  assert.equal(post?.kind, 'post');
  // The sweeper's top-up crediting finds nothing more to credit.
  assert.equal(await books.creditSettledTopups(), 0);
  assert.deepEqual(await balance(bob), { available: 3000, held: 0 });
  await assertBooksBalance();
});

test('failure: a definite payment failure voids the hold and the balance is back', async () => {
  const { alice, bob, invoice } = await parties(5000, 3000);
  double.mode = 'fail';
  await assert.rejects(books.refund(alice, invoice.bolt11), (error: unknown) => {
    assert.ok(error instanceof FedAiError);
    assert.equal(error.details?.lightning_code, 'NO_ROUTE');
    return true;
  });
  assert.deepEqual(await balance(alice), { available: 5000, held: 0 });
  assert.deepEqual(await balance(bob), { available: 0, held: 0 });
  const payment = await books.paymentRow(invoice.paymentHash);
  assert.equal(payment?.state, 'failed');
  assert.equal(payment?.failure_code, 'NO_ROUTE');
  const [hold] = await ledger.lookupTransfers([REFUND_IDS.hold(invoice.paymentHash)]);
  assert.equal(hold?.resolution, 'voided');
  // A failed payment is final for that invoice; the invoice itself is still open and payable.
  double.mode = 'ok';
  await assert.rejects(books.refund(alice, invoice.bolt11), rejectsWith('SETTLEMENT_UNAVAILABLE'));
  assert.equal(double.payCalls > 0, true);
  await books.faucetPay(invoice.bolt11);
  assert.deepEqual(await balance(bob), { available: 3000, held: 0 });
  assert.deepEqual(await balance(alice), { available: 5000, held: 0 });
  await assertBooksBalance();
});

test('duplicates: the same invoice is paid once, sequentially and concurrently', async () => {
  const { alice, bob, invoice } = await parties(10_000, 2000);
  await books.refund(alice, invoice.bolt11);
  await assert.rejects(books.refund(alice, invoice.bolt11), rejectsWith('IDEMPOTENCY_CONFLICT'));
  // Another payer cannot pay it again either.
  const carol = `carol-${run}`;
  await books.faucetPay((await books.openTopup(carol, 5000)).bolt11);
  await assert.rejects(books.refund(carol, invoice.bolt11), rejectsWith('IDEMPOTENCY_CONFLICT'));

  const second = await books.openTopup(bob, 1000);
  const calls = double.payCalls;
  const outcomes = await Promise.allSettled(
    Array.from({ length: 6 }, () => books.refund(alice, second.bolt11)),
  );
  assert.equal(outcomes.filter((o) => o.status === 'fulfilled').length, 1);
  for (const o of outcomes)
    if (o.status === 'rejected') assert.equal((o.reason as FedAiError).code, 'IDEMPOTENCY_CONFLICT');
  assert.equal(double.payCalls - calls, 1, 'the backend was asked to pay once');
  assert.deepEqual(await balance(alice), { available: 7000, held: 0 });
  assert.deepEqual(await balance(bob), { available: 3000, held: 0 });
  assert.deepEqual(await balance(carol), { available: 5000, held: 0 });
  await assertBooksBalance();
});

test('refusals before any hold: too little balance, own tab, expired, not an invoice', async () => {
  const { alice, bob, invoice } = await parties(1000, 3000);
  await assert.rejects(books.refund(alice, invoice.bolt11), rejectsWith('INSUFFICIENT_BALANCE'));
  assert.equal(await books.paymentRow(invoice.paymentHash), null, 'no payment row without a hold');
  const own = await books.openTopup(alice, 1000);
  await assert.rejects(books.refund(alice, own.bolt11), rejectsWith('INVALID_REQUEST'));
  await assert.rejects(books.refund(alice, 'lnbcrt1notaninvoice'), rejectsWith('INVALID_REQUEST'));
  assert.deepEqual(await balance(alice), { available: 1000, held: 0 });
  assert.deepEqual(await balance(bob), { available: 0, held: 0 });
  await assertBooksBalance();
});

test('crash after the hold (nothing sent): recovery on start voids it', async () => {
  const { alice, bob, invoice } = await parties(5000, 3000);
  const held = await books.holdForRefund(alice, invoice.bolt11);
  assert.equal(held.state, 'pending');
  assert.deepEqual(await balance(alice), { available: 2000, held: 3000 });
  // The process dies here. A restarted settlement (new Books, same database) recovers.
  const restarted = new Books(db, ledger, new LightningBackendDouble(internal), options);
  await restarted.init();
  assert.equal(await restarted.creditSettledTopups(), 0);
  // Within the grace a payment the backend never saw stays held: another replica may send it now.
  assert.equal(await restarted.resolvePendingPayments({ voidUnseenOlderThanS: 300 }), 0);
  assert.equal((await restarted.paymentRow(invoice.paymentHash))?.state, 'pending');
  assert.equal(await restarted.resolvePendingPayments(), 1);
  const payment = await restarted.paymentRow(invoice.paymentHash);
  assert.equal(payment?.state, 'failed');
  assert.equal(payment?.failure_code, 'NOT_SENT');
  assert.deepEqual(await balance(alice), { available: 5000, held: 0 });
  assert.deepEqual(await balance(bob), { available: 0, held: 0 });
  assert.equal(await restarted.resolvePendingPayments(), 0, 'nothing left to resolve');
  await assertBooksBalance();
});

test('crash after paying (outcome unknown): the refund stays pending, recovery posts it', async () => {
  const { alice, bob, invoice } = await parties(5000, 3000);
  double.mode = 'pay-then-crash';
  const refund = await books.refund(alice, invoice.bolt11);
  assert.equal(refund.state, 'pending', 'the backend could not say; nothing is decided yet');
  assert.deepEqual(await balance(alice), { available: 2000, held: 3000 });
  // The invoice is paid at the backend, but its top-up is the refund's to credit, not the sweeper's.
  assert.equal(await books.creditSettledTopups(), 0);
  assert.deepEqual(await balance(bob), { available: 0, held: 0 });
  const [bobTab] = await ledger.lookupAccounts([ACCOUNTS.tab(bob)]);
  assert.equal(bobTab!.creditsPending, 3000, 'the hold points at the payee, not yet posted');
  // While the backend is down, recovery leaves the payment alone.
  assert.equal(await books.resolvePendingPayments(), 0);
  assert.equal((await books.paymentRow(invoice.paymentHash))?.state, 'pending');

  double.mode = 'ok';
  const restarted = new Books(db, ledger, double, options);
  assert.equal(await restarted.resolvePendingPayments(), 1);
  const payment = await restarted.paymentRow(invoice.paymentHash);
  assert.equal(payment?.state, 'succeeded');
  assert.equal(sha256Hex(payment!.preimage!), invoice.paymentHash);
  assert.deepEqual(await balance(alice), { available: 2000, held: 0 });
  assert.deepEqual(await balance(bob), { available: 3000, held: 0 });
  assert.equal(await restarted.creditSettledTopups(), 0, 'credited once');
  await assertBooksBalance();
});

test('a refund to an invoice a crash left pending cannot start a second payment', async () => {
  const { alice, invoice } = await parties(5000, 3000);
  double.mode = 'crash-before-pay';
  assert.equal((await books.refund(alice, invoice.bolt11)).state, 'pending');
  await assert.rejects(books.refund(alice, invoice.bolt11), rejectsWith('IDEMPOTENCY_CONFLICT'));
  await assert.rejects(books.faucetPay(invoice.bolt11), rejectsWith('ALREADY_PAID'));
  double.mode = 'ok';
  assert.equal(await books.resolvePendingPayments(), 1);
  assert.equal((await books.paymentRow(invoice.paymentHash))?.failure_code, 'NOT_SENT');
  assert.deepEqual(await balance(alice), { available: 5000, held: 0 });
  await assertBooksBalance();
});

test('top-ups from a version-1 database are looked up in the backend once, never credited twice', async () => {
  const old = await openDb({});
  try {
    const oldLedger = await Ledger.open(old);
    const oldLightning = await InternalLightning.open(old, randomBytes(32).toString('hex'));
    await migrate(old, 'settlement-books', BOOKS_MIGRATIONS.slice(0, 1));
    const oldBooks = new Books(old, oldLedger, oldLightning, options);
    await oldBooks.init();
    await oldLedger.createAccounts([{ id: ACCOUNTS.tab('dave'), flags: 1 }]);
    // What version 1 left: a top-up row without invoice state, its invoice paid and credited.
    const invoice = await oldLightning.createInvoice({
      amountMsat: 4000,
      description: 'v1',
      expirySeconds: 600,
    });
    await old.query(
      'INSERT INTO topups (payment_hash, account, amount_msat, paid_by) VALUES ($1, $2, $3, $4)',
      [invoice.paymentHash, ACCOUNTS.tab('dave'), 4000, ACCOUNTS.faucet],
    );
    await oldLightning.payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
    await oldLedger.createTransfers([
      {
        id: `topup:${invoice.paymentHash}`,
        kind: 'single',
        debitAccountId: ACCOUNTS.faucet,
        creditAccountId: ACCOUNTS.tab('dave'),
        amountMsat: 4000,
        userData: invoice.paymentHash,
      },
    ]);
    assert.deepEqual(await migrate(old, 'settlement-books', BOOKS_MIGRATIONS), [2, 3, 4, 5, 6]);
    assert.equal(await oldBooks.creditSettledTopups(), 0);
    const row = await old.query<{ settled_at_s: number | null; expires_at_s: number | null }>(
      'SELECT settled_at_s, expires_at_s FROM topups WHERE payment_hash = $1',
      [invoice.paymentHash],
    );
    assert.ok(row.rows[0]!.settled_at_s !== null, 'settlement recorded the settlement from the backend');
    const [tab] = await oldLedger.lookupAccounts([ACCOUNTS.tab('dave')]);
    assert.equal(tab!.creditsPosted, 4000);
    assert.deepEqual((await verifyLedger(old)).problems, []);
  } finally {
    await old.close();
  }
});

test('LIGHTNING_BACKEND: only internal is accepted, with one line naming the variable', () => {
  assert.equal(parseConfig(settlementConfigSchema, {}).LIGHTNING_BACKEND, 'internal');
  assert.equal(
    parseConfig(settlementConfigSchema, { LIGHTNING_BACKEND: 'internal' }).LIGHTNING_BACKEND,
    'internal',
  );
  for (const value of ['lnd', 'cln', 'LNbits', 'nwc', 'settlement', 'internal ']) {
    assert.throws(
      () => parseConfig(settlementConfigSchema, { LIGHTNING_BACKEND: value }),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.variable, 'LIGHTNING_BACKEND');
        assert.match(error.message, /^config error: LIGHTNING_BACKEND is invalid/);
        assert.match(error.message, /only "internal" is available/);
        assert.doesNotMatch(error.message, /\n/);
        return true;
      },
    );
  }
});
