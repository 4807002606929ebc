// The wallet policy: every reason code, the fixed precedence (deny > challenge > allow, denies in
// DENY_ORDER), and properties that no allowed payment breaks a cap or budget, a smaller amount is
// never treated worse, and an approval lifts only the approval challenge.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  canonicalJson,
  DENY_ORDER,
  type Decision,
  decide,
  METHODS,
  type Method,
  type PaymentRequest,
  type Policy,
  policyHash,
  policySchema,
  REASON_CODES,
  type ReasonCode,
  type WalletState,
} from '../src/policy';

const PAYEE = 'a'.repeat(64);
const OTHER = 'b'.repeat(64);
const NOW_S = 1_800_000_000;
const BERLIN_DAY = { kind: 'calendar', unit: 'day', timeZone: 'Europe/Berlin' } as const;

const basePolicyInput = {
  version: 1,
  mode: 'live',
  maxPaymentMsat: 100_000,
  budgets: [
    { id: 'daily', limitMsat: 500_000, period: BERLIN_DAY },
    { id: 'hourly', limitMsat: 200_000, period: { kind: 'rolling', windowS: 3_600 } },
  ],
  cooldownS: 10,
  maxPayments: { count: 5, windowS: 60 },
  approvalAboveMsat: 50_000,
  methods: [...METHODS],
};
const policyWith = (over: Record<string, unknown> = {}): Policy =>
  policySchema.parse({ ...basePolicyInput, ...over });
const stateWith = (over: Partial<WalletState> = {}): WalletState => ({
  nowS: NOW_S,
  lastPaymentAtS: NOW_S - 60,
  paymentsInWindow: 0,
  spentByBudgetMsat: { daily: 0, hourly: 0 },
  balanceMsat: 1_000_000,
  status: 'active',
  ...over,
});
const payWith = (over: Partial<PaymentRequest> = {}): PaymentRequest => ({
  method: 'pay_invoice',
  amountMsat: 10_000,
  payee: PAYEE,
  paymentHash: 'f'.repeat(64),
  approved: false,
  ...over,
});

interface Row {
  name: string;
  policy?: Record<string, unknown>;
  state?: Partial<WalletState>;
  request?: Partial<PaymentRequest>;
  outcome: Decision['outcome'];
  code: ReasonCode;
  says?: string;
}

