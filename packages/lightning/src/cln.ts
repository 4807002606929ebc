// A Lightning backend that is one Core Lightning node, over clnrest: every JSON-RPC method is
// `POST /v1/<method>` with a JSON object of named parameters and the header `Rune: <rune>`.
// clnrest answers a result with 201 (200 accepted too), an RPC error as `{code, message, data?}`
// with 500, a missing rune with 403, a rune it refuses with 401 and an unknown method with 404.
//
// Methods: `invoice`, `listinvoices`, `pay`, `listpays`, `listfunds`. Units: every `*_msat`
// field is msat, a JSON number in current versions and a string like "1000msat" in old ones
// (both accepted); `maxfee` is sent in msat, `retry_for` and `expiry` in seconds.
//
// Stateless apart from the invoices it waits on for `onSettled` (bounded). Invoice labels are
// random (`fedai-<uuid>`): CLN makes the payment hash, and nothing is remembered by label.

import { randomUUID } from 'node:crypto';
import { FedAiError } from '@fed-ai/protocol';
import bolt11 from 'bolt11';
import { Agent, type Dispatcher, request } from 'undici';
import { z } from 'zod';
import {
  type CreateInvoiceInput,
  type Invoice,
  type LightningBackend,
  LightningPaymentError,
  type PaymentFailureCode,
  type PaymentResult,
  type PaymentStatus,
  paymentResultOf,
} from './backend';
import { decodeInvoice, REGTEST, sha256Hex } from './bolt11';
import { InvoiceWatcher } from './invoice-watcher';

export interface ClnOptions {
  /** clnrest's base URL, e.g. `https://127.0.0.1:3010`. */
  url: string;
  /** A rune allowing at least invoice, listinvoices, listpays, listfunds (and pay to pay). */
  rune: string;
  /** clnrest's self-signed certificate (PEM), passed to undici as `connect.ca`. */
  tlsCertPem?: string;
  timeoutMs?: number;
  /** `pay`'s `retry_for`: seconds CLN keeps finding routes and retrying. */
  payRetrySeconds?: number;
  pollIntervalMs?: number;
  maxWatchedInvoices?: number;
  nowS?: () => number;
}

const MAX_ANSWER_BYTES = 256 * 1024;
/** Channel states whose `our_amount_msat` can be spent over Lightning. */
const SPENDABLE_STATES = new Set(['CHANNELD_NORMAL', 'CHANNELD_AWAITING_SPLICE']);

const hex64 = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/)
  .transform((s) => s.toLowerCase());
/** An msat amount: a number (current CLN) or a string "1000msat" / "1000" (old versions). */
const msat = z
  .union([z.number().int(), z.string().regex(/^\d{1,16}(msat)?$/)])
  .transform((v) => (typeof v === 'number' ? v : Number(v.replace(/msat$/, ''))))
  .refine((n) => Number.isSafeInteger(n) && n >= 0, 'not a safe msat amount');
const seconds = z.number().int().nonnegative();
const bolt11Text = z.string().min(10).max(8192);

const invoiceAnswer = z.object({
  payment_hash: hex64,
  bolt11: bolt11Text,
  expires_at: seconds,
});
const listedInvoice = z.object({
  payment_hash: hex64,
  status: z.enum(['unpaid', 'paid', 'expired']),
  bolt11: bolt11Text.optional(),
  description: z.string().max(4096).optional(),
  expires_at: seconds,
  amount_msat: msat.optional(),
  amount_received_msat: msat.optional(),
  paid_at: seconds.optional(),
  payment_preimage: z.string().max(128).optional(),
});
const listInvoicesAnswer = z.object({ invoices: z.array(listedInvoice).max(1000) });
const payAnswer = z.object({
  payment_preimage: z.string().max(128),
  payment_hash: hex64,
  amount_msat: msat,
  amount_sent_msat: msat,
  status: z.enum(['complete', 'pending', 'failed']),
});
const listedPay = z.object({
  payment_hash: hex64,
  status: z.enum(['pending', 'complete', 'failed']),
  preimage: z.string().max(128).optional(),
  amount_msat: msat.optional(),
  amount_sent_msat: msat.optional(),
});
const listPaysAnswer = z.object({ pays: z.array(listedPay).max(1000) });
const listFundsAnswer = z.object({
  channels: z.array(z.object({ our_amount_msat: msat, state: z.string().max(64).optional() })).max(100_000),
});
const rpcError = z.object({ code: z.number().int().nullish(), message: z.string().max(4000) });

