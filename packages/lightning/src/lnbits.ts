// A Lightning backend that is one LNbits wallet, over LNbits' REST API (`/api/v1/payments`,
// `/api/v1/wallet`, header `X-Api-Key`). The same adapter talks to a real LNbits server in
// production and to the devnet stand-in (`services/lightning-devnet`) on local networks.
//
// Units: LNbits takes an invoice's `amount` in sat and answers balances and payment details
// (`amount`, `fee`) in msat. An invoice amount that is not a whole number of sat is refused, never
// rounded. Stateless apart from the invoices it waits on for `onSettled` (bounded): whoever uses
// it keeps its own invoice and payment state and asks `lookupPayment` after an unknown outcome.

import { FedAiError } from '@fed-ai/protocol';
import bolt11 from 'bolt11';
import { request } from 'undici';
import { z } from 'zod';
import {
  type CreateInvoiceInput,
  type Invoice,
  type LightningBackend,
  LightningPaymentError,
  type PaymentResult,
  type PaymentStatus,
  paymentResultOf,
} from './backend';
import { decodeInvoice, REGTEST, sha256Hex } from './bolt11';
import { InvoiceWatcher } from './invoice-watcher';

export interface LnbitsOptions {
  /** The LNbits server's base URL (without `/api/v1`). */
  url: string;
  /** The wallet's admin key (may pay) or invoice key (may only create and read invoices). */
  apiKey: string;
  timeoutMs?: number;
  /** How often `onSettled` asks about the open invoices this adapter created. */
  pollIntervalMs?: number;
  /** Most open invoices remembered for `onSettled` (the oldest are forgotten first). */
  maxWatchedInvoices?: number;
  nowS?: () => number;
}

const MAX_ANSWER_BYTES = 256 * 1024;
const MSAT_PER_SAT = 1000;

const hex64 = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/)
  .transform((s) => s.toLowerCase());
const bolt11Text = z.string().min(10).max(8192);
/** LNbits' time fields are unix seconds in older versions and ISO strings in newer ones. */
const timeField = z.union([z.number(), z.string().max(64)]).nullish();

const createdAnswer = z.object({
  payment_hash: hex64,
  // Newer LNbits versions answer `bolt11` too; older ones only `payment_request`.
  payment_request: bolt11Text.optional(),
  bolt11: bolt11Text.optional(),
  checking_id: z.string().max(200).optional(),
});
const paidAnswer = z.object({ payment_hash: hex64, checking_id: z.string().max(200).optional() });
const paymentAnswer = z.object({
  paid: z.boolean(),
  status: z.string().max(32).optional(),
  preimage: z.string().max(128).nullish(),
  details: z
    .object({
      amount: z.number().int().refine(Number.isSafeInteger),
      fee: z.number().int().refine(Number.isSafeInteger).nullish(),
      bolt11: bolt11Text,
      memo: z.string().max(4096).nullish(),
      time: timeField,
      expiry: timeField,
      payment_hash: hex64.optional(),
      status: z.string().max(32).optional(),
    })
    .optional(),
});
const walletAnswer = z.object({
  name: z.string().max(1000),
  balance: z.number().int().refine(Number.isSafeInteger),
});
const errorAnswer = z.object({
  // FastAPI's validation errors carry a list; everything else a sentence.
  detail: z.union([z.string().max(2000), z.array(z.unknown()).max(100)]),
});

/** A refusal or failure of a call other than a payment: the HTTP status and LNbits' words. */
export class LnbitsError extends Error {
  constructor(
    /** 0: no answer (unreachable, timed out). */
    readonly status: number,
    message: string,
  ) {
    super(message);
    this.name = 'LnbitsError';
  }
}

interface Answer {
  status: number;
  body: unknown;
}

/** The BOLT11 fields LNbits does not answer directly: creation time and expiry, in seconds. */
function invoiceTimes(paymentRequest: string): { createdAtS: number; expiresAtS: number } {
  const text = paymentRequest.trim().toLowerCase();
  const decoded = bolt11.decode(text, text.startsWith('lnbcrt') ? REGTEST : undefined);
  const createdAtS = decoded.timestamp ?? 0;
  const expire = decoded.tags.find((t) => t.tagName === 'expire_time')?.data;
  return { createdAtS, expiresAtS: createdAtS + (typeof expire === 'number' ? expire : 3600) };
}

function detailText(body: unknown): string {
  const parsed = errorAnswer.safeParse(body);
  if (!parsed.success) return 'unreadable error';
  return typeof parsed.data.detail === 'string' ? parsed.data.detail : 'invalid request';
}