const rows: Row[] = [
  { name: 'a plain payment', outcome: 'allow', code: 'OK' },
  {
    name: 'a read on a killed wallet',
    state: { status: 'killed' },
    request: { method: 'get_balance' },
    outcome: 'allow',
    code: 'OK',
  },
  {
    name: 'a read on a paused wallet',
    state: { status: 'paused' },
    request: { method: 'get_budget' },
    outcome: 'allow',
    code: 'OK',
  },
  {
    name: 'make_invoice on a killed wallet',
    state: { status: 'killed' },
    request: { method: 'make_invoice' },
    outcome: 'allow',
    code: 'OK',
  },
  { name: 'killed', state: { status: 'killed' }, outcome: 'deny', code: 'WALLET_KILLED' },
  { name: 'paused', state: { status: 'paused' }, outcome: 'deny', code: 'WALLET_PAUSED' },
  {
    name: 'an unknown status fails closed',
    state: { status: 'frozen' as WalletState['status'] },
    outcome: 'deny',
    code: 'WALLET_PAUSED',
  },
  {
    name: 'pay_invoice not listed',
    policy: { methods: ['get_balance'] },
    outcome: 'deny',
    code: 'METHOD_NOT_ALLOWED',
  },
  {
    name: 'a read not listed',
    policy: { methods: ['pay_invoice'] },
    request: { method: 'get_info' },
    outcome: 'deny',
    code: 'METHOD_NOT_ALLOWED',
    says: 'get_info',
  },
  {
    name: 'an unknown method',
    request: { method: 'sign_message' as Method },
    outcome: 'deny',
    code: 'METHOD_NOT_ALLOWED',
  },
  { name: 'zero amount', request: { amountMsat: 0 }, outcome: 'deny', code: 'AMOUNT_INVALID' },
  { name: 'negative amount', request: { amountMsat: -1 }, outcome: 'deny', code: 'AMOUNT_INVALID' },
  { name: 'fractional amount', request: { amountMsat: 1.5 }, outcome: 'deny', code: 'AMOUNT_INVALID' },
  { name: 'NaN amount', request: { amountMsat: Number.NaN }, outcome: 'deny', code: 'AMOUNT_INVALID' },
  { name: 'unsafe amount', request: { amountMsat: 2 ** 53 }, outcome: 'deny', code: 'AMOUNT_INVALID' },
  { name: 'denied payee', policy: { denyPayees: [PAYEE] }, outcome: 'deny', code: 'PAYEE_DENIED' },
  {
    name: 'denied payee written in uppercase',
    policy: { denyPayees: [PAYEE] },
    request: { payee: PAYEE.toUpperCase() },
    outcome: 'deny',
    code: 'PAYEE_DENIED',
  },
  {
    name: 'payee off the allow list',
    policy: { allowPayees: [OTHER] },
    outcome: 'deny',
    code: 'PAYEE_NOT_ALLOWED',
  },
  {
    name: 'unknown payee with an allow list',
    policy: { allowPayees: [PAYEE] },
    request: { payee: null },
    outcome: 'deny',
    code: 'PAYEE_NOT_ALLOWED',
    says: 'unknown payee',
  },
  {
    name: 'empty allow list allows nobody',
    policy: { allowPayees: [] },
    outcome: 'deny',
    code: 'PAYEE_NOT_ALLOWED',
  },
  { name: 'payee on the allow list', policy: { allowPayees: [OTHER, PAYEE] }, outcome: 'allow', code: 'OK' },
  { name: 'unknown payee without an allow list', request: { payee: null }, outcome: 'allow', code: 'OK' },
  {
    name: 'over the cap',
    request: { amountMsat: 100_001, approved: true },
    outcome: 'deny',
    code: 'OVER_PAYMENT_CAP',
  },
  { name: 'exactly the cap', request: { amountMsat: 100_000, approved: true }, outcome: 'allow', code: 'OK' },
  {
    name: 'over the daily budget',
    state: { spentByBudgetMsat: { daily: 495_000, hourly: 0 } },
    outcome: 'deny',
    code: 'OVER_BUDGET',
    says: 'daily',
  },
  {
    name: 'over the hourly budget',
    state: { spentByBudgetMsat: { daily: 0, hourly: 190_001 } },
    outcome: 'deny',
    code: 'OVER_BUDGET',
    says: 'hourly',
  },
  {
    name: 'filling a budget exactly',
    state: { spentByBudgetMsat: { daily: 490_000, hourly: 0 } },
    outcome: 'allow',
    code: 'OK',
  },
  {
    name: 'a budget already overspent',
    state: { spentByBudgetMsat: { daily: 600_000, hourly: 0 } },
    outcome: 'deny',
    code: 'OVER_BUDGET',
  },
  {
    name: 'unknown spend fails closed',
    state: { spentByBudgetMsat: { daily: 0 } },
    outcome: 'deny',
    code: 'OVER_BUDGET',
    says: 'hourly',
  },
  {
    name: 'a prototype name is not a spend figure',
    policy: { budgets: [{ id: 'constructor', limitMsat: 1_000_000, period: BERLIN_DAY }] },
    state: { spentByBudgetMsat: {} },
    outcome: 'deny',
    code: 'OVER_BUDGET',
  },
  {
    name: 'no budgets at all',
    policy: { budgets: [] },
    state: { spentByBudgetMsat: {} },
    outcome: 'allow',
    code: 'OK',
  },
  {
    name: 'inside the cooldown',
    state: { lastPaymentAtS: NOW_S - 3 },
    outcome: 'deny',
    code: 'COOLDOWN',
    says: '7 s',
  },
  { name: 'cooldown just over', state: { lastPaymentAtS: NOW_S - 10 }, outcome: 'allow', code: 'OK' },
  { name: 'first payment ever', state: { lastPaymentAtS: null }, outcome: 'allow', code: 'OK' },
  {
    name: 'zero cooldown',
    policy: { cooldownS: 0 },
    state: { lastPaymentAtS: NOW_S },
    outcome: 'allow',
    code: 'OK',
  },
  {
    name: 'payment count reached',
    state: { paymentsInWindow: 5 },
    outcome: 'deny',
    code: 'TOO_MANY_PAYMENTS',
  },
  { name: 'one payment left', state: { paymentsInWindow: 4 }, outcome: 'allow', code: 'OK' },
  {
    name: 'unknown payment count fails closed',
    state: { paymentsInWindow: Number.NaN },
    outcome: 'deny',
    code: 'TOO_MANY_PAYMENTS',
  },
  {
    name: 'balance short by 1 msat',
    state: { balanceMsat: 9_999 },
    outcome: 'deny',
    code: 'INSUFFICIENT_BALANCE',
  },
  { name: 'exactly the balance', state: { balanceMsat: 10_000 }, outcome: 'allow', code: 'OK' },
  {
    name: 'above the approval threshold',
    request: { amountMsat: 50_001 },
    outcome: 'challenge',
    code: 'APPROVAL_REQUIRED',
    says: 'f'.repeat(64),
  },
  { name: 'exactly the approval threshold', request: { amountMsat: 50_000 }, outcome: 'allow', code: 'OK' },
  {
    name: 'approved above the threshold',
    request: { amountMsat: 50_001, approved: true },
    outcome: 'allow',
    code: 'OK',
  },
  {
    name: 'threshold 0 challenges every payment',
    policy: { approvalAboveMsat: 0 },
    outcome: 'challenge',
    code: 'APPROVAL_REQUIRED',
  },
  // Precedence.
  {
    name: 'killed beats paused-like and every other deny',
    policy: { methods: [], denyPayees: [PAYEE] },
    state: { status: 'killed', balanceMsat: 0 },
    request: { amountMsat: -1 },
    outcome: 'deny',
    code: 'WALLET_KILLED',
  },
  {
    name: 'method beats amount',
    policy: { methods: ['get_info'] },
    request: { amountMsat: 0 },
    outcome: 'deny',
    code: 'METHOD_NOT_ALLOWED',
  },
  {
    name: 'amount beats payee',
    policy: { denyPayees: [PAYEE] },
    request: { amountMsat: 0 },
    outcome: 'deny',
    code: 'AMOUNT_INVALID',
  },
  {
    name: 'deny list beats allow list',
    policy: { denyPayees: [PAYEE], allowPayees: [OTHER] },
    outcome: 'deny',
    code: 'PAYEE_DENIED',
  },
  {
    name: 'allow list beats cap',
    policy: { allowPayees: [OTHER] },
    request: { amountMsat: 200_000 },
    outcome: 'deny',
    code: 'PAYEE_NOT_ALLOWED',
  },
  {
    name: 'cap beats budget',
    state: { spentByBudgetMsat: { daily: 500_000, hourly: 0 } },
    request: { amountMsat: 100_001 },
    outcome: 'deny',
    code: 'OVER_PAYMENT_CAP',
  },
  {
    name: 'budgets are checked in policy order',
    state: { spentByBudgetMsat: { daily: 500_000, hourly: 200_000 } },
    outcome: 'deny',
    code: 'OVER_BUDGET',
    says: 'daily',
  },
  {
    name: 'budget beats cooldown',
    state: { spentByBudgetMsat: { daily: 500_000, hourly: 0 }, lastPaymentAtS: NOW_S },
    outcome: 'deny',
    code: 'OVER_BUDGET',
  },
  {
    name: 'cooldown beats count',
    state: { lastPaymentAtS: NOW_S, paymentsInWindow: 5 },
    outcome: 'deny',
    code: 'COOLDOWN',
  },
  {
    name: 'count beats balance',
    state: { paymentsInWindow: 5, balanceMsat: 0 },
    outcome: 'deny',
    code: 'TOO_MANY_PAYMENTS',
  },
  {
    name: 'a deny beats the approval challenge',
    state: { balanceMsat: 0 },
    request: { amountMsat: 60_000 },
    outcome: 'deny',
    code: 'INSUFFICIENT_BALANCE',
  },
  {
    name: 'approval does not lift the cap',
    request: { amountMsat: 100_001, approved: true },
    outcome: 'deny',
    code: 'OVER_PAYMENT_CAP',
  },
  {
    name: 'approval does not lift a kill',
    state: { status: 'killed' },
    request: { amountMsat: 60_000, approved: true },
    outcome: 'deny',
    code: 'WALLET_KILLED',
  },
];