/** A refusal or failure of a call other than a payment: the HTTP status and CLN's words. */
export class ClnError extends Error {
  constructor(
    /** 0: no answer (unreachable, timed out). */
    readonly status: number,
    message: string,
    /** CLN's JSON-RPC error code, when it gave one. */
    readonly rpcCode?: number,
  ) {
    super(message);
    this.name = 'ClnError';
  }
}

interface Answer {
  status: number;
  body: unknown;
}

function rpcFailure(body: unknown): { code: number | undefined; message: string } {
  const parsed = rpcError.safeParse(body);
  if (!parsed.success) return { code: undefined, message: 'unreadable error' };
  return { code: parsed.data.code ?? undefined, message: parsed.data.message };
}

/** The BOLT11 creation time (seconds). */
function createdAtOf(paymentRequest: string): number {
  const text = paymentRequest.trim().toLowerCase();
  return bolt11.decode(text, text.startsWith('lnbcrt') ? REGTEST : undefined).timestamp ?? 0;
}

/**
 * CLN's `pay` error codes (lightning-pay(7)): each a refusal or a final failure with nothing in
 * flight (`definite`), except 200 (a payment of this hash is still in progress) and the catch-all
 * -1 / 209, whose outcome is unknown.
 */
export function clnPayFailure(
  code: number | undefined,
  message: string,
): { code: PaymentFailureCode; definite: boolean } {
  switch (code) {
    case 201:
      return { code: 'ALREADY_PAID', definite: true };
    case 203:
      return { code: 'INVOICE_NOT_FOUND', definite: true };
    case 205:
      // No dedicated code for the node's own balance: CLN says so in the message.
      return /insufficient|capacity|not enough|afford/i.test(message)
        ? { code: 'INSUFFICIENT_BALANCE', definite: true }
        : { code: 'NO_ROUTE', definite: true };
    case 206:
      return { code: 'FEE_TOO_HIGH', definite: true };
    case 207:
      return { code: 'INVOICE_EXPIRED', definite: true };
    case 210:
      // "Payment timed out without a payment in progress": nothing is in flight.
      return { code: 'NO_ROUTE', definite: true };
    case -32602:
    case -32600:
    case -32601:
      return { code: 'BACKEND_ERROR', definite: true };
    default:
      return { code: 'BACKEND_ERROR', definite: false };
  }
}

export class ClnBackend implements LightningBackend {
  readonly name = 'cln' as const;
  private readonly base: string;
  private readonly rune: string;
  private readonly dispatcher: Dispatcher | undefined;
  private readonly timeoutMs: number;
  private readonly payRetrySeconds: number;
  private readonly watcher: InvoiceWatcher;
  private readonly nowS: () => number;

  constructor(options: ClnOptions) {
    this.base = options.url.replace(/\/+$/, '');
    if (!/^[A-Za-z0-9_=+/-]+$/.test(options.rune))
      throw new FedAiError('INVALID_REQUEST', 'the CLN rune must be a base64url string');
    this.rune = options.rune;
    this.dispatcher = options.tlsCertPem ? new Agent({ connect: { ca: options.tlsCertPem } }) : undefined;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.payRetrySeconds = options.payRetrySeconds ?? 60;
    if (
      !Number.isSafeInteger(this.payRetrySeconds) ||
      this.payRetrySeconds <= 0 ||
      this.payRetrySeconds > 65_535
    )
      throw new FedAiError('INVALID_REQUEST', 'payRetrySeconds must be a whole number of seconds (u16)');
    this.nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
    this.watcher = new InvoiceWatcher({
      lookup: (hash) => this.lookupInvoice(hash),
      pollIntervalMs: options.pollIntervalMs ?? 2_000,
      maxWatched: options.maxWatchedInvoices ?? 1_000,
      nowS: this.nowS,
    });
  }

