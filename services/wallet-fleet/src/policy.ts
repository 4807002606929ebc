// The wallet policy and the one decision every agent request goes through. Pure: the caller reads
// the wallet's state (spend per budget period, last payment, balance) and passes it in.
//
// Order of checks (the first that fails decides; any deny beats a challenge, a challenge beats allow):
//   WALLET_KILLED, WALLET_PAUSED, METHOD_NOT_ALLOWED, AMOUNT_INVALID, PAYEE_DENIED, PAYEE_NOT_ALLOWED,
//   OVER_PAYMENT_CAP, OVER_BUDGET (budgets in policy order), COOLDOWN, TOO_MANY_PAYMENTS,
//   INSUFFICIENT_BALANCE, then APPROVAL_REQUIRED (challenge), else OK.
// Only pay_invoice moves money out, so the wallet status and every payment rule apply to it alone:
// a killed or paused wallet still answers the other methods (reads, make_invoice) that its policy
// lists, which lets an agent report its state. Missing or malformed state figures fail closed.
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { MAX_WINDOW_S, periodSchema } from './periods';

export const METHODS = [
  'pay_invoice',
  'make_invoice',
  'lookup_invoice',
  'list_transactions',
  'get_balance',
  'get_info',
  'get_budget',
] as const;
export type Method = (typeof METHODS)[number];

/** Methods that spend; every other method only reads or receives. */
export const PAYMENT_METHODS: readonly Method[] = ['pay_invoice'];

export const REASON_CODES = [
  'OK',
  'WALLET_KILLED',
  'WALLET_PAUSED',
  'METHOD_NOT_ALLOWED',
  'AMOUNT_INVALID',
  'OVER_PAYMENT_CAP',
  'OVER_BUDGET',
  'PAYEE_DENIED',
  'PAYEE_NOT_ALLOWED',
  'COOLDOWN',
  'TOO_MANY_PAYMENTS',
  'INSUFFICIENT_BALANCE',
  'APPROVAL_REQUIRED',
] as const;
export type ReasonCode = (typeof REASON_CODES)[number];

/** Deny codes in the order decide() checks them: the first one that applies is the answer. */
export const DENY_ORDER = [
  'WALLET_KILLED',
  'WALLET_PAUSED',
  'METHOD_NOT_ALLOWED',
  'AMOUNT_INVALID',
  'PAYEE_DENIED',
  'PAYEE_NOT_ALLOWED',
  'OVER_PAYMENT_CAP',
  'OVER_BUDGET',
  'COOLDOWN',
  'TOO_MANY_PAYMENTS',
  'INSUFFICIENT_BALANCE',
] as const satisfies readonly ReasonCode[];

const msatSchema = z.int().positive(); // z.int() is a safe integer in zod 4
// Nostr/Lightning node keys are lowercase hex; uppercase is accepted and folded so lists compare.
const pubkeySchema = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/, 'expected a 64-hex public key')
  .transform((key) => key.toLowerCase());
const unique = <T>(values: readonly T[]) => new Set(values).size === values.length;

export const budgetSchema = z.strictObject({
  id: z.string().regex(/^[a-z0-9_-]{1,40}$/, 'budget id: 1..40 of a-z 0-9 _ -'),
  limitMsat: msatSchema,
  period: periodSchema,
});
export type Budget = z.infer<typeof budgetSchema>;

export const policySchema = z.strictObject({
  version: z.literal(1),
  mode: z.enum(['live', 'dry-run']),
  maxPaymentMsat: msatSchema.optional(),
  budgets: z
    .array(budgetSchema)
    .max(8)
    .refine((budgets) => unique(budgets.map((b) => b.id)), 'budget ids must be unique'),
  allowPayees: z.array(pubkeySchema).max(256).optional(),
  denyPayees: z.array(pubkeySchema).max(256).optional(),
  cooldownS: z.int().min(0).max(MAX_WINDOW_S).optional(),
  maxPayments: z
    .strictObject({ count: z.int().positive(), windowS: z.int().positive().max(MAX_WINDOW_S) })
    .optional(),
  approvalAboveMsat: z.int().min(0).optional(),
  methods: z.array(z.enum(METHODS)).refine(unique, 'methods must not repeat'),
});
export type Policy = z.infer<typeof policySchema>;

export interface PaymentRequest {
  method: Method;
  /** What leaves the wallet, routing fee allowance included (the caller adds it). */
  amountMsat: number;
  /** Payee node pubkey (hex), null when the invoice does not say. */
  payee: string | null;
  paymentHash: string;
  /** The owner approved exactly this payment hash and amount. */
  approved: boolean;
}

export type WalletStatus = 'active' | 'paused' | 'killed';

export interface WalletState {
  nowS: number;
  lastPaymentAtS: number | null;
  /** Payments in the maxPayments window ending now. */
  paymentsInWindow: number;
  /** Posted + pending spend of each budget in its current period, by budget id. */
  spentByBudgetMsat: Record<string, number>;
  balanceMsat: number;
  status: WalletStatus;
}

export type Outcome = 'allow' | 'deny' | 'challenge';

export interface Decision {
  outcome: Outcome;
  code: ReasonCode;
  message: string;
  policyHash: string;
  /** The policy is in dry-run: the decision is the same, the caller must not act on it. */
  dryRun: boolean;
}

type Verdict = Pick<Decision, 'outcome' | 'code' | 'message'>;

/**
 * `knownHash`: the policy's hash as stored when it was set (policyHash of this very policy), so a
 * caller deciding many requests under one policy does not re-hash it each time (2/3 of a call).
 */
export function decide(
  policy: Policy,
  state: WalletState,
  request: PaymentRequest,
  knownHash?: string,
): Decision {
  return {
    ...judge(policy, state, request),
    policyHash: knownHash ?? policyHash(policy),
    dryRun: policy.mode === 'dry-run',
  };
}