for (const row of rows) {
  test(`decide: ${row.name} -> ${row.outcome} ${row.code}`, () => {
    const policy = policyWith(row.policy);
    const decision = decide(policy, stateWith(row.state), payWith(row.request));
    assert.equal(decision.outcome, row.outcome, decision.message);
    assert.equal(decision.code, row.code, decision.message);
    assert.equal(decision.policyHash, policyHash(policy));
    assert.equal(decision.dryRun, false);
    assert.ok(decision.message.length > 0);
    if (row.says)
      assert.ok(decision.message.includes(row.says), `${decision.message} should say ${row.says}`);
  });
}

test('the table covers every reason code', () => {
  assert.deepEqual(new Set(rows.map((row) => row.code)), new Set(REASON_CODES));
  assert.deepEqual(
    new Set(DENY_ORDER),
    new Set(REASON_CODES.filter((code) => code !== 'OK' && code !== 'APPROVAL_REQUIRED')),
  );
});

test('dry-run changes nothing but the dryRun flag', () => {
  for (const row of rows) {
    const live = decide(policyWith(row.policy), stateWith(row.state), payWith(row.request));
    const dry = decide(
      policyWith({ ...row.policy, mode: 'dry-run' }),
      stateWith(row.state),
      payWith(row.request),
    );
    assert.equal(dry.dryRun, true);
    assert.deepEqual({ ...dry, dryRun: false, policyHash: '' }, { ...live, policyHash: '' }, row.name);
    assert.notEqual(dry.policyHash, live.policyHash);
  }
});

