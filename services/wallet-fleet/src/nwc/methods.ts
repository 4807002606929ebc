// One handler per NIP-47 method, over the fleet and its payments. Each returns a NIP-47 result or
// throws NwcError with a NIP-47 error code; params are parsed with zod (unknown keys are ignored, as
// clients send extras such as metadata).
import { decodeInvoice } from '@fed-ai/lightning';
import { z } from 'zod';
import { WF_ACCOUNTS } from '../accounts';
import type { Fleet, WalletRow } from '../fleet';
import type { Payments, PayOutcome } from '../payments';
import { periodBounds } from '../periods';
import { decide, METHODS, type Method } from '../policy';
import {
  type InvoiceRowForNwc,
  incomingTransaction,
  outgoingTransaction,
  type PaymentRowForNwc,
} from './transactions';

const NWC_ERROR_CODES = [
  'RATE_LIMITED',
  'NOT_IMPLEMENTED',
  'INSUFFICIENT_BALANCE',
  'QUOTA_EXCEEDED',
  'RESTRICTED',
  'UNAUTHORIZED',
  'INTERNAL',
  'UNSUPPORTED_ENCRYPTION',
  'PAYMENT_FAILED',
  'NOT_FOUND',
  'OTHER',
] as const;
export type NwcErrorCode = (typeof NWC_ERROR_CODES)[number];

export class NwcError extends Error {
  constructor(
    readonly code: NwcErrorCode,
    message: string,
  ) {
    super(message);
  }
}

export const NOTIFICATION_TYPES = ['payment_received', 'payment_sent'] as const;

export interface MethodContext {
  fleet: Fleet;
  payments: Payments;
  wallet: WalletRow;
  clientPubkey: string;
  servicePubkey: string;
  network: string;
  /** A request run again after a crash: a payment that already started answers its outcome. */
  rerun?: boolean;
  /** Called after a payment succeeded (payment_sent notification). */
  onPaid?: (walletId: string, paymentHash: string) => void;
}

const hash64 = z.string().regex(/^[0-9a-f]{64}$/);
const paramsSchemas = {
  pay_invoice: z.object({
    invoice: z.string().min(10).max(4096),
    amount: z.number().int().positive().optional(),
  }),
  make_invoice: z.object({
    amount: z.number().int().min(1000).max(100_000_000_000),
    description: z.string().max(640).optional(),
    expiry: z
      .number()
      .int()
      .min(60)
      .max(7 * 86400)
      .optional(),
  }),
  lookup_invoice: z
    .object({ payment_hash: hash64.optional(), invoice: z.string().max(4096).optional() })
    .refine((p) => p.payment_hash || p.invoice, 'payment_hash or invoice is required'),
  list_transactions: z.object({
    from: z.number().int().min(0).optional(),
    until: z.number().int().min(0).optional(),
    limit: z.number().int().min(1).max(100).optional(),
    offset: z.number().int().min(0).max(100_000).optional(),
    unpaid: z.boolean().optional(),
    type: z.enum(['incoming', 'outgoing']).optional(),
  }),
  get_balance: z.object({}),
  get_info: z.object({}),
  get_budget: z.object({}),
} satisfies Record<Method, z.ZodType>;

export async function runMethod(ctx: MethodContext, method: string, params: unknown): Promise<unknown> {
  // NIP-47's own code for a method this wallet service does not offer (pay_keysend, hold invoices,
  // sign_message…): the info event lists the ones it does.
  if (!(METHODS as readonly string[]).includes(method))
    throw new NwcError('NOT_IMPLEMENTED', `method ${JSON.stringify(method.slice(0, 64))} is not implemented`);
  const m = method as Method;
  const parsed = paramsSchemas[m].safeParse(params ?? {});
  if (!parsed.success)
    throw new NwcError('OTHER', `bad params for ${m}: ${parsed.error.issues[0]?.message ?? 'invalid'}`);
  if (m !== 'pay_invoice') checkReadAllowed(ctx, m);
  switch (m) {
    case 'get_info':
      return getInfo(ctx);
    case 'get_balance':
      return { balance: await ctx.fleet.balanceMsat(WF_ACCOUNTS.wallet(ctx.wallet.id)) };
    case 'get_budget':
      return getBudget(ctx);
    case 'make_invoice':
      return makeInvoice(ctx, parsed.data as z.infer<(typeof paramsSchemas)['make_invoice']>);
    case 'pay_invoice':
      return payInvoice(ctx, parsed.data as z.infer<(typeof paramsSchemas)['pay_invoice']>);
    case 'lookup_invoice':
      return lookupInvoice(ctx, parsed.data as z.infer<(typeof paramsSchemas)['lookup_invoice']>);
    case 'list_transactions':
      return listTransactions(ctx, parsed.data as z.infer<(typeof paramsSchemas)['list_transactions']>);
  }
}

