import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  ACCOUNT_FLAGS,
  type Account,
  accountInvariantProblems,
  applyBatch,
  expireTransfers,
  type LedgerState,
  type TransferInput,
} from '../src/rules';

const acct = (id: string, flags = 0, creditsPosted = 0, debitsPosted = 0): Account => ({
  id,
  flags,
  debitsPending: 0,
  debitsPosted,
  creditsPending: 0,
  creditsPosted,
});

function state(...accounts: Account[]): LedgerState {
  return { accounts: new Map(accounts.map((a) => [a.id, a])), transfers: new Map() };
}

/** Applies batches in sequence, carrying the state forward as the store would. */
function run(s: LedgerState, batches: TransferInput[][], nowS = 100) {
  const codes: string[][] = [];
  for (const batch of batches) {
    const out = applyBatch(s, batch, nowS);
    for (const [id, a] of out.changedAccounts) s.accounts.set(id, a);
    for (const t of out.created) s.transfers.set(t.id, t);
    for (const [id, r] of out.resolved) s.transfers.set(id, { ...s.transfers.get(id)!, resolution: r });
    codes.push(out.results.map((r) => r.code));
  }
  return codes;
}

const single = (
  id: string,
  from: string,
  to: string,
  amount: number,
  extra: Partial<TransferInput> = {},
): TransferInput => ({
  id,
  kind: 'single',
  debitAccountId: from,
  creditAccountId: to,
  amountMsat: amount,
  ...extra,
});

test('table: each result code', () => {
  const tab = ACCOUNT_FLAGS.debitsMustNotExceedCredits;
  const s = state(
    acct('tab', tab, 100),
    acct('asset'),
    acct('income'),
    acct('cap', ACCOUNT_FLAGS.creditsMustNotExceedDebits),
  );
  const codes = run(s, [
    [single('a', 'tab', 'income', 60)],
    [single('a', 'tab', 'income', 60)], // retry
    [single('a', 'tab', 'income', 61)], // same id, other amount
    [single('b', 'tab', 'tab', 1)],
    [single('c', 'tab', 'income', 0)],
    [single('d', 'tab', 'nope', 1)],
    [single('e', 'tab', 'income', 41)],
    [single('f', 'asset', 'cap', 1)],
    [{ id: 'p', kind: 'pending', debitAccountId: 'tab', creditAccountId: 'income', amountMsat: 40 }],
    [
      {
        id: 'p',
        kind: 'pending',
        debitAccountId: 'tab',
        creditAccountId: 'income',
        amountMsat: 40,
        timeoutS: 10,
      },
    ],
    [single('g', 'tab', 'income', 1)], // all 100 used: 60 posted + 40 pending
    [{ id: 'x', kind: 'post', debitAccountId: 'tab', creditAccountId: 'income', amountMsat: 1 }],
    [
      {
        id: 'x',
        kind: 'post',
        debitAccountId: 'tab',
        creditAccountId: 'income',
        amountMsat: 1,
        pendingId: 'nope',
      },
    ],
    [
      {
        id: 'x',
        kind: 'post',
        debitAccountId: 'tab',
        creditAccountId: 'income',
        amountMsat: 41,
        pendingId: 'p',
      },
    ],
    [
      {
        id: 'x',
        kind: 'post',
        debitAccountId: 'asset',
        creditAccountId: 'income',
        amountMsat: 1,
        pendingId: 'p',
      },
    ],
    [
      {
        id: 'x',
        kind: 'post',
        debitAccountId: 'tab',
        creditAccountId: 'income',
        amountMsat: 25,
        pendingId: 'p',
      },
    ],
    [
      {
        id: 'y',
        kind: 'void',
        debitAccountId: 'tab',
        creditAccountId: 'income',
        amountMsat: 0,
        pendingId: 'p',
      },
    ],
    [
      {
        id: 'z',
        kind: 'post',
        debitAccountId: 'tab',
        creditAccountId: 'income',
        amountMsat: 1,
        pendingId: 'a',
      },
    ],
  ]);
  assert.deepEqual(codes.flat(), [
    'OK',
    'EXISTS',
    'EXISTS_WITH_DIFFERENT_FIELDS',
    'ACCOUNTS_MUST_BE_DIFFERENT',
    'AMOUNT_MUST_BE_POSITIVE',
    'CREDIT_ACCOUNT_NOT_FOUND',
    'EXCEEDS_CREDITS',
    'EXCEEDS_DEBITS',
    'TIMEOUT_REQUIRED',
    'OK',
    'EXCEEDS_CREDITS',
    'PENDING_ID_REQUIRED',
    'PENDING_TRANSFER_NOT_FOUND',
    'EXCEEDS_PENDING_AMOUNT',
    'PENDING_TRANSFER_HAS_DIFFERENT_ACCOUNTS',
    'OK',
    'PENDING_TRANSFER_ALREADY_POSTED',
    'PENDING_TRANSFER_NOT_PENDING',
  ]);
  // Posting 25 of a 40 pending released 15: tab has 100 - 60 - 25 = 15 left.
  const tabAccount = s.accounts.get('tab')!;
  assert.equal(tabAccount.creditsPosted - tabAccount.debitsPosted - tabAccount.debitsPending, 15);
});