// --- Schema ---

test('policySchema accepts the base policy and folds pubkeys to lowercase', () => {
  const policy = policyWith({ allowPayees: [PAYEE.toUpperCase()] });
  assert.deepEqual(policy.allowPayees, [PAYEE]);
  assert.equal(policySchema.safeParse({ ...basePolicyInput, budgets: [], methods: [] }).success, true);
});

test('policySchema refuses unknown keys, floats, negative amounts, duplicate ids and bad time zones', () => {
  const budget = basePolicyInput.budgets[0]!;
  const refused: Array<[string, Record<string, unknown>]> = [
    ['unknown top-level key', { extra: true }],
    ['unknown budget key', { budgets: [{ ...budget, note: 'x' }] }],
    ['unknown period key', { budgets: [{ ...budget, period: { ...BERLIN_DAY, dst: false } }] }],
    ['unknown maxPayments key', { maxPayments: { count: 1, windowS: 60, burst: 2 } }],
    ['float limit', { budgets: [{ ...budget, limitMsat: 1.5 }] }],
    ['float cap', { maxPaymentMsat: 1000.5 }],
    ['float cooldown', { cooldownS: 0.5 }],
    ['float approval threshold', { approvalAboveMsat: 0.1 }],
    ['float window', { maxPayments: { count: 1, windowS: 1.5 } }],
    ['negative limit', { budgets: [{ ...budget, limitMsat: -1 }] }],
    ['zero limit', { budgets: [{ ...budget, limitMsat: 0 }] }],
    ['negative cap', { maxPaymentMsat: -1 }],
    ['zero cap', { maxPaymentMsat: 0 }],
    ['negative approval threshold', { approvalAboveMsat: -1 }],
    ['negative cooldown', { cooldownS: -1 }],
    ['zero count', { maxPayments: { count: 0, windowS: 60 } }],
    ['unsafe limit', { budgets: [{ ...budget, limitMsat: 2 ** 53 }] }],
    ['amount as string', { maxPaymentMsat: '1000' }],
    ['duplicate budget ids', { budgets: [budget, { ...budget, limitMsat: 1 }] }],
    [
      'invalid time zone',
      { budgets: [{ ...budget, period: { ...BERLIN_DAY, timeZone: 'Europe/Atlantis' } }] },
    ],
    ['offset instead of a zone', { budgets: [{ ...budget, period: { ...BERLIN_DAY, timeZone: '+02:00' } }] }],
    ['unknown unit', { budgets: [{ ...budget, period: { ...BERLIN_DAY, unit: 'year' } }] }],
    ['rolling window of 0', { budgets: [{ ...budget, period: { kind: 'rolling', windowS: 0 } }] }],
    ['nine budgets', { budgets: Array.from({ length: 9 }, (_, i) => ({ ...budget, id: `b${i}` })) }],
    ['uppercase budget id', { budgets: [{ ...budget, id: 'Daily' }] }],
    ['empty budget id', { budgets: [{ ...budget, id: '' }] }],
    ['41-char budget id', { budgets: [{ ...budget, id: 'x'.repeat(41) }] }],
    ['short pubkey', { allowPayees: ['ab'] }],
    ['npub instead of hex', { denyPayees: [`npub1${'q'.repeat(58)}`] }],
    ['257 allowed payees', { allowPayees: Array.from({ length: 257 }, () => PAYEE) }],
    ['version 2', { version: 2 }],
    ['unknown mode', { mode: 'test' }],
    ['unknown method', { methods: ['pay_keysend'] }],
    ['repeated method', { methods: ['get_info', 'get_info'] }],
    ['missing methods', { methods: undefined }],
  ];
  for (const [name, over] of refused) {
    assert.equal(policySchema.safeParse({ ...basePolicyInput, ...over }).success, false, name);
  }
});

