// A Lightning backend that is an account at a fed-ai settlement service (`/v1/account/*`), the way
// an LNbits wallet lives on an LNbits server: invoices of this network settle internally through
// settlement's books, and (later) external invoices go out through settlement's own Lightning
// backend. Stateless: every call is one NIP-98 signed request, its answer checked with zod.
//
// Whoever uses it keeps its own invoice and payment state and asks `lookupPayment` after an
// outcome it could not learn (a thrown LightningPaymentError with `definite` false).
import { createNip98Header } from '@fed-ai/protocol';
import { request } from 'undici';
import { z } from 'zod';
import {
  type CreateInvoiceInput,
  type Invoice,
  type LightningBackend,
  LightningPaymentError,
  type PaymentFailureCode,
  type PaymentResult,
  type PaymentStatus,
} from './backend';
import { decodeInvoice, sha256Hex } from './bolt11';

export interface SettlementAccountOptions {
  /** The settlement service's base URL (as it verifies NIP-98: its public URL, or host and port). */
  url: string;
  /** This account's key: one of settlement's SETTLEMENT_WALLET_PUBKEYS. */
  secretKey: Uint8Array;
  timeoutMs?: number;
}

const MAX_LISTENERS = 64;
const MAX_ANSWER_BYTES = 64 * 1024;

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const msat = z.number().int().nonnegative();
const timeS = z.number().int().nonnegative();

const createdAnswer = z.object({
  payment_hash: hex64,
  bolt11: z.string().min(1).max(4096),
  amount_msat: msat,
  description: z.string().max(4096),
  created_at: timeS,
  expires_at: timeS,
});
const invoiceAnswer = createdAnswer.extend({
  state: z.enum(['open', 'settled', 'expired']),
  preimage: hex64.nullable(),
  settled_at: timeS.nullable(),
});
const paymentAnswer = z.object({
  payment_hash: hex64,
  state: z.enum(['succeeded', 'pending']),
  preimage: hex64.nullable(),
  amount_msat: msat,
  fee_msat: msat.nullable(),
});
const paymentStatusAnswer = z.object({
  payment_hash: hex64,
  state: z.enum(['succeeded', 'failed', 'pending', 'unknown']),
  preimage: hex64.nullable(),
  amount_msat: msat.nullable(),
  fee_msat: msat.nullable(),
  failure_code: z.string().max(64).nullable(),
});
const errorAnswer = z.object({
  error: z.object({
    code: z.string().max(64),
    message: z.string().max(1000).optional(),
    details: z.record(z.string(), z.unknown()).optional(),
  }),
});

const FAILURE_CODES: readonly PaymentFailureCode[] = [
  'INVOICE_NOT_FOUND',
  'INVOICE_EXPIRED',
  'ALREADY_PAID',
  'NO_ROUTE',
  'FEE_TOO_HIGH',
  'INSUFFICIENT_BALANCE',
  'BACKEND_ERROR',
];

/** A failure code as settlement records it (it also knows `NOT_SENT`) in this interface's terms. */
function failureCode(code: unknown): PaymentFailureCode {
  return typeof code === 'string' && (FAILURE_CODES as readonly string[]).includes(code)
    ? (code as PaymentFailureCode)
    : 'BACKEND_ERROR';
}

/** A refusal or failure of a call other than a payment: the status and settlement's reason code. */
export class SettlementAccountError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'SettlementAccountError';
  }
}

interface Answer {
  status: number;
  body: unknown;
}

export class SettlementAccountBackend implements LightningBackend {
  readonly name = 'settlement' as const;
  private readonly base: string;
  private readonly secretKey: Uint8Array;
  private readonly timeoutMs: number;
  private readonly listeners = new Set<(invoice: Invoice) => void>();

  constructor(options: SettlementAccountOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.secretKey = options.secretKey;
    this.timeoutMs = options.timeoutMs ?? 10_000;
  }