function judge(policy: Policy, state: WalletState, request: PaymentRequest): Verdict {
  const paying = PAYMENT_METHODS.includes(request.method);
  if (paying && state.status === 'killed') {
    return deny('WALLET_KILLED', 'the wallet is killed: payments stay refused until the owner revives it');
  }
  // Any status other than active (an unknown one included) pauses payments.
  if (paying && state.status !== 'active') {
    return deny('WALLET_PAUSED', 'the wallet is paused: payments are refused until the owner resumes it');
  }
  if (!policy.methods.includes(request.method)) {
    return deny(
      'METHOD_NOT_ALLOWED',
      `method ${JSON.stringify(request.method)} is not allowed by the policy`,
    );
  }
  return paying ? judgePayment(policy, state, request) : ok('read allowed');
}

function judgePayment(policy: Policy, state: WalletState, request: PaymentRequest): Verdict {
  const { amountMsat } = request;
  if (!Number.isSafeInteger(amountMsat) || amountMsat <= 0) {
    return deny(
      'AMOUNT_INVALID',
      `amountMsat must be a positive whole number of msat, got ${String(amountMsat)}`,
    );
  }
  const payee = typeof request.payee === 'string' ? request.payee.toLowerCase() : null;
  if (payee !== null && policy.denyPayees?.includes(payee)) {
    return deny('PAYEE_DENIED', `payee ${payee} is on the deny list`);
  }
  if (policy.allowPayees !== undefined && (payee === null || !policy.allowPayees.includes(payee))) {
    // An allowlist means "only these": an invoice that names no payee cannot be on it.
    const who = payee === null ? 'an unknown payee' : `payee ${payee}`;
    return deny('PAYEE_NOT_ALLOWED', `${who} is not on the allow list`);
  }
  if (policy.maxPaymentMsat !== undefined && amountMsat > policy.maxPaymentMsat) {
    return deny(
      'OVER_PAYMENT_CAP',
      `${amountMsat} msat is over the per-payment cap of ${policy.maxPaymentMsat} msat`,
    );
  }
  for (const budget of policy.budgets) {
    const spentMsat = Object.hasOwn(state.spentByBudgetMsat, budget.id)
      ? state.spentByBudgetMsat[budget.id]
      : undefined;
    if (!isCount(spentMsat)) {
      return deny('OVER_BUDGET', `budget ${budget.id}: spend in the current period is unknown`);
    }
    // limit - spent, not spent + amount: the subtraction of two safe integers stays exact.
    if (amountMsat > budget.limitMsat - spentMsat) {
      const leftMsat = Math.max(0, budget.limitMsat - spentMsat);
      return deny(
        'OVER_BUDGET',
        `budget ${budget.id}: ${amountMsat} msat is over the ${leftMsat} msat left of ${budget.limitMsat} msat`,
      );
    }
  }
  const cooldown = checkCooldown(policy.cooldownS, state);
  if (cooldown) return cooldown;
  if (policy.maxPayments !== undefined) {
    const { count, windowS } = policy.maxPayments;
    if (!isCount(state.paymentsInWindow) || state.paymentsInWindow >= count) {
      return deny('TOO_MANY_PAYMENTS', `at most ${count} payments per ${windowS} s; the limit is reached`);
    }
  }
  if (!isCount(state.balanceMsat) || amountMsat > state.balanceMsat) {
    return deny(
      'INSUFFICIENT_BALANCE',
      `${amountMsat} msat is more than the balance of ${state.balanceMsat} msat`,
    );
  }
  // Approval lifts only this challenge, never a deny above.
  if (
    policy.approvalAboveMsat !== undefined &&
    amountMsat > policy.approvalAboveMsat &&
    request.approved !== true
  ) {
    return {
      outcome: 'challenge',
      code: 'APPROVAL_REQUIRED',
      message: `${amountMsat} msat is above ${policy.approvalAboveMsat} msat: the owner must approve payment ${request.paymentHash}`,
    };
  }
  return ok('payment allowed');
}

function checkCooldown(cooldownS: number | undefined, state: WalletState): Verdict | null {
  if (cooldownS === undefined || cooldownS === 0 || state.lastPaymentAtS === null) return null;
  if (!Number.isFinite(state.lastPaymentAtS) || !Number.isFinite(state.nowS)) {
    return deny('COOLDOWN', 'the time of the last payment is unknown');
  }
  const remainingS = Math.ceil(state.lastPaymentAtS + cooldownS - state.nowS);
  if (remainingS <= 0) return null;
  return deny('COOLDOWN', `cooldown: ${remainingS} s remain before the next payment`);
}

/** sha256 hex of the policy's canonical JSON; names the exact policy a decision was made under. */
export function policyHash(policy: Policy): string {
  return createHash('sha256').update(canonicalJson(policy)).digest('hex');
}

/** JSON with object keys sorted at every depth, arrays in order, undefined properties left out. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const record = value as Record<string, unknown>;
    const fields = Object.keys(record)
      .filter((key) => record[key] !== undefined)
      .sort()
      .map((key) => `${JSON.stringify(key)}:${canonicalJson(record[key])}`);
    return `{${fields.join(',')}}`;
  }
  if (typeof value === 'number' && !Number.isFinite(value))
    throw new TypeError('canonicalJson: non-finite number');
  const text = JSON.stringify(value);
  if (text === undefined) throw new TypeError(`canonicalJson: cannot encode ${typeof value}`);
  return text;
}

function isCount(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function deny(code: ReasonCode, message: string): Verdict {
  return { outcome: 'deny', code, message };
}

function ok(message: string): Verdict {
  return { outcome: 'allow', code: 'OK', message };
}