// --- Properties ---

const KEYS = ['1', '2', '3', '4'].map((c) => c.repeat(64));
const BUDGET_IDS = ['a', 'b', 'c', 'd'];
const amountArb = fc.integer({ min: 1, max: 2_000 });
const optional = <T>(arb: fc.Arbitrary<T>) => fc.option(arb, { nil: undefined });
const periodArb = fc.constantFrom(
  BERLIN_DAY,
  { kind: 'rolling', windowS: 3_600 } as const,
  {
    kind: 'calendar',
    unit: 'month',
    timeZone: 'UTC',
  } as const,
);

const policyArb: fc.Arbitrary<Policy> = fc
  .record({
    version: fc.constant(1 as const),
    mode: fc.constantFrom('live' as const, 'dry-run' as const),
    maxPaymentMsat: optional(amountArb),
    budgets: fc.uniqueArray(
      fc.record({ id: fc.constantFrom(...BUDGET_IDS), limitMsat: amountArb, period: periodArb }),
      {
        selector: (budget) => budget.id,
        maxLength: 4,
      },
    ),
    allowPayees: optional(fc.subarray(KEYS, { minLength: 3 })),
    denyPayees: optional(fc.subarray(KEYS, { maxLength: 1 })),
    cooldownS: optional(fc.integer({ min: 0, max: 30 })),
    maxPayments: optional(
      fc.record({ count: fc.integer({ min: 1, max: 5 }), windowS: fc.integer({ min: 1, max: 600 }) }),
    ),
    approvalAboveMsat: optional(fc.integer({ min: 0, max: 2_000 })),
    methods: fc.oneof(
      { weight: 4, arbitrary: fc.constant([...METHODS]) },
      { weight: 1, arbitrary: fc.subarray([...METHODS]) },
    ),
  })
  .map((input) => policySchema.parse(input));

const stateArb: fc.Arbitrary<WalletState> = fc.record({
  nowS: fc.constant(NOW_S),
  lastPaymentAtS: fc.option(fc.integer({ min: NOW_S - 40, max: NOW_S }), { nil: null }),
  paymentsInWindow: fc.integer({ min: 0, max: 6 }),
  spentByBudgetMsat: fc.record(
    Object.fromEntries(BUDGET_IDS.map((id) => [id, fc.integer({ min: 0, max: 2_000 })])),
  ),
  balanceMsat: fc.integer({ min: 0, max: 4_000 }),
  status: fc.oneof(
    { weight: 8, arbitrary: fc.constant<WalletState['status']>('active') },
    { weight: 1, arbitrary: fc.constantFrom<WalletState['status']>('paused', 'killed') },
  ),
});

const requestArb: fc.Arbitrary<PaymentRequest> = fc.record({
  method: fc.oneof(
    { weight: 4, arbitrary: fc.constant<Method>('pay_invoice') },
    { weight: 1, arbitrary: fc.constantFrom(...METHODS) },
  ),
  amountMsat: amountArb,
  payee: fc.option(fc.constantFrom(...KEYS), { nil: null }),
  paymentHash: fc.constant('e'.repeat(64)),
  approved: fc.boolean(),
});

const RANK = { allow: 0, challenge: 1, deny: 2 } as const;
const RUNS = { numRuns: 300 };