export class LnbitsBackend implements LightningBackend {
  readonly name = 'lnbits' as const;
  private readonly base: string;
  private readonly apiKey: string;
  private readonly timeoutMs: number;
  private readonly watcher: InvoiceWatcher;
  private readonly nowS: () => number;
  /** Open invoices this adapter created, by payment hash (insertion order: oldest first). */

  constructor(options: LnbitsOptions) {
    this.base = options.url.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
    this.watcher = new InvoiceWatcher({
      lookup: (hash) => this.lookupInvoice(hash),
      pollIntervalMs: options.pollIntervalMs ?? 2_000,
      maxWatched: options.maxWatchedInvoices ?? 1_000,
      nowS: this.nowS,
    });
  }

  /** One call. Throws LnbitsError (status 0) only when no answer came (the key never appears). */
  private async call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> {
    const text = body === undefined ? undefined : JSON.stringify(body);
    try {
      const response = await request(`${this.base}${path}`, {
        method,
        headers: {
          'x-api-key': this.apiKey,
          accept: 'application/json',
          ...(text === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(text === undefined ? {} : { body: text }),
        signal: AbortSignal.timeout(this.timeoutMs),
        headersTimeout: this.timeoutMs,
        bodyTimeout: this.timeoutMs,
      });
      // Read at most MAX_ANSWER_BYTES: a larger answer is unreadable (and not held in memory).
      const chunks: Buffer[] = [];
      let size = 0;
      for await (const chunk of response.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_ANSWER_BYTES) {
          response.body.destroy();
          return { status: response.statusCode, body: null };
        }
        chunks.push(chunk as Buffer);
      }
      let parsed: unknown = null;
      try {
        parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      } catch {
        parsed = null;
      }
      return { status: response.statusCode, body: parsed };
    } catch (error) {
      const code = (error as { code?: unknown }).code ?? (error as { name?: unknown }).name;
      throw new LnbitsError(
        0,
        `lnbits: ${method} ${path} got no answer (${typeof code === 'string' ? code : 'error'})`,
      );
    }
  }

  private refusal(method: string, path: string, answer: Answer): LnbitsError {
    return new LnbitsError(
      answer.status,
      `lnbits: ${method} ${path} answered ${answer.status}: ${detailText(answer.body)}`,
    );
  }

  private unreadable(method: string, path: string, why = 'an unreadable answer'): LnbitsError {
    return new LnbitsError(200, `lnbits: ${method} ${path} gave ${why}`);
  }

  /** The wallet's balance in msat (LNbits answers msat). */
  async balanceMsat(): Promise<number> {
    const path = '/api/v1/wallet';
    const answer = await this.call('GET', path);
    if (answer.status !== 200) throw this.refusal('GET', path, answer);
    const parsed = walletAnswer.safeParse(answer.body);
    if (!parsed.success) throw this.unreadable('GET', path);
    return parsed.data.balance;
  }

  async createInvoice(input: CreateInvoiceInput): Promise<Invoice> {
    if (!Number.isSafeInteger(input.amountMsat) || input.amountMsat <= 0)
      throw new FedAiError('INVALID_REQUEST', `amount_msat must be a positive integer (${input.amountMsat})`);
    if (input.amountMsat % MSAT_PER_SAT !== 0)
      throw new FedAiError(
        'INVALID_REQUEST',
        `LNbits invoices are in whole sat: ${input.amountMsat} msat is not a multiple of 1000 (nothing is rounded)`,
      );
    const path = '/api/v1/payments';
    const answer = await this.call('POST', path, {
      out: false,
      amount: input.amountMsat / MSAT_PER_SAT,
      unit: 'sat',
      memo: input.description,
      expiry: input.expirySeconds,
    });
    if (answer.status !== 201 && answer.status !== 200) throw this.refusal('POST', path, answer);
    const parsed = createdAnswer.safeParse(answer.body);
    const paymentRequest = parsed.success ? (parsed.data.payment_request ?? parsed.data.bolt11) : undefined;
    if (!parsed.success || !paymentRequest) throw this.unreadable('POST', path);
    // The invoice itself is the truth: its hash, amount and expiry must be what was asked for.
    let decoded: ReturnType<typeof decodeInvoice>;
    let times: { createdAtS: number; expiresAtS: number };
    try {
      decoded = decodeInvoice(paymentRequest);
      times = invoiceTimes(paymentRequest);
    } catch {
      throw this.unreadable('POST', path, 'an invoice that does not decode');
    }
    if (decoded.paymentHash !== parsed.data.payment_hash)
      throw this.unreadable('POST', path, 'an invoice of another payment hash');
    if (decoded.amountMsat !== input.amountMsat)
      throw this.unreadable(
        'POST',
        path,
        `an invoice of ${decoded.amountMsat} msat, not ${input.amountMsat}`,
      );
    if (times.expiresAtS - times.createdAtS !== input.expirySeconds)
      throw this.unreadable('POST', path, 'an invoice with another expiry');
    this.watcher.watch(decoded.paymentHash, times.expiresAtS);
    return {
      paymentHash: decoded.paymentHash,
      bolt11: paymentRequest,
      amountMsat: decoded.amountMsat,
      description: decoded.description,
      createdAtS: times.createdAtS,
      expiresAtS: times.expiresAtS,
      state: 'open',
    };
  }

  /** LNbits' record of `paymentHash` for this wallet; null when it has none. */
  private async payment(paymentHash: string): Promise<z.infer<typeof paymentAnswer> | null> {
    if (!/^[0-9a-fA-F]{64}$/.test(paymentHash)) return null;
    const path = `/api/v1/payments/${paymentHash.toLowerCase()}`;
    const answer = await this.call('GET', path);
    if (answer.status === 404) return null;
    if (answer.status !== 200) throw this.refusal('GET', path, answer);
    const parsed = paymentAnswer.safeParse(answer.body);
    if (!parsed.success) throw this.unreadable('GET', '/api/v1/payments/:hash');
    // Without details the payment is another wallet's (LNbits shows details to its owner only).
    if (!parsed.data.details) return null;
    return parsed.data;
  }

  /** The preimage LNbits gave for a paid payment, checked against the hash; throws otherwise. */
  private checkedPreimage(paymentHash: string, preimage: string | null | undefined): string {
    const hash = paymentHash.toLowerCase();
    if (typeof preimage !== 'string' || !/^[0-9a-fA-F]{64}$/.test(preimage) || sha256Hex(preimage) !== hash)
      throw this.unreadable(
        'GET',
        '/api/v1/payments/:hash',
        'a preimage that does not hash to the payment hash',
      );
    return preimage.toLowerCase();
  }

  async lookupInvoice(paymentHash: string): Promise<Invoice | null> {
    const found = await this.payment(paymentHash);
    const details = found?.details;
    if (!found || !details || details.amount <= 0) return null;
    let times: { createdAtS: number; expiresAtS: number };
    let decoded: ReturnType<typeof decodeInvoice>;
    try {
      decoded = decodeInvoice(details.bolt11);
      times = invoiceTimes(details.bolt11);
    } catch {
      throw this.unreadable('GET', '/api/v1/payments/:hash', 'an invoice that does not decode');
    }
    if (decoded.paymentHash !== paymentHash.toLowerCase() || decoded.amountMsat !== details.amount)
      throw this.unreadable('GET', '/api/v1/payments/:hash', 'details that do not match the invoice');
    const settled = found.paid;
    return {
      paymentHash: decoded.paymentHash,
      bolt11: details.bolt11,
      amountMsat: details.amount,
      description: details.memo ?? decoded.description,
      createdAtS: times.createdAtS,
      expiresAtS: times.expiresAtS,
      state: settled ? 'settled' : this.nowS() >= times.expiresAtS ? 'expired' : 'open',
      preimage: settled ? this.checkedPreimage(paymentHash, found.preimage) : undefined,
    };
  }

  /**
   * Pays from the wallet (admin key). Idempotent by payment hash: LNbits is asked first whether
   * this wallet already paid the invoice (a crash between the send and the caller's record must
   * not pay twice) and that payment is answered again. Throws LightningPaymentError: `definite`
   * when LNbits refused before sending (balance, expiry, already paid, bad request, keys); not
   * definite when the outcome is unknown (no answer, a timeout, a 5xx, a pending payment): ask
   * `lookupPayment` later. LNbits takes no fee limit: what it charged is reported, and a payment
   * over `maxFeeMsat` is reported as paid (it happened) with its real fee.
   */
  async payInvoice(paymentRequest: string, _options: { maxFeeMsat: number }): Promise<PaymentResult> {
    let hash: string;
    try {
      hash = decodeInvoice(paymentRequest).paymentHash;
    } catch (error) {
      throw new LightningPaymentError(
        'INVOICE_NOT_FOUND',
        `not a BOLT11 invoice: ${(error as Error).message}`,
        true,
      );
    }
    const unknown = (why: string) => new LightningPaymentError('BACKEND_ERROR', `lnbits: ${why}`, false);
    const before = await this.lookupPayment(hash).catch((error: unknown) => {
      throw unknown(`could not ask about an earlier payment (${(error as Error).message}); nothing sent`);
    });
    if (before.state === 'succeeded') return paymentResultOf(before);
    if (before.state === 'pending') throw unknown('a payment of this invoice is in flight; look it up later');
    const path = '/api/v1/payments';
    let answer: Answer;
    try {
      answer = await this.call('POST', path, { out: true, bolt11: paymentRequest.trim() });
    } catch (error) {
      throw unknown((error as Error).message);
    }
    if (answer.status !== 201 && answer.status !== 200) {
      const refusal = paymentRefusal(answer);
      // A concurrent call of this same wallet may have paid it a moment ago: that payment is ours.
      if (refusal.code === 'ALREADY_PAID') {
        const ours = await this.lookupPayment(hash).catch(() => null);
        if (ours?.state === 'succeeded') return paymentResultOf(ours);
      }
      throw refusal;
    }
    const sent = paidAnswer.safeParse(answer.body);
    if (!sent.success || sent.data.payment_hash !== hash)
      throw unknown('unreadable answer to the payment (the outcome is unknown)');
    const after = await this.lookupPayment(hash).catch((error: unknown) => {
      throw unknown(`paid, but the lookup failed: ${(error as Error).message}`);
    });
    if (after.state === 'succeeded') return paymentResultOf(after);
    if (after.state === 'failed')
      throw new LightningPaymentError(after.code, 'lnbits: the payment failed', true);
    throw unknown(`the payment is ${after.state}; look it up later`);
  }

  async lookupPayment(paymentHash: string): Promise<PaymentStatus> {
    const found = await this.payment(paymentHash);
    const hash = paymentHash.toLowerCase();
    // No record, or only the wallet's own invoice (amount > 0): this wallet never paid it.
    if (!found?.details || found.details.amount >= 0) return { state: 'unknown', paymentHash: hash };
    if (found.paid)
      return {
        state: 'succeeded',
        paymentHash: hash,
        preimage: this.checkedPreimage(hash, found.preimage),
        amountMsat: -found.details.amount,
        feeMsat: Math.abs(found.details.fee ?? 0),
      };
    const status = found.status ?? found.details.status;
    if (status === 'failed') return { state: 'failed', paymentHash: hash, code: 'BACKEND_ERROR' };
    return { state: 'pending', paymentHash: hash };
  }

  /**
   * Listeners hear of invoices this adapter created once they settle: open invoices (bounded,
   * expired ones dropped) are polled while a listener is registered. A hint only: callers also
   * poll `lookupInvoice`, since invoices created by another process are never watched here.
   */
  onSettled(listener: (invoice: Invoice) => void): () => void {
    return this.watcher.onSettled(listener);
  }

  /** Stops polling (listeners stay registered but hear nothing more). */
  close(): void {
    this.watcher.stop();
  }

  /** One pass over the watched invoices (never two at once). */
  async pollWatched(): Promise<number> {
    return this.watcher.poll();
  }
}

/**
 * LNbits' refusal of a payment. It answers a payment error with 520 and a sentence, a bad request
 * with 400, a key that may not pay with 401/403; the sentences for a balance that cannot cover,
 * an invoice already paid or expired, and a missing route are refusals before anything was sent.
 * Any other 5xx (or an unreadable answer) leaves the outcome unknown.
 */
function paymentRefusal(answer: Answer): LightningPaymentError {
  const readable = errorAnswer.safeParse(answer.body).success;
  const detail = detailText(answer.body);
  const message = `lnbits: POST /api/v1/payments answered ${answer.status}: ${detail}`;
  if (readable) {
    if (/insufficient balance/i.test(detail))
      return new LightningPaymentError('INSUFFICIENT_BALANCE', message, true);
    if (/already paid/i.test(detail)) return new LightningPaymentError('ALREADY_PAID', message, true);
    if (/expired/i.test(detail)) return new LightningPaymentError('INVOICE_EXPIRED', message, true);
    if (/no route|only internal invoices/i.test(detail))
      return new LightningPaymentError('NO_ROUTE', message, true);
    if (answer.status >= 400 && answer.status < 500)
      return new LightningPaymentError('BACKEND_ERROR', message, true);
  }
  return new LightningPaymentError('BACKEND_ERROR', message, false);
}