test('table: one code per missing account and per bad amount', () => {
  const flagged = ACCOUNT_FLAGS.debitsMustNotExceedCredits;
  const pending = (id: string, amount: number): TransferInput => ({
    id,
    kind: 'pending',
    debitAccountId: 'tab',
    creditAccountId: 'escrow',
    amountMsat: amount,
    timeoutS: 10,
  });
  const resolve = (id: string, kind: 'post' | 'void', amount: number, pendingId = 'p'): TransferInput => ({
    id,
    kind,
    debitAccountId: 'tab',
    creditAccountId: 'escrow',
    amountMsat: amount,
    pendingId,
  });
  const cases: [string, TransferInput, string][] = [
    ['debit account missing', single('c1', 'nope', 'escrow', 1), 'DEBIT_ACCOUNT_NOT_FOUND'],
    ['credit account missing', single('c2', 'tab', 'nope', 1), 'CREDIT_ACCOUNT_NOT_FOUND'],
    ['both missing: the debit is named', single('c3', 'nope1', 'nope2', 1), 'DEBIT_ACCOUNT_NOT_FOUND'],
    ['fractional amount', single('c4', 'tab', 'escrow', 1.5), 'AMOUNT_MUST_BE_INTEGER'],
    ['NaN amount', single('c5', 'tab', 'escrow', Number.NaN), 'AMOUNT_MUST_BE_INTEGER'],
    ['unsafe amount', single('c6', 'tab', 'escrow', 2 ** 53), 'AMOUNT_MUST_BE_INTEGER'],
    ['negative amount', single('c7', 'tab', 'escrow', -1), 'AMOUNT_MUST_NOT_BE_NEGATIVE'],
    ['negative void', resolve('c8', 'void', -5), 'AMOUNT_MUST_NOT_BE_NEGATIVE'],
    ['zero single', single('c9', 'tab', 'escrow', 0), 'AMOUNT_MUST_BE_POSITIVE'],
    ['zero pending', pending('c10', 0), 'AMOUNT_MUST_BE_POSITIVE'],
    ['zero post', resolve('c11', 'post', 0), 'AMOUNT_MUST_BE_POSITIVE'],
    ['post above the pending', resolve('c12', 'post', 41), 'EXCEEDS_PENDING_AMOUNT'],
    ['void of less than the pending', resolve('c13', 'void', 39), 'PENDING_AMOUNT_MISMATCH'],
    ['void of more than the pending', resolve('c14', 'void', 41), 'PENDING_AMOUNT_MISMATCH'],
    ['debits would overflow', single('c15', 'big', 'escrow', 2), 'OVERFLOWS_DEBITS'],
    ['credits would overflow', single('c16', 'escrow', 'big', 2), 'OVERFLOWS_CREDITS'],
    ['void of exactly the pending', resolve('c17', 'void', 40), 'OK'],
  ];
  for (const [name, transfer, code] of cases) {
    const s = state(
      acct('tab', flagged, 100),
      acct('escrow'),
      acct('big', 0, Number.MAX_SAFE_INTEGER - 1, Number.MAX_SAFE_INTEGER - 1),
    );
    assert.deepEqual(run(s, [[pending('p', 40)]]).flat(), ['OK']);
    const before = JSON.stringify([...s.accounts.values()]);
    assert.deepEqual(run(s, [[transfer]]).flat(), [code], name);
    if (code !== 'OK')
      assert.equal(JSON.stringify([...s.accounts.values()]), before, `${name}: nothing moved`);
  }
});