test('property (a): an allowed payment keeps every budget, the cap and the balance', () => {
  fc.assert(
    fc.property(policyArb, stateArb, requestArb, (policy, state, request) => {
      const decision = decide(policy, state, request);
      if (decision.outcome !== 'allow' || request.method !== 'pay_invoice') return;
      for (const budget of policy.budgets) {
        assert.ok(state.spentByBudgetMsat[budget.id]! + request.amountMsat <= budget.limitMsat, budget.id);
      }
      if (policy.maxPaymentMsat !== undefined) assert.ok(request.amountMsat <= policy.maxPaymentMsat);
      assert.ok(request.amountMsat <= state.balanceMsat);
      assert.equal(state.status, 'active');
    }),
    RUNS,
  );
});

test('property (b): a smaller amount is never treated worse', () => {
  fc.assert(
    fc.property(policyArb, stateArb, requestArb, fc.nat(), (policy, state, request, pick) => {
      fc.pre(request.amountMsat > 1);
      const smallerMsat = 1 + (pick % (request.amountMsat - 1));
      const larger = decide(policy, state, request);
      const smaller = decide(policy, state, { ...request, amountMsat: smallerMsat });
      assert.ok(
        RANK[smaller.outcome] <= RANK[larger.outcome],
        `${smallerMsat}: ${smaller.code} vs ${request.amountMsat}: ${larger.code}`,
      );
    }),
    RUNS,
  );
});

// A payment that passes every deny check by construction: allowed, or challenged for approval.
const passingCaseArb = fc
  .record({
    amountMsat: fc.integer({ min: 2, max: 2_000 }),
    extraMsat: fc.integer({ min: 0, max: 2_000 }),
    payee: fc.constantFrom(...KEYS),
    policy: policyArb,
    state: stateArb,
    approved: fc.boolean(),
    approvalAboveMsat: optional(fc.integer({ min: 0, max: 4_000 })),
  })
  .map(({ amountMsat, extraMsat, payee, policy, state, approved, approvalAboveMsat }) => {
    const passing: Policy = {
      ...policy,
      methods: [...METHODS],
      maxPaymentMsat: policy.maxPaymentMsat === undefined ? undefined : amountMsat + extraMsat,
      budgets: policy.budgets.map((b) => ({
        ...b,
        limitMsat: state.spentByBudgetMsat[b.id]! + amountMsat + extraMsat,
      })),
      allowPayees:
        policy.allowPayees === undefined
          ? undefined
          : [...policy.allowPayees.filter((k) => k !== payee), payee],
      denyPayees: policy.denyPayees?.filter((k) => k !== payee),
      maxPayments: policy.maxPayments && { ...policy.maxPayments, count: state.paymentsInWindow + 1 },
      approvalAboveMsat,
    };
    const lastPaymentAtS =
      state.lastPaymentAtS === null
        ? null
        : Math.min(state.lastPaymentAtS, state.nowS - (policy.cooldownS ?? 0));
    const passingState: WalletState = {
      ...state,
      status: 'active',
      lastPaymentAtS,
      balanceMsat: amountMsat + extraMsat,
    };
    const request = payWith({ amountMsat, payee, approved });
    return { policy: policySchema.parse(passing), state: passingState, request };
  });

interface Case {
  policy: Policy;
  state: WalletState;
  request: PaymentRequest;
}
// One way to break each deny check, computed from the passing case so that breakers combine.
const BREAKERS: Record<(typeof DENY_ORDER)[number], (c: Case, base: Case) => Case> = {
  WALLET_KILLED: (c) => ({ ...c, state: { ...c.state, status: 'killed' } }),
  WALLET_PAUSED: (c) => (c.state.status === 'killed' ? c : { ...c, state: { ...c.state, status: 'paused' } }),
  METHOD_NOT_ALLOWED: (c) => ({
    ...c,
    policy: { ...c.policy, methods: c.policy.methods.filter((m) => m !== 'pay_invoice') },
  }),
  AMOUNT_INVALID: (c) => ({ ...c, request: { ...c.request, amountMsat: 0 } }),
  PAYEE_DENIED: (c, base) => ({ ...c, policy: { ...c.policy, denyPayees: [base.request.payee!] } }),
  PAYEE_NOT_ALLOWED: (c) => ({ ...c, policy: { ...c.policy, allowPayees: [] } }),
  OVER_PAYMENT_CAP: (c, base) => ({
    ...c,
    policy: { ...c.policy, maxPaymentMsat: base.request.amountMsat - 1 },
  }),
  OVER_BUDGET: (c) => ({
    ...c,
    policy: { ...c.policy, budgets: [...c.policy.budgets, { id: 'z', limitMsat: 1, period: BERLIN_DAY }] },
    state: { ...c.state, spentByBudgetMsat: { ...c.state.spentByBudgetMsat, z: 1 } },
  }),
  COOLDOWN: (c) => ({
    ...c,
    policy: { ...c.policy, cooldownS: 30 },
    state: { ...c.state, lastPaymentAtS: c.state.nowS },
  }),
  TOO_MANY_PAYMENTS: (c) => ({
    ...c,
    policy: { ...c.policy, maxPayments: { count: 1, windowS: 60 } },
    state: { ...c.state, paymentsInWindow: 1 },
  }),
  INSUFFICIENT_BALANCE: (c, base) => ({
    ...c,
    state: { ...c.state, balanceMsat: base.request.amountMsat - 1 },
  }),
};