/** Methods that do not pay still go through the policy (its method list). */
function checkReadAllowed(ctx: MethodContext, method: Method): void {
  const decision = decide(
    ctx.wallet.policy,
    {
      nowS: ctx.fleet.nowS(),
      lastPaymentAtS: null,
      paymentsInWindow: 0,
      spentByBudgetMsat: {},
      balanceMsat: 0,
      status: ctx.wallet.status,
    },
    { method, amountMsat: 0, payee: null, paymentHash: '', approved: false },
  );
  if (decision.outcome !== 'allow') throw new NwcError('RESTRICTED', decision.message);
}

function getInfo(ctx: MethodContext) {
  return {
    alias: 'fed-ai wallet fleet',
    color: '#7b3fe4',
    pubkey: ctx.servicePubkey,
    network: ctx.network,
    block_height: 0,
    block_hash: '0'.repeat(64),
    methods: ctx.wallet.policy.methods,
    notifications: [...NOTIFICATION_TYPES],
  };
}

async function getBudget(ctx: MethodContext) {
  // NIP-47 get_budget has one budget: report the first calendar one (the others still apply).
  const budget = ctx.wallet.policy.budgets.find((b) => b.period.kind === 'calendar');
  if (budget?.period.kind !== 'calendar') return {};
  const nowS = ctx.fleet.nowS();
  const bounds = periodBounds(budget.period, nowS);
  const rows = await ctx.fleet.db.query<{ total: string | null }>(
    `SELECT sum(amount_msat + COALESCE(fee_msat, max_fee_msat)) AS total FROM wf_payments
     WHERE wallet_id = $1 AND state IN ('sending', 'succeeded') AND created_at_s >= $2 AND created_at_s < $3`,
    [ctx.wallet.id, bounds.startS, bounds.endS],
  );
  const renewal = { day: 'daily', week: 'weekly', month: 'monthly' }[budget.period.unit];
  return {
    used_budget: Number(rows.rows[0]?.total ?? 0),
    total_budget: budget.limitMsat,
    renews_at: bounds.endS,
    renewal_period: renewal,
  };
}

async function makeInvoice(
  ctx: MethodContext,
  p: { amount: number; description?: string | undefined; expiry?: number | undefined },
) {
  const description = p.description ?? '';
  const invoice = await ctx.fleet.makeInvoice(ctx.wallet.owner, ctx.wallet.id, {
    amountMsat: p.amount,
    description,
    expirySeconds: p.expiry ?? 3600,
  });
  return incomingTransaction(
    {
      payment_hash: invoice.paymentHash,
      bolt11: invoice.bolt11,
      amount_msat: invoice.amountMsat,
      description,
      created_at_s: invoice.createdAtS,
      expires_at_s: invoice.expiresAtS,
      settled_at_s: null,
      preimage: null,
    },
    ctx.fleet.nowS(),
  );
}

async function payInvoice(ctx: MethodContext, p: { invoice: string; amount?: number | undefined }) {
  const outcome = await ctx.payments.pay(ctx.wallet.id, p.invoice, ctx.clientPubkey, {
    rerun: ctx.rerun === true,
  });
  if (outcome.kind === 'paid') {
    if (p.amount !== undefined && p.amount !== outcome.amountMsat) {
      // Cannot happen for invoices with an amount (the only ones paid); kept as a guard.
      throw new NwcError('OTHER', 'the amount does not match the invoice');
    }
    ctx.onPaid?.(ctx.wallet.id, outcome.paymentHash);
    return { preimage: outcome.preimage, fees_paid: outcome.feeMsat };
  }
  throw payError(outcome);
}