test('expiry goes through the rules: due holds are released once, others say why', () => {
  const s = state(acct('tab', ACCOUNT_FLAGS.debitsMustNotExceedCredits, 100), acct('escrow'));
  const hold = (id: string, timeoutS: number): TransferInput => ({
    id,
    kind: 'pending',
    debitAccountId: 'tab',
    creditAccountId: 'escrow',
    amountMsat: 30,
    timeoutS,
  });
  assert.deepEqual(
    run(s, [[hold('due', 5), hold('later', 50), single('done', 'tab', 'escrow', 10)]]).flat(),
    ['OK', 'OK', 'OK'],
  );
  const out = expireTransfers(s, ['due', 'due', 'later', 'done', 'missing'], 110);
  assert.deepEqual(
    out.results.map((r) => r.code),
    ['EXPIRED', 'ALREADY_RESOLVED', 'NOT_DUE', 'NOT_PENDING', 'PENDING_TRANSFER_NOT_FOUND'],
  );
  assert.deepEqual([...out.resolved], [['due', 'expired']]);
  assert.equal(out.changedAccounts.get('tab')!.debitsPending, 30, 'only the due hold was released');
  assert.equal(out.changedAccounts.get('escrow')!.creditsPending, 30);
  assert.equal(s.accounts.get('tab')!.debitsPending, 60, 'the input state is not mutated');
  for (const [id, a] of out.changedAccounts) s.accounts.set(id, a);
  s.transfers.set('due', { ...s.transfers.get('due')!, resolution: 'expired' });
  assert.deepEqual(
    expireTransfers(s, ['due'], 200).results.map((r) => r.code),
    ['ALREADY_RESOLVED'],
  );
});

test('invariants: negative balances, unsafe balances and broken flags are named', () => {
  const flagged = ACCOUNT_FLAGS.debitsMustNotExceedCredits;
  assert.deepEqual(accountInvariantProblems(acct('fine', flagged, 10, 10)), []);
  const codes = (a: Account) => accountInvariantProblems(a).map((p) => p.code);
  assert.deepEqual(codes({ ...acct('neg'), debitsPending: -1 }), ['NEGATIVE_BALANCE']);
  assert.deepEqual(codes({ ...acct('big'), creditsPosted: 2 ** 53 }), ['BALANCE_NOT_SAFE_INTEGER']);
  assert.deepEqual(codes(acct('over', flagged, 10, 11)), ['FLAG_VIOLATED']);
  assert.deepEqual(codes(acct('cap', ACCOUNT_FLAGS.creditsMustNotExceedDebits, 11, 10)), ['FLAG_VIOLATED']);
});

test('pending: void releases, expiry refuses a late post and releases', () => {
  const s = state(acct('tab', ACCOUNT_FLAGS.debitsMustNotExceedCredits, 50), acct('escrow'));
  const pending = (id: string, amount: number): TransferInput => ({
    id,
    kind: 'pending',
    debitAccountId: 'tab',
    creditAccountId: 'escrow',
    amountMsat: amount,
    timeoutS: 10,
  });
  assert.deepEqual(run(s, [[pending('p1', 50)], [pending('p2', 1)]]).flat(), ['OK', 'EXCEEDS_CREDITS']);
  assert.deepEqual(
    run(s, [
      [
        {
          id: 'v',
          kind: 'void',
          debitAccountId: 'tab',
          creditAccountId: 'escrow',
          amountMsat: 0,
          pendingId: 'p1',
        },
      ],
    ]).flat(),
    ['OK'],
  );
  assert.deepEqual(run(s, [[pending('p3', 50)]]).flat(), ['OK']);
  const late = run(
    s,
    [
      [
        {
          id: 'late',
          kind: 'post',
          debitAccountId: 'tab',
          creditAccountId: 'escrow',
          amountMsat: 50,
          pendingId: 'p3',
        },
      ],
    ],
    111,
  );
  assert.deepEqual(late.flat(), ['PENDING_TRANSFER_EXPIRED']);
  assert.equal(s.accounts.get('tab')!.debitsPending, 0, 'expired on the spot');
  assert.equal(s.transfers.get('p3')!.resolution, 'expired');
});

