// Edge cases of the posting rules found by mutation testing (pnpm mutation): each test pins one
// rule a surviving mutant could break without any other test noticing.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ACCOUNT_FLAGS,
  type Account,
  accountInvariantProblems,
  applyBatch,
  availableMsat,
  dueForExpiry,
  expireTransfers,
  expiryCode,
  type LedgerState,
  MAX_BATCH,
  type TransferInput,
} from '../src/rules';

const acct = (id: string, flags = 0, over: Partial<Account> = {}): Account => ({
  id,
  flags,
  debitsPending: 0,
  debitsPosted: 0,
  creditsPending: 0,
  creditsPosted: 0,
  ...over,
});
const state = (...accounts: Account[]): LedgerState => ({
  accounts: new Map(accounts.map((a) => [a.id, a])),
  transfers: new Map(),
});

/** Applies batches in order, carrying state forward as the store does; returns codes per batch. */
function run(s: LedgerState, batches: TransferInput[][], nowS = 100): string[][] {
  return batches.map((batch) => {
    const out = applyBatch(s, batch, nowS);
    for (const [id, a] of out.changedAccounts) s.accounts.set(id, a);
    for (const t of out.created) s.transfers.set(t.id, t);
    for (const [id, r] of out.resolved) s.transfers.set(id, { ...s.transfers.get(id)!, resolution: r });
    return out.results.map((r) => r.code);
  });
}

const t = (id: string, over: Partial<TransferInput> = {}): TransferInput => ({
  id,
  kind: 'single',
  debitAccountId: 'a',
  creditAccountId: 'b',
  amountMsat: 10,
  ...over,
});

test('a retry with any field changed is EXISTS_WITH_DIFFERENT_FIELDS; the same fields are EXISTS', () => {
  const base = t('x', { userData: 'u' });
  const variants: Partial<TransferInput>[] = [
    { kind: 'pending', timeoutS: 60 },
    { debitAccountId: 'c' },
    { creditAccountId: 'c' },
    { amountMsat: 11 },
    { pendingId: 'p' },
    { timeoutS: 5 },
    { userData: 'v' },
  ];
  for (const v of variants) {
    const s = state(acct('a'), acct('b'), acct('c'));
    assert.deepEqual(
      run(s, [[base], [{ ...base, ...v }]]),
      [['OK'], ['EXISTS_WITH_DIFFERENT_FIELDS']],
      JSON.stringify(v),
    );
  }
  const s = state(acct('a'), acct('b'));
  assert.deepEqual(run(s, [[base], [{ ...base }]]), [['OK'], ['EXISTS']]);
});

test('credits may not exceed debits on a flagged account: exactly equal is allowed, one more is refused', () => {
  const s = state(
    acct('a'),
    acct('ln', ACCOUNT_FLAGS.creditsMustNotExceedDebits, { debitsPosted: 50, creditsPosted: 20 }),
  );
  assert.deepEqual(run(s, [[t('1', { creditAccountId: 'ln', amountMsat: 31 })]]), [['EXCEEDS_DEBITS']]);
  assert.deepEqual(run(s, [[t('2', { creditAccountId: 'ln', amountMsat: 30 })]]), [['OK']]);
  assert.equal(s.accounts.get('ln')!.creditsPosted, 50);
});

test('a pending transfer needs a positive timeout and expires at now + timeout; others never expire', () => {
  const s = state(acct('a'), acct('b'));
  assert.deepEqual(run(s, [[t('p0', { kind: 'pending', timeoutS: 0 })]]), [['TIMEOUT_REQUIRED']]);
  assert.deepEqual(run(s, [[t('p1', { kind: 'pending', timeoutS: 1 })], [t('s1')]], 100), [['OK'], ['OK']]);
  assert.equal(s.transfers.get('p1')!.expiresAtS, 101);
  assert.equal(s.transfers.get('s1')!.expiresAtS, null);
});

test('balances may reach exactly the largest safe integer, not beyond', () => {
  const max = Number.MAX_SAFE_INTEGER;
  const s = state(acct('a', 0, { debitsPosted: max - 10 }), acct('b', 0, { creditsPosted: max - 10 }));
  assert.deepEqual(run(s, [[t('1', { amountMsat: 11 })], [t('2', { amountMsat: 10 })]]), [
    ['OVERFLOWS_DEBITS'],
    ['OK'],
  ]);
  const c = state(acct('a'), acct('b', 0, { creditsPosted: max - 5 }));
  assert.deepEqual(run(c, [[t('1', { amountMsat: 6 })], [t('2', { amountMsat: 5 })]]), [
    ['OVERFLOWS_CREDITS'],
    ['OK'],
  ]);
});