test('property (c): the passing cases are allowed or challenged, never denied', () => {
  const seen = new Set<string>();
  fc.assert(
    fc.property(passingCaseArb, ({ policy, state, request }) => {
      const decision = decide(policy, state, request);
      assert.notEqual(decision.outcome, 'deny', decision.message);
      seen.add(decision.code);
    }),
    RUNS,
  );
  assert.deepEqual(seen, new Set(['OK', 'APPROVAL_REQUIRED']));
});

test('property (c): one deny condition added to an allowed or challenged payment denies with its code', () => {
  fc.assert(
    fc.property(passingCaseArb, fc.constantFrom(...DENY_ORDER), (base, code) => {
      const broken = BREAKERS[code](base, base);
      const decision = decide(broken.policy, broken.state, broken.request);
      assert.equal(decision.outcome, 'deny');
      assert.equal(decision.code, code, decision.message);
    }),
    RUNS,
  );
});

test('property (c): with several deny conditions the first in DENY_ORDER wins', () => {
  fc.assert(
    fc.property(passingCaseArb, fc.subarray([...DENY_ORDER], { minLength: 1 }), (base, codes) => {
      const broken = codes.reduce((c, code) => BREAKERS[code](c, base), base);
      const decision = decide(broken.policy, broken.state, broken.request);
      assert.equal(decision.outcome, 'deny');
      assert.equal(
        decision.code,
        DENY_ORDER.find((code) => codes.includes(code)),
        decision.message,
      );
    }),
    RUNS,
  );
});

test('property (d): approval lifts only the approval challenge', () => {
  fc.assert(
    fc.property(policyArb, stateArb, requestArb, (policy, state, request) => {
      const unapproved = decide(policy, state, { ...request, approved: false });
      const approved = decide(policy, state, { ...request, approved: true });
      if (unapproved.code === 'APPROVAL_REQUIRED') {
        assert.equal(approved.code, 'OK');
      } else {
        assert.deepEqual(approved, unapproved);
      }
      if (unapproved.outcome === 'deny') assert.equal(approved.outcome, 'deny');
    }),
    RUNS,
  );
});

// Rebuild every object with its keys in a seeded random order.
function shuffleKeys(value: unknown, seed: number): unknown {
  let state = seed >>> 0 || 1;
  const next = () => {
    state = (state * 1_103_515_245 + 12_345) >>> 0;
    return state;
  };
  const walk = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(walk);
    if (v === null || typeof v !== 'object') return v;
    const keys = Object.keys(v);
    for (let i = keys.length - 1; i > 0; i--) {
      const j = next() % (i + 1);
      [keys[i], keys[j]] = [keys[j]!, keys[i]!];
    }
    return Object.fromEntries(keys.map((key) => [key, walk((v as Record<string, unknown>)[key])]));
  };
  return walk(value);
}

// Paths of every number in the policy except version.
function numberPaths(value: unknown, path: Array<string | number> = []): Array<Array<string | number>> {
  if (typeof value === 'number') return path[0] === 'version' ? [] : [path];
  if (value === null || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([key, v]) =>
    numberPaths(v, [...path, Array.isArray(value) ? Number(key) : key]),
  );
}