  /** One RPC. Throws ClnError (status 0) only when no answer came (the rune never appears). */
  private async call(
    method: string,
    params: Record<string, unknown>,
    timeoutMs = this.timeoutMs,
  ): Promise<Answer> {
    const path = `/v1/${method}`;
    try {
      const response = await request(`${this.base}${path}`, {
        method: 'POST',
        headers: { rune: this.rune, accept: 'application/json', 'content-type': 'application/json' },
        body: JSON.stringify(params),
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
        signal: AbortSignal.timeout(timeoutMs),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
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
      throw new ClnError(0, `cln: POST ${path} got no answer (${typeof code === 'string' ? code : 'error'})`);
    }
  }

  private ok(answer: Answer): boolean {
    return answer.status === 201 || answer.status === 200;
  }

  private refusal(method: string, answer: Answer): ClnError {
    const failure = rpcFailure(answer.body);
    return new ClnError(
      answer.status,
      `cln: POST /v1/${method} answered ${answer.status}: ${failure.message}`,
      failure.code,
    );
  }

  private unreadable(method: string, why = 'an unreadable answer'): ClnError {
    return new ClnError(200, `cln: POST /v1/${method} gave ${why}`);
  }

  /** What the node's channels can spend: `our_amount_msat` summed over channels in normal state. */
  async balanceMsat(): Promise<number> {
    const answer = await this.call('listfunds', {});
    if (!this.ok(answer)) throw this.refusal('listfunds', answer);
    const parsed = listFundsAnswer.safeParse(answer.body);
    if (!parsed.success) throw this.unreadable('listfunds');
    let total = 0;
    for (const channel of parsed.data.channels)
      if (channel.state === undefined || SPENDABLE_STATES.has(channel.state))
        total += channel.our_amount_msat;
    if (!Number.isSafeInteger(total)) throw this.unreadable('listfunds', 'a balance beyond safe integers');
    return total;
  }

  async createInvoice(input: CreateInvoiceInput): Promise<Invoice> {
    if (!Number.isSafeInteger(input.amountMsat) || input.amountMsat <= 0)
      throw new FedAiError('INVALID_REQUEST', `amount_msat must be a positive integer (${input.amountMsat})`);
    if (!Number.isSafeInteger(input.expirySeconds) || input.expirySeconds <= 0)
      throw new FedAiError('INVALID_REQUEST', `expiry must be a positive integer (${input.expirySeconds})`);
    const answer = await this.call('invoice', {
      amount_msat: input.amountMsat,
      label: `fedai-${randomUUID()}`,
      description: input.description,
      expiry: input.expirySeconds,
    });
    if (!this.ok(answer)) throw this.refusal('invoice', answer);
    const parsed = invoiceAnswer.safeParse(answer.body);
    if (!parsed.success) throw this.unreadable('invoice');
    let decoded: ReturnType<typeof decodeInvoice>;
    let createdAtS: number;
    try {
      decoded = decodeInvoice(parsed.data.bolt11);
      createdAtS = createdAtOf(parsed.data.bolt11);
    } catch {
      throw this.unreadable('invoice', 'an invoice that does not decode');
    }
    if (decoded.paymentHash !== parsed.data.payment_hash)
      throw this.unreadable('invoice', 'an invoice of another payment hash');
    if (decoded.amountMsat !== input.amountMsat)
      throw this.unreadable('invoice', `an invoice of ${decoded.amountMsat} msat, not ${input.amountMsat}`);
    if (
      decoded.expiresAtS !== parsed.data.expires_at ||
      decoded.expiresAtS - createdAtS !== input.expirySeconds
    )
      throw this.unreadable('invoice', 'an invoice with another expiry');
    this.watcher.watch(decoded.paymentHash, decoded.expiresAtS);
    return {
      paymentHash: decoded.paymentHash,
      bolt11: parsed.data.bolt11,
      amountMsat: decoded.amountMsat,
      description: decoded.description,
      createdAtS,
      expiresAtS: decoded.expiresAtS,
      state: 'open',
    };
  }

  async lookupInvoice(paymentHash: string): Promise<Invoice | null> {
    if (!/^[0-9a-fA-F]{64}$/.test(paymentHash)) return null;
    const hash = paymentHash.toLowerCase();
    const answer = await this.call('listinvoices', { payment_hash: hash });
    if (!this.ok(answer)) throw this.refusal('listinvoices', answer);
    const parsed = listInvoicesAnswer.safeParse(answer.body);
    if (!parsed.success) throw this.unreadable('listinvoices');
    const found = parsed.data.invoices.find((invoice) => invoice.payment_hash === hash);
    if (!found?.bolt11) return null; // none, or a BOLT12 invoice this adapter never makes
    let decoded: ReturnType<typeof decodeInvoice>;
    let createdAtS: number;
    try {
      decoded = decodeInvoice(found.bolt11);
      createdAtS = createdAtOf(found.bolt11);
    } catch {
      throw this.unreadable('listinvoices', 'an invoice that does not decode');
    }
    if (
      decoded.paymentHash !== hash ||
      (found.amount_msat !== undefined && found.amount_msat !== decoded.amountMsat)
    )
      throw this.unreadable('listinvoices', 'fields that do not match the invoice');
    const settled = found.status === 'paid';
    let preimage: string | undefined;
    if (settled) {
      preimage = (found.payment_preimage ?? '').toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(preimage) || sha256Hex(preimage) !== hash)
        throw this.unreadable('listinvoices', 'a preimage that does not hash to the payment hash');
    }
    return {
      paymentHash: hash,
      bolt11: found.bolt11,
      amountMsat: decoded.amountMsat,
      description: found.description ?? decoded.description,
      createdAtS,
      expiresAtS: found.expires_at,
      state: settled
        ? 'settled'
        : found.status === 'expired' || this.nowS() >= found.expires_at
          ? 'expired'
          : 'open',
      preimage,
      settledAtS: settled ? found.paid_at : undefined,
    };
  }

  /**
   * `listpays {payment_hash}`: one entry per payment attempt group. A complete one wins (its
   * preimage checked), then a pending one; only failed ones: failed; none: unknown.
   */
  async lookupPayment(paymentHash: string): Promise<PaymentStatus> {
    const hash = paymentHash.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hash)) return { state: 'unknown', paymentHash: hash };
    const answer = await this.call('listpays', { payment_hash: hash });
    if (!this.ok(answer)) throw this.refusal('listpays', answer);
    const parsed = listPaysAnswer.safeParse(answer.body);
    if (!parsed.success) throw this.unreadable('listpays');
    const pays = parsed.data.pays.filter((pay) => pay.payment_hash === hash);
    const complete = pays.find((pay) => pay.status === 'complete');
    if (complete) {
      const preimage = (complete.preimage ?? '').toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(preimage) || sha256Hex(preimage) !== hash)
        throw this.unreadable('listpays', 'a preimage that does not hash to the payment hash');
      const amountMsat = complete.amount_msat ?? complete.amount_sent_msat;
      if (amountMsat === undefined) throw this.unreadable('listpays', 'a complete payment without an amount');
      const sentMsat = complete.amount_sent_msat ?? amountMsat;
      return {
        state: 'succeeded',
        paymentHash: hash,
        preimage,
        amountMsat,
        feeMsat: Math.max(0, sentMsat - amountMsat),
      };
    }
    if (pays.some((pay) => pay.status === 'pending')) return { state: 'pending', paymentHash: hash };
    // listpays keeps no reason for a failure.
    if (pays.length > 0) return { state: 'failed', paymentHash: hash, code: 'BACKEND_ERROR' };
    return { state: 'unknown', paymentHash: hash };
  }

  /**
   * `pay {bolt11, maxfee, retry_for}`. Idempotent by payment hash: `listpays` is asked first and a
   * complete or pending payment is never sent again. Throws LightningPaymentError: definite for
   * CLN's refusals and final failures (see `clnPayFailure`), not definite when the outcome is
   * unknown (no answer within `retry_for` plus the timeout, a pending status, 200, a catch-all
   * error, an unreadable answer): ask `lookupPayment` later.
   */
  async payInvoice(paymentRequest: string, options: { maxFeeMsat: number }): Promise<PaymentResult> {
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
    if (!Number.isSafeInteger(options.maxFeeMsat) || options.maxFeeMsat < 0)
      throw new LightningPaymentError(
        'BACKEND_ERROR',
        `max fee must be a whole msat amount (${options.maxFeeMsat})`,
        true,
      );
    const unknown = (why: string) => new LightningPaymentError('BACKEND_ERROR', `cln: ${why}`, false);
    const before = await this.lookupPayment(hash).catch((error: unknown) => {
      throw unknown(`could not ask about an earlier payment (${(error as Error).message}); nothing sent`);
    });
    if (before.state === 'succeeded') return paymentResultOf(before);
    if (before.state === 'pending') throw unknown('a payment of this invoice is in flight; look it up later');

    let answer: Answer;
    try {
      answer = await this.call(
        'pay',
        { bolt11: paymentRequest.trim(), maxfee: options.maxFeeMsat, retry_for: this.payRetrySeconds },
        // pay answers once settled or failed; HTLCs in flight may outlast retry_for.
        this.payRetrySeconds * 1000 + this.timeoutMs,
      );
    } catch (error) {
      throw unknown(`${(error as Error).message} (the outcome is unknown)`);
    }
    if (!this.ok(answer)) {
      const failure = rpcFailure(answer.body);
      const message = `cln: POST /v1/pay answered ${answer.status}: ${failure.message}`;
      if (answer.status >= 400 && answer.status < 500)
        throw new LightningPaymentError('BACKEND_ERROR', message, true); // rune refused, no method
      const mapped = clnPayFailure(failure.code, failure.message);
      if (mapped.code === 'ALREADY_PAID') {
        const ours = await this.lookupPayment(hash).catch(() => null);
        if (ours?.state === 'succeeded') return paymentResultOf(ours);
      }
      throw new LightningPaymentError(
        mapped.code,
        mapped.definite ? message : `${message} (the outcome is unknown)`,
        mapped.definite,
      );
    }
    const paid = payAnswer.safeParse(answer.body);
    if (!paid.success || paid.data.payment_hash !== hash)
      throw unknown('unreadable answer to the payment (the outcome is unknown)');
    if (paid.data.status === 'pending') throw unknown('the payment is pending; look it up later');
    if (paid.data.status === 'failed')
      throw new LightningPaymentError('BACKEND_ERROR', 'cln: the payment failed', true);
    const preimage = paid.data.payment_preimage.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(preimage) || sha256Hex(preimage) !== hash)
      throw unknown('a preimage that does not hash to the payment hash (the outcome is unknown)');
    return {
      paymentHash: hash,
      preimage,
      amountMsat: paid.data.amount_msat,
      feeMsat: Math.max(0, paid.data.amount_sent_msat - paid.data.amount_msat),
    };
  }

  /** Polls the open invoices this adapter created while a listener is registered (a hint). */
  onSettled(listener: (invoice: Invoice) => void): () => void {
    return this.watcher.onSettled(listener);
  }

  /** Stops polling (listeners stay registered but hear nothing more). */
  close(): void {
    this.watcher.stop();
  }

  /** Stops polling and closes the TLS agent's connections, if any. */
  async destroy(): Promise<void> {
    this.close();
    if (this.dispatcher) await this.dispatcher.close();
  }

  /** One pass over the watched invoices (never two at once). */
  async pollWatched(): Promise<number> {
    return this.watcher.poll();
  }
}