test('post and void after a void or an expiry are refused with their own codes; the full amount may be posted', () => {
  const s = state(acct('a', 0, { creditsPosted: 1000 }), acct('b'));
  const pending = (id: string) => t(id, { kind: 'pending', timeoutS: 10, amountMsat: 40 });
  const post = (id: string, of: string, amount = 40) =>
    t(id, { kind: 'post', pendingId: of, amountMsat: amount });
  const voidOf = (id: string, of: string) => t(id, { kind: 'void', pendingId: of, amountMsat: 0 });
  assert.deepEqual(run(s, [[pending('p1')], [voidOf('v1', 'p1')], [post('x1', 'p1')]], 100), [
    ['OK'],
    ['OK'],
    ['PENDING_TRANSFER_ALREADY_VOIDED'],
  ]);
  assert.deepEqual(
    run(s, [[pending('p2')], [post('x2', 'p2')]], 200),
    [['OK'], ['OK']],
    'the full amount posts',
  );
  assert.equal(s.accounts.get('b')!.creditsPosted, 40, 'the post credits the credit account');
  assert.equal(s.accounts.get('a')!.debitsPosted, 40);
  // Expired (by the sweeper, or found expired on the spot) then refused again with the same code.
  assert.deepEqual(run(s, [[pending('p3')]], 300), [['OK']]);
  assert.deepEqual(run(s, [[post('x3', 'p3')]], 311), [['PENDING_TRANSFER_EXPIRED']]);
  assert.equal(s.transfers.get('p3')!.resolution, 'expired');
  assert.deepEqual(run(s, [[voidOf('v3', 'p3')]], 312), [['PENDING_TRANSFER_EXPIRED']]);
  assert.equal(s.accounts.get('a')!.debitsPending, 0, 'the expired hold is released');
});

test('a post naming another credit account than its pending is refused', () => {
  const s = state(acct('a', 0, { creditsPosted: 100 }), acct('b'), acct('c'));
  assert.deepEqual(
    run(s, [
      [t('p', { kind: 'pending', timeoutS: 60 })],
      [t('x', { kind: 'post', pendingId: 'p', creditAccountId: 'c' })],
    ]),
    [['OK'], ['PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS']],
  );
});

test('a batch larger than MAX_BATCH is refused whole; MAX_BATCH itself is accepted', () => {
  const s = state(acct('a'), acct('b'));
  const batch = (n: number, prefix: string) =>
    Array.from({ length: n }, (_, i) => t(`${prefix}${i}`, { amountMsat: 1 }));
  assert.throws(() => applyBatch(s, batch(MAX_BATCH + 1, 'o'), 100), /exceeds 8190/);
  const out = applyBatch(s, batch(MAX_BATCH, 'k'), 100);
  assert.equal(out.results.length, MAX_BATCH);
  assert.equal(out.created.length, MAX_BATCH);
  assert.ok(out.results.every((r) => r.code === 'OK'));
});

test('a retry of a whole linked chain answers EXISTS for each and moves nothing more', () => {
  const s = state(acct('a', 0, { creditsPosted: 100 }), acct('b'), acct('c'));
  const chain = [t('l1', { linked: true }), t('l2', { creditAccountId: 'c' })];
  assert.deepEqual(run(s, [chain, chain]), [
    ['OK', 'OK'],
    ['EXISTS', 'EXISTS'],
  ]);
  assert.equal(s.accounts.get('a')!.debitsPosted, 20);
});

test('only the kind changed is still a different transfer; a negative timeout is no timeout', () => {
  const s = state(acct('a'), acct('b'));
  assert.deepEqual(run(s, [[t('k')], [t('k', { kind: 'pending' })]]), [
    ['OK'],
    ['EXISTS_WITH_DIFFERENT_FIELDS'],
  ]);
  assert.deepEqual(run(s, [[t('n', { kind: 'pending', timeoutS: -5 })]]), [['TIMEOUT_REQUIRED']]);
});

test('a post is stored with its own fields; expiry is due exactly at the deadline and creates nothing', () => {
  const s = state(acct('a', 0, { creditsPosted: 100 }), acct('b'));
  run(
    s,
    [[t('p', { kind: 'pending', timeoutS: 10 })], [t('x', { kind: 'post', pendingId: 'p', amountMsat: 7 })]],
    100,
  );
  const post = s.transfers.get('x')!;
  assert.equal(post.kind, 'post');
  assert.equal(post.pendingId, 'p');
  assert.equal(post.amountMsat, 7);
  assert.equal(post.createdAtS, 100);
  run(s, [[t('q', { kind: 'pending', timeoutS: 10 })]], 100);
  const q = s.transfers.get('q')!;
  assert.equal(expiryCode(q, 109), 'NOT_DUE');
  assert.equal(expiryCode(q, 110), 'EXPIRED');
  assert.equal(expiryCode(s.transfers.get('x')!, 10_000), 'NOT_PENDING');
  assert.equal(expiryCode({ ...q, expiresAtS: null }, 10_000), 'NO_TIMEOUT', 'a row from before timeouts');
  assert.deepEqual(
    dueForExpiry(s.transfers.values(), 110).map((d) => d.id),
    ['q'],
  );
  const out = expireTransfers(s, ['q'], 110);
  assert.deepEqual(out.created, []);
  assert.equal(out.resolved.get('q'), 'expired');
  assert.throws(
    () =>
      expireTransfers(
        s,
        Array.from({ length: MAX_BATCH + 1 }, (_, i) => `z${i}`),
        110,
      ),
    /exceeds 8190/,
  );
});

test('available balance and the credits flag invariant', () => {
  assert.equal(availableMsat(acct('a', 0, { creditsPosted: 100, debitsPosted: 30, debitsPending: 20 })), 50);
  const ln = ACCOUNT_FLAGS.creditsMustNotExceedDebits;
  assert.deepEqual(accountInvariantProblems(acct('l', ln, { debitsPosted: 10, creditsPosted: 10 })), []);
  const over = accountInvariantProblems(
    acct('l', ln, { debitsPosted: 10, creditsPosted: 10, creditsPending: 1 }),
  );
  assert.deepEqual(
    over.map((p) => p.code),
    ['FLAG_VIOLATED'],
  );
  assert.match(over[0]!.detail, /l: credits exceed debits/);
});