test('property (e): policyHash ignores key order and changes with any amount', () => {
  fc.assert(
    fc.property(policyArb, fc.integer(), fc.nat(), (policy, seed, pick) => {
      const hash = policyHash(policy);
      assert.match(hash, /^[0-9a-f]{64}$/);
      const reordered = shuffleKeys(policy, seed) as Policy;
      assert.equal(policyHash(reordered), hash);
      assert.equal(policyHash(policySchema.parse(JSON.parse(JSON.stringify(reordered)))), hash);
      const paths = numberPaths(policy);
      fc.pre(paths.length > 0);
      const path = paths[pick % paths.length]!;
      const changed = structuredClone(policy) as unknown as Record<string | number, unknown>;
      let target = changed;
      for (const key of path.slice(0, -1)) target = target[key] as Record<string | number, unknown>;
      const last = path.at(-1)!;
      target[last] = (target[last] as number) + 1;
      assert.notEqual(policyHash(policySchema.parse(changed)), hash, path.join('.'));
    }),
    RUNS,
  );
});

test('canonicalJson sorts keys at every depth, keeps array order and drops undefined', () => {
  assert.equal(canonicalJson({ b: 1, a: { d: [2, 1], c: undefined } }), '{"a":{"d":[2,1]},"b":1}');
  assert.throws(() => canonicalJson({ a: Number.NaN }), TypeError);
  assert.equal(
    policyHash(policyWith({ maxPaymentMsat: undefined })),
    policyHash(policyWith({ maxPaymentMsat: undefined })),
  );
  assert.notEqual(policyHash(policyWith()), policyHash(policyWith({ maxPaymentMsat: undefined })));
});

test('decide() takes the stored hash of the policy instead of hashing it again', () => {
  const policy = policySchema.parse({ version: 1, mode: 'live', budgets: [], methods: ['get_balance'] });
  const state = {
    nowS: 1,
    lastPaymentAtS: null,
    paymentsInWindow: 0,
    spentByBudgetMsat: {},
    balanceMsat: 0,
    status: 'active' as const,
  };
  const request = {
    method: 'get_balance' as const,
    amountMsat: 0,
    payee: null,
    paymentHash: '',
    approved: false,
  };
  assert.equal(decide(policy, state, request).policyHash, policyHash(policy));
  assert.equal(decide(policy, state, request, 'f'.repeat(64)).policyHash, 'f'.repeat(64));
});

// Added after mutation testing (tools/mutation/wallet-policy.config.json): each kills a survivor.
test('payee keys are exactly 64 hex: longer keys and keys with a prefix or suffix are refused', () => {
  for (const key of ['a'.repeat(65), `z${'a'.repeat(64)}`, `${'a'.repeat(64)}z`])
    assert.equal(policySchema.safeParse({ ...basePolicyInput, allowPayees: [key] }).success, false, key);
});

test('state figures that are not whole non-negative msat fail closed', () => {
  const policy = policyWith({
    budgets: [{ id: 'day', limitMsat: 10_000, period: BERLIN_DAY }],
    maxPayments: { count: 5, windowS: 60 },
  });
  const code = (state: Partial<WalletState>) =>
    decide(policy, stateWith(state), payWith({ amountMsat: 100 })).code;
  assert.equal(code({ spentByBudgetMsat: { day: 0.5 } }), 'OVER_BUDGET');
  assert.equal(code({ spentByBudgetMsat: { day: -1 } }), 'OVER_BUDGET');
  assert.equal(code({ spentByBudgetMsat: { day: 0 }, paymentsInWindow: -1 }), 'TOO_MANY_PAYMENTS');
  assert.equal(code({ spentByBudgetMsat: { day: 0 }, balanceMsat: 1_000.5 }), 'INSUFFICIENT_BALANCE');
});

test('a zero cooldown never delays, even when the last payment looks later than now (clock skew)', () => {
  const policy = policyWith({ cooldownS: 0 });
  const decision = decide(policy, stateWith({ lastPaymentAtS: NOW_S + 30 }), payWith({ amountMsat: 100 }));
  assert.notEqual(decision.code, 'COOLDOWN');
});

test('canonicalJson writes null and refuses what JSON cannot hold', () => {
  assert.equal(canonicalJson({ a: null, b: [null] }), '{"a":null,"b":[null]}');
  assert.throws(() => canonicalJson(() => 1), TypeError);
  assert.throws(() => canonicalJson(Number.NaN), TypeError);
});