  /** One signed call. Throws only for transport failures (no answer), naming the path alone. */
  private async call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const url = `${this.base}${path}`;
    try {
      const response = await request(url, {
        method,
        headers: {
          authorization: createNip98Header(url, method, text, this.secretKey),
          ...(text === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(text === undefined ? {} : { body: text }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
      const raw = await response.body.text();
      let parsed: unknown = null;
      if (raw.length <= MAX_ANSWER_BYTES) {
        try {
          parsed = JSON.parse(raw);
        } catch {
          parsed = null;
        }
      }
      return { status: response.statusCode, body: parsed };
    } catch (error) {
      // The transport's own message names the address; only its code travels.
      const code = (error as { code?: unknown; name?: unknown }).code ?? (error as { name?: unknown }).name;
      throw new SettlementAccountError(
        0,
        'SETTLEMENT_UNAVAILABLE',
        `settlement account: ${method} ${path} got no answer (${typeof code === 'string' ? code : 'error'})`,
      );
    }
  }

  private refusal(method: string, path: string, answer: Answer): SettlementAccountError {
    const error = errorAnswer.safeParse(answer.body);
    const code = error.success ? error.data.error.code : 'UNREADABLE';
    const message = error.success && error.data.error.message ? `: ${error.data.error.message}` : '';
    return new SettlementAccountError(
      answer.status,
      code,
      `settlement account: ${method} ${path} answered ${answer.status} ${code}${message}`,
    );
  }

  async createInvoice(input: CreateInvoiceInput): Promise<Invoice> {
    const path = '/v1/account/invoices';
    const answer = await this.call('POST', path, {
      amount_msat: input.amountMsat,
      description: input.description,
      expiry_s: input.expirySeconds,
    });
    if (answer.status !== 200) throw this.refusal('POST', path, answer);
    const created = createdAnswer.safeParse(answer.body);
    if (!created.success) throw this.unreadable('POST', path);
    const c = created.data;
    return {
      paymentHash: c.payment_hash,
      bolt11: c.bolt11,
      amountMsat: c.amount_msat,
      description: c.description,
      createdAtS: c.created_at,
      expiresAtS: c.expires_at,
      state: 'open',
    };
  }

  async lookupInvoice(paymentHash: string): Promise<Invoice | null> {
    const path = `/v1/account/invoices/${encodeURIComponent(paymentHash)}`;
    const answer = await this.call('GET', path);
    if (answer.status === 404) return null;
    if (answer.status !== 200) throw this.refusal('GET', path, answer);
    const parsed = invoiceAnswer.safeParse(answer.body);
    if (!parsed.success) throw this.unreadable('GET', path);
    const i = parsed.data;
    if (i.payment_hash !== paymentHash.toLowerCase()) throw this.unreadable('GET', path);
    if (i.state === 'settled' && (i.preimage === null || sha256Hex(i.preimage) !== i.payment_hash))
      throw new SettlementAccountError(
        200,
        'BAD_PREIMAGE',
        `settlement account: GET ${path}: the preimage does not hash to the payment hash`,
      );
    return {
      paymentHash: i.payment_hash,
      bolt11: i.bolt11,
      amountMsat: i.amount_msat,
      description: i.description,
      createdAtS: i.created_at,
      expiresAtS: i.expires_at,
      state: i.state,
      preimage: i.state === 'settled' ? (i.preimage ?? undefined) : undefined,
      settledAtS: i.settled_at ?? undefined,
    };
  }

  /**
   * Pays from the account. Settlement pays an invoice once per payment hash and answers a retry
   * of this account with that payment's outcome, so calling again after an unknown outcome is
   * safe. Throws LightningPaymentError: `definite` when settlement refused before holding
   * anything or voided its hold; not definite when the outcome is unknown (no answer, a 5xx, an
   * unreadable answer, a payment still pending): ask `lookupPayment` later.
   */
  async payInvoice(bolt11: string, options: { maxFeeMsat: number }): Promise<PaymentResult> {
    let expectedHash: string;
    try {
      expectedHash = decodeInvoice(bolt11).paymentHash;
    } catch (error) {
      throw new LightningPaymentError(
        'INVOICE_NOT_FOUND',
        `not a BOLT11 invoice: ${(error as Error).message}`,
        true,
      );
    }
    const path = '/v1/account/payments';
    let answer: Answer;
    try {
      answer = await this.call('POST', path, { bolt11: bolt11.trim(), max_fee_msat: options.maxFeeMsat });
    } catch (error) {
      throw new LightningPaymentError('BACKEND_ERROR', (error as Error).message, false);
    }
    if (answer.status !== 200) throw paymentRefusal(path, answer);
    const parsed = paymentAnswer.safeParse(answer.body);
    const unknown = (why: string) =>
      new LightningPaymentError('BACKEND_ERROR', `settlement account: POST ${path}: ${why}`, false);
    if (!parsed.success) throw unknown('unreadable answer (the outcome is unknown)');
    const p = parsed.data;
    if (p.payment_hash !== expectedHash) throw unknown('the answer is about another payment hash');
    if (p.state === 'pending') throw unknown('the payment is pending; look it up later');
    if (p.preimage === null || sha256Hex(p.preimage) !== p.payment_hash)
      throw unknown('the preimage does not hash to the payment hash');
    return {
      paymentHash: p.payment_hash,
      preimage: p.preimage,
      amountMsat: p.amount_msat,
      feeMsat: p.fee_msat ?? 0,
    };
  }

  async lookupPayment(paymentHash: string): Promise<PaymentStatus> {
    const path = `/v1/account/payments/${encodeURIComponent(paymentHash)}`;
    const answer = await this.call('GET', path);
    if (answer.status !== 200) throw this.refusal('GET', path, answer);
    const parsed = paymentStatusAnswer.safeParse(answer.body);
    if (!parsed.success || parsed.data.payment_hash !== paymentHash.toLowerCase())
      throw this.unreadable('GET', path);
    const p = parsed.data;
    if (p.state === 'succeeded') {
      if (p.preimage === null || sha256Hex(p.preimage) !== p.payment_hash || p.amount_msat === null)
        throw this.unreadable('GET', path);
      return {
        state: 'succeeded',
        paymentHash: p.payment_hash,
        preimage: p.preimage,
        amountMsat: p.amount_msat,
        feeMsat: p.fee_msat ?? 0,
      };
    }
    if (p.state === 'failed')
      return { state: 'failed', paymentHash: p.payment_hash, code: failureCode(p.failure_code) };
    return { state: p.state, paymentHash: p.payment_hash };
  }

  /**
   * Settlement has no push channel for accounts yet: listeners are kept (bounded) but never
   * called. Callers poll `lookupInvoice` for the invoices they wait on.
   */
  onSettled(listener: (invoice: Invoice) => void): () => void {
    if (this.listeners.size >= MAX_LISTENERS) throw new RangeError(`more than ${MAX_LISTENERS} listeners`);
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private unreadable(method: string, path: string): SettlementAccountError {
    return new SettlementAccountError(
      200,
      'UNREADABLE',
      `settlement account: ${method} ${path} gave an unreadable answer`,
    );
  }
}

/** Settlement's refusal of a payment, as a LightningPaymentError (see payInvoice for `definite`). */
function paymentRefusal(path: string, answer: Answer): LightningPaymentError {
  const parsed = errorAnswer.safeParse(answer.body);
  const reason = parsed.success ? parsed.data.error.code : 'UNREADABLE';
  const message = `settlement account: POST ${path} answered ${answer.status} ${reason}${
    parsed.success && parsed.data.error.message ? `: ${parsed.data.error.message}` : ''
  }`;
  // A failed payment: settlement voided its hold and names the Lightning failure.
  const lightningCode = parsed.success ? parsed.data.error.details?.lightning_code : undefined;
  if (typeof lightningCode === 'string')
    return new LightningPaymentError(failureCode(lightningCode), message, true);
  if (reason === 'INSUFFICIENT_BALANCE')
    return new LightningPaymentError('INSUFFICIENT_BALANCE', message, true);
  if (reason === 'ALREADY_PAID' || reason === 'IDEMPOTENCY_CONFLICT')
    return new LightningPaymentError('ALREADY_PAID', message, true);
  if (reason === 'INVOICE_NOT_FOUND') return new LightningPaymentError('INVOICE_NOT_FOUND', message, true);
  if (reason === 'INVOICE_EXPIRED') return new LightningPaymentError('INVOICE_EXPIRED', message, true);
  // The ledger refused a step that may come after the payment left: unknown.
  if (reason === 'LEDGER_REJECTED') return new LightningPaymentError('BACKEND_ERROR', message, false);
  // Other refusals (auth, a bad request, overload) come before anything is held.
  const definite = parsed.success && answer.status >= 400 && answer.status < 500;
  return new LightningPaymentError('BACKEND_ERROR', message, definite);
}