/** How a refused payment reads to an NWC client: a NIP-47 code, and our reason in the message. */
function payError(outcome: Exclude<PayOutcome, { kind: 'paid' }>): NwcError {
  switch (outcome.kind) {
    case 'denied': {
      const code = outcome.decision.code;
      const nwc: NwcErrorCode =
        code === 'INSUFFICIENT_BALANCE'
          ? 'INSUFFICIENT_BALANCE'
          : ['OVER_BUDGET', 'OVER_PAYMENT_CAP', 'TOO_MANY_PAYMENTS', 'COOLDOWN'].includes(code)
            ? 'QUOTA_EXCEEDED'
            : 'RESTRICTED';
      return new NwcError(nwc, `${code}: ${outcome.decision.message}`);
    }
    case 'challenged':
      return new NwcError(
        'RESTRICTED',
        `APPROVAL_REQUIRED: approval id ${outcome.approvalId}; the owner must approve it (fedai wallet approve ${outcome.approvalId}), then pay the same invoice again`,
      );
    case 'dry-run':
      return new NwcError(
        'OTHER',
        `DRY_RUN: the policy allowed this payment (${outcome.decision.code}) but the wallet is in dry-run mode; no payment was made`,
      );
    case 'failed':
      return new NwcError('PAYMENT_FAILED', outcome.message);
    case 'pending':
      return new NwcError(
        'OTHER',
        `PAYMENT_PENDING: the outcome of ${outcome.paymentHash} is not known yet; look it up later`,
      );
    case 'refused':
      return new NwcError(
        outcome.code === 'INVOICE_EXPIRED' || outcome.code === 'INVALID_INVOICE' ? 'OTHER' : 'PAYMENT_FAILED',
        `${outcome.code}: ${outcome.message}`,
      );
  }
}

async function lookupInvoice(
  ctx: MethodContext,
  p: { payment_hash?: string | undefined; invoice?: string | undefined },
) {
  let hash = p.payment_hash;
  if (!hash && p.invoice) {
    try {
      hash = decodeInvoice(p.invoice).paymentHash;
    } catch {
      throw new NwcError('NOT_FOUND', 'not a BOLT11 invoice');
    }
  }
  const incoming = await ctx.fleet.db.query<InvoiceRowForNwc>(
    'SELECT * FROM wf_invoices WHERE payment_hash = $1 AND wallet_id = $2',
    [hash, ctx.wallet.id],
  );
  if (incoming.rows[0]) return incomingTransaction(incoming.rows[0], ctx.fleet.nowS());
  const outgoing = await ctx.fleet.db.query<PaymentRowForNwc>(
    'SELECT * FROM wf_payments WHERE payment_hash = $1 AND wallet_id = $2',
    [hash, ctx.wallet.id],
  );
  if (outgoing.rows[0]) return outgoingTransaction(outgoing.rows[0]);
  throw new NwcError('NOT_FOUND', 'no invoice or payment of this wallet has that payment hash');
}

async function listTransactions(
  ctx: MethodContext,
  p: {
    from?: number | undefined;
    until?: number | undefined;
    limit?: number | undefined;
    offset?: number | undefined;
    unpaid?: boolean | undefined;
    type?: 'incoming' | 'outgoing' | undefined;
  },
) {
  const from = p.from ?? 0;
  const until = p.until ?? ctx.fleet.nowS();
  const limit = p.limit ?? 50;
  const offset = p.offset ?? 0;
  const take = limit + offset; // bounded: at most 100 + 100,000 rows per kind
  const nowS = ctx.fleet.nowS();
  const items = [];
  if (p.type !== 'outgoing') {
    const rows = await ctx.fleet.db.query<InvoiceRowForNwc>(
      `SELECT * FROM wf_invoices WHERE wallet_id = $1 AND created_at_s >= $2 AND created_at_s <= $3
       ${p.unpaid ? '' : 'AND settled_at_s IS NOT NULL'} ORDER BY created_at_s DESC LIMIT $4`,
      [ctx.wallet.id, from, until, take],
    );
    items.push(...rows.rows.map((r) => incomingTransaction(r, nowS)));
  }
  if (p.type !== 'incoming') {
    const rows = await ctx.fleet.db.query<PaymentRowForNwc>(
      `SELECT * FROM wf_payments WHERE wallet_id = $1 AND created_at_s >= $2 AND created_at_s <= $3
       ORDER BY created_at_s DESC LIMIT $4`,
      [ctx.wallet.id, from, until, take],
    );
    items.push(...rows.rows.map(outgoingTransaction));
  }
  items.sort((a, b) => b.created_at - a.created_at || a.payment_hash.localeCompare(b.payment_hash));
  return { transactions: items.slice(offset, offset + limit) };
}