test('linked chains apply all or nothing; an open chain is refused', () => {
  const s = state(acct('tab', ACCOUNT_FLAGS.debitsMustNotExceedCredits, 10), acct('node'), acct('fee'));
  const codes = run(s, [
    [single('l1', 'tab', 'node', 5, { linked: true }), single('l2', 'tab', 'fee', 6)],
    [single('l3', 'tab', 'node', 5, { linked: true }), single('l4', 'tab', 'fee', 5)],
    [single('l5', 'tab', 'node', 1, { linked: true })],
  ]);
  assert.deepEqual(codes, [
    ['LINKED_EVENT_FAILED', 'EXCEEDS_CREDITS'],
    ['OK', 'OK'],
    ['LINKED_EVENT_CHAIN_OPEN'],
  ]);
  assert.equal(s.accounts.get('node')!.creditsPosted, 5);
  assert.equal(s.accounts.get('fee')!.creditsPosted, 5);
  assert.equal(s.transfers.has('l1'), false, 'nothing of the failed chain remains');
});

test('property: any sequence keeps debits = credits, never breaks a flag, and retries change nothing', () => {
  const ids = ['tab1', 'tab2', 'asset', 'escrow', 'income'];
  const transferArb = fc.record({
    id: fc.constantFrom(...Array.from({ length: 30 }, (_, i) => `t${i}`)),
    kind: fc.constantFrom('single' as const, 'pending' as const, 'post' as const, 'void' as const),
    debitAccountId: fc.constantFrom(...ids),
    creditAccountId: fc.constantFrom(...ids),
    amountMsat: fc.integer({ min: 0, max: 500 }),
    pendingId: fc.option(fc.constantFrom(...Array.from({ length: 30 }, (_, i) => `t${i}`)), {
      nil: undefined,
    }),
    timeoutS: fc.option(fc.integer({ min: 1, max: 50 }), { nil: undefined }),
    linked: fc.boolean(),
  });
  fc.assert(
    fc.property(
      fc.array(fc.array(transferArb, { minLength: 1, maxLength: 6 }), { maxLength: 25 }),
      fc.array(fc.integer({ min: 0, max: 60 }), { minLength: 25, maxLength: 25 }),
      (batches, clock) => {
        const s = state(
          acct('tab1', ACCOUNT_FLAGS.debitsMustNotExceedCredits, 1000),
          acct('tab2', ACCOUNT_FLAGS.debitsMustNotExceedCredits, 300),
          acct('asset', 0, 0, 1300),
          acct('escrow'),
          acct('income', ACCOUNT_FLAGS.creditsMustNotExceedDebits, 0, 10_000),
          acct('reserve', 0, 10_000), // the counterpart of income's opening debits: the books start balanced
        );
        let now = 100;
        for (const [i, batch] of batches.entries()) {
          now += clock[i] ?? 0;
          const [codes] = run(s, [batch], now);
          // Retrying what succeeded never moves money again: every retry answers EXISTS.
          const succeeded = batch.filter((_, k) => codes![k] === 'OK').map((t) => ({ ...t, linked: false }));
          const after = JSON.stringify([...s.accounts.values()]);
          if (succeeded.length > 0) {
            const [retryCodes] = run(s, [succeeded], now);
            assert.ok(
              retryCodes!.every((c) => c === 'EXISTS'),
              retryCodes!.join(),
            );
          }
          assert.equal(JSON.stringify([...s.accounts.values()]), after);
          let dp = 0;
          let cp = 0;
          let dpend = 0;
          let cpend = 0;
          for (const a of s.accounts.values()) {
            dp += a.debitsPosted;
            cp += a.creditsPosted;
            dpend += a.debitsPending;
            cpend += a.creditsPending;
            for (const v of [a.debitsPosted, a.creditsPosted, a.debitsPending, a.creditsPending])
              assert.ok(v >= 0);
            if (a.flags & ACCOUNT_FLAGS.debitsMustNotExceedCredits)
              assert.ok(a.debitsPending + a.debitsPosted <= a.creditsPosted);
            if (a.flags & ACCOUNT_FLAGS.creditsMustNotExceedDebits)
              assert.ok(a.creditsPending + a.creditsPosted <= a.debitsPosted);
          }
          assert.equal(dp, cp);
          assert.equal(dpend, cpend);
        }
      },
    ),
    { numRuns: 300 },
  );
});
