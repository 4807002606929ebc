// A Lightning backend that is one LND node, over LND's REST API (the grpc-gateway in front of its
// gRPC services): `/v1/invoices`, `/v1/invoice/{r_hash_str}`, `/v2/router/send`,
// `/v2/router/track/{payment_hash}`, `/v1/balance/channels`; header `Grpc-Metadata-macaroon`
// (the macaroon as hex). TLS with the node's own certificate is optional (`tlsCertPem`).
//
// Units: LND's `*_msat` fields are msat; every 64-bit integer travels as a JSON string (proto3
// JSON), so they are read as decimal strings (numbers accepted too) and checked to be safe
// integers. `bytes` fields travel as base64 (`r_hash`, `r_preimage`), while the router's Payment
// carries `payment_hash` and `payment_preimage` as hex strings. A `bytes` path parameter
// (`/v2/router/track/{payment_hash}`) is decoded by the gateway as base64, so it is sent base64url.
//
// Stateless apart from the invoices it waits on for `onSettled` (bounded): whoever uses it keeps
// its own invoice and payment state and asks `lookupPayment` after an unknown outcome.

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

export interface LndOptions {
  /** The REST endpoint, e.g. `https://127.0.0.1:8080`. */
  url: string;
  /** The macaroon (admin, or invoice + offchain permissions) as hex. */
  macaroonHex: string;
  /** The node's `tls.cert` (PEM) when it is self-signed; passed to undici as `connect.ca`. */
  tlsCertPem?: string;
  timeoutMs?: number;
  /** LND's `timeout_seconds` for a payment (it stops trying new routes after it). */
  payTimeoutSeconds?: number;
  pollIntervalMs?: number;
  maxWatchedInvoices?: number;
  nowS?: () => number;
}

const MAX_ANSWER_BYTES = 256 * 1024;

const hex64 = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/)
  .transform((s) => s.toLowerCase());
/** A proto3 JSON 64-bit integer: a decimal string (or a number), a safe integer ≥ 0. */
const uint64 = z
  .union([z.string().regex(/^\d{1,16}$/), z.number().int()])
  .transform((v) => Number(v))
  .refine((n) => Number.isSafeInteger(n) && n >= 0, 'not a safe integer');
const base64Bytes = z.string().max(200);
const bolt11Text = z.string().min(10).max(8192);

const addInvoiceAnswer = z.object({
  r_hash: base64Bytes,
  payment_request: bolt11Text,
  add_index: uint64.optional(),
});
const invoiceAnswer = z.object({
  memo: z.string().max(4096).optional(),
  r_preimage: base64Bytes.optional(),
  r_hash: base64Bytes,
  value_msat: uint64,
  creation_date: uint64,
  settle_date: uint64.optional(),
  payment_request: bolt11Text,
  expiry: uint64,
  amt_paid_msat: uint64.optional(),
  state: z.enum(['OPEN', 'SETTLED', 'CANCELED', 'ACCEPTED']),
});
const paymentAnswer = z.object({
  payment_hash: hex64,
  payment_preimage: z.string().max(128).optional(),
  value_msat: uint64.optional(),
  fee_msat: uint64.optional(),
  status: z.enum(['UNKNOWN', 'IN_FLIGHT', 'SUCCEEDED', 'FAILED', 'INITIATED']),
  failure_reason: z.string().max(64).optional(),
});
type LndPayment = z.infer<typeof paymentAnswer>;
const balanceAnswer = z.object({
  local_balance: z.object({ msat: uint64 }),
});
/** The gateway's error: `{code, message}` (v2), older `{error, code, message}` or `grpc_code`. */
const rpcError = z.object({
  code: z.number().int().optional(),
  grpc_code: z.number().int().optional(),
  message: z.string().max(2000).optional(),
  error: z.string().max(2000).optional(),
});
const streamLine = z.union([
  z.object({ result: z.unknown() }),
  z.object({ error: z.union([rpcError, z.string().max(2000)]) }),
]);

/** A refusal or failure of a call other than a payment: the HTTP status and LND's words. */
export class LndError extends Error {
  constructor(
    /** 0: no answer (unreachable, timed out). */
    readonly status: number,
    message: string,
    /** The gRPC status code LND gave (5: not found), when it gave one. */
    readonly grpcCode?: number,
  ) {
    super(message);
    this.name = 'LndError';
  }
}

interface Answer {
  status: number;
  body: unknown;
}

interface RpcFailure {
  code: number | undefined;
  message: string;
}

function rpcFailure(body: unknown): RpcFailure {
  const parsed = rpcError.safeParse(body);
  if (!parsed.success) return { code: undefined, message: 'unreadable error' };
  return {
    code: parsed.data.code ?? parsed.data.grpc_code,
    message: parsed.data.message ?? parsed.data.error ?? 'no message',
  };
}

/** The BOLT11 creation time (seconds). */
function createdAtOf(paymentRequest: string): number {
  const text = paymentRequest.trim().toLowerCase();
  return bolt11.decode(text, text.startsWith('lnbcrt') ? REGTEST : undefined).timestamp ?? 0;
}

function base64ToHex(text: string): string | null {
  if (!/^[A-Za-z0-9+/_-]*={0,2}$/.test(text)) return null;
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('hex');
}

/**
 * LND's terminal failure reasons (a FAILED payment: no HTLC is in flight any more). A timeout means
 * LND stopped trying routes, which is as final as running out of them.
 */
const FAILURE_REASONS: Record<string, PaymentFailureCode> = {
  FAILURE_REASON_TIMEOUT: 'NO_ROUTE',
  FAILURE_REASON_NO_ROUTE: 'NO_ROUTE',
  FAILURE_REASON_INSUFFICIENT_BALANCE: 'INSUFFICIENT_BALANCE',
  FAILURE_REASON_INCORRECT_PAYMENT_DETAILS: 'INVOICE_NOT_FOUND',
  FAILURE_REASON_ERROR: 'BACKEND_ERROR',
  FAILURE_REASON_CANCELED: 'BACKEND_ERROR',
  FAILURE_REASON_NONE: 'BACKEND_ERROR',
};

export function lndFailureCode(reason: string | undefined): PaymentFailureCode {
  return FAILURE_REASONS[reason ?? ''] ?? 'BACKEND_ERROR';
}

export class LndBackend implements LightningBackend {
  readonly name = 'lnd' as const;
  private readonly base: string;
  private readonly macaroonHex: string;
  private readonly dispatcher: Dispatcher | undefined;
  private readonly timeoutMs: number;
  private readonly payTimeoutSeconds: number;
  private readonly watcher: InvoiceWatcher;
  private readonly nowS: () => number;

  constructor(options: LndOptions) {
    this.base = options.url.replace(/\/+$/, '');
    if (!/^[0-9a-fA-F]+$/.test(options.macaroonHex))
      throw new FedAiError('INVALID_REQUEST', 'the LND macaroon must be hex');
    this.macaroonHex = options.macaroonHex;
    this.dispatcher = options.tlsCertPem ? new Agent({ connect: { ca: options.tlsCertPem } }) : undefined;
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.payTimeoutSeconds = options.payTimeoutSeconds ?? 60;
    if (!Number.isSafeInteger(this.payTimeoutSeconds) || this.payTimeoutSeconds <= 0)
      throw new FedAiError('INVALID_REQUEST', 'payTimeoutSeconds must be a positive integer');
    this.nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
    this.watcher = new InvoiceWatcher({
      lookup: (hash) => this.lookupInvoice(hash),
      pollIntervalMs: options.pollIntervalMs ?? 2_000,
      maxWatched: options.maxWatchedInvoices ?? 1_000,
      nowS: this.nowS,
    });
  }

  private async open(method: 'GET' | 'POST', path: string, body: unknown, timeoutMs: number) {
    const text = body === undefined ? undefined : JSON.stringify(body);
    try {
      return await request(`${this.base}${path}`, {
        method,
        headers: {
          'grpc-metadata-macaroon': this.macaroonHex,
          accept: 'application/json',
          ...(text === undefined ? {} : { 'content-type': 'application/json' }),
        },
        ...(text === undefined ? {} : { body: text }),
        ...(this.dispatcher ? { dispatcher: this.dispatcher } : {}),
        signal: AbortSignal.timeout(timeoutMs),
        headersTimeout: timeoutMs,
        bodyTimeout: timeoutMs,
      });
    } catch (error) {
      throw this.noAnswer(method, path, error);
    }
  }

  private noAnswer(method: string, path: string, error: unknown): LndError {
    const code = (error as { code?: unknown }).code ?? (error as { name?: unknown }).name;
    return new LndError(
      0,
      `lnd: ${method} ${path} got no answer (${typeof code === 'string' ? code : 'error'})`,
    );
  }

  /** One unary call; the body is read up to MAX_ANSWER_BYTES (more: unreadable, body null). */
  private async call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Answer> {
    const response = await this.open(method, path, body, this.timeoutMs);
    const chunks: Buffer[] = [];
    let size = 0;
    try {
      for await (const chunk of response.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_ANSWER_BYTES) {
          response.body.destroy();
          return { status: response.statusCode, body: null };
        }
        chunks.push(chunk as Buffer);
      }
    } catch (error) {
      throw this.noAnswer(method, path, error);
    }
    let parsed: unknown = null;
    try {
      parsed = JSON.parse(Buffer.concat(chunks).toString('utf8'));
    } catch {
      parsed = null;
    }
    return { status: response.statusCode, body: parsed };
  }

  /**
   * A server-streaming call: newline-delimited JSON messages, each `{"result": …}` or
   * `{"error": …}`. `onLine` answers true to stop reading. At most MAX_ANSWER_BYTES are read in
   * all. Resolves with the HTTP status and how the stream ended.
   */
  private async stream(
    method: 'GET' | 'POST',
    path: string,
    body: unknown,
    timeoutMs: number,
    onLine: (line: z.infer<typeof streamLine> | null) => boolean,
  ): Promise<{ status: number; ended: 'stopped' | 'eof' | 'oversized' | 'broken' }> {
    const response = await this.open(method, path, body, timeoutMs);
    let pending = '';
    let size = 0;
    try {
      for await (const chunk of response.body) {
        size += (chunk as Buffer).length;
        if (size > MAX_ANSWER_BYTES) {
          response.body.destroy();
          return { status: response.statusCode, ended: 'oversized' };
        }
        pending += (chunk as Buffer).toString('utf8');
        let newline = pending.indexOf('\n');
        while (newline >= 0) {
          const line = pending.slice(0, newline).trim();
          pending = pending.slice(newline + 1);
          newline = pending.indexOf('\n');
          if (line === '') continue;
          if (onLine(parseLine(line))) {
            response.body.destroy();
            return { status: response.statusCode, ended: 'stopped' };
          }
        }
      }
    } catch {
      return { status: response.statusCode, ended: 'broken' };
    }
    const rest = pending.trim();
    if (rest !== '' && onLine(parseLine(rest))) return { status: response.statusCode, ended: 'stopped' };
    return { status: response.statusCode, ended: 'eof' };
  }

  private refusal(method: string, path: string, answer: Answer): LndError {
    const failure = rpcFailure(answer.body);
    return new LndError(
      answer.status,
      `lnd: ${method} ${path} answered ${answer.status}: ${failure.message}`,
      failure.code,
    );
  }

  private unreadable(method: string, path: string, why = 'an unreadable answer'): LndError {
    return new LndError(200, `lnd: ${method} ${path} gave ${why}`);
  }

  /** The spendable balance of the node's channels: `local_balance.msat` of `/v1/balance/channels`. */
  async balanceMsat(): Promise<number> {
    const path = '/v1/balance/channels';
    const answer = await this.call('GET', path);
    if (answer.status !== 200) throw this.refusal('GET', path, answer);
    const parsed = balanceAnswer.safeParse(answer.body);
    if (!parsed.success) throw this.unreadable('GET', path);
    return parsed.data.local_balance.msat;
  }

  async createInvoice(input: CreateInvoiceInput): Promise<Invoice> {
    if (!Number.isSafeInteger(input.amountMsat) || input.amountMsat <= 0)
      throw new FedAiError('INVALID_REQUEST', `amount_msat must be a positive integer (${input.amountMsat})`);
    if (!Number.isSafeInteger(input.expirySeconds) || input.expirySeconds <= 0)
      throw new FedAiError('INVALID_REQUEST', `expiry must be a positive integer (${input.expirySeconds})`);
    const path = '/v1/invoices';
    const answer = await this.call('POST', path, {
      value_msat: String(input.amountMsat),
      memo: input.description,
      expiry: String(input.expirySeconds),
    });
    if (answer.status !== 200) throw this.refusal('POST', path, answer);
    const parsed = addInvoiceAnswer.safeParse(answer.body);
    const rHash = parsed.success ? base64ToHex(parsed.data.r_hash) : null;
    if (!parsed.success || rHash === null || rHash.length !== 64) throw this.unreadable('POST', path);
    let decoded: ReturnType<typeof decodeInvoice>;
    try {
      decoded = decodeInvoice(parsed.data.payment_request);
    } catch {
      throw this.unreadable('POST', path, 'an invoice that does not decode');
    }
    if (decoded.paymentHash !== rHash)
      throw this.unreadable('POST', path, 'an invoice of another payment hash');
    if (decoded.amountMsat !== input.amountMsat)
      throw this.unreadable(
        'POST',
        path,
        `an invoice of ${decoded.amountMsat} msat, not ${input.amountMsat}`,
      );
    let createdAtS: number;
    try {
      createdAtS = createdAtOf(parsed.data.payment_request);
    } catch {
      throw this.unreadable('POST', path, 'an invoice that does not decode');
    }
    if (decoded.expiresAtS - createdAtS !== input.expirySeconds)
      throw this.unreadable('POST', path, 'an invoice with another expiry');
    this.watcher.watch(rHash, decoded.expiresAtS);
    return {
      paymentHash: rHash,
      bolt11: parsed.data.payment_request,
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
    const path = `/v1/invoice/${hash}`;
    const shown = '/v1/invoice/:r_hash_str';
    const answer = await this.call('GET', path);
    if (answer.status === 404 || (answer.status !== 200 && rpcFailure(answer.body).code === 5)) return null;
    if (answer.status !== 200) throw this.refusal('GET', shown, answer);
    const parsed = invoiceAnswer.safeParse(answer.body);
    if (!parsed.success) throw this.unreadable('GET', shown);
    const found = parsed.data;
    if (base64ToHex(found.r_hash) !== hash) throw this.unreadable('GET', shown, 'an invoice of another hash');
    let decoded: ReturnType<typeof decodeInvoice>;
    try {
      decoded = decodeInvoice(found.payment_request);
    } catch {
      throw this.unreadable('GET', shown, 'an invoice that does not decode');
    }
    if (decoded.paymentHash !== hash || decoded.amountMsat !== found.value_msat)
      throw this.unreadable('GET', shown, 'fields that do not match the invoice');
    const settled = found.state === 'SETTLED';
    let preimage: string | undefined;
    if (settled) {
      preimage = base64ToHex(found.r_preimage ?? '') ?? '';
      if (preimage.length !== 64 || sha256Hex(preimage) !== hash)
        throw this.unreadable('GET', shown, 'a preimage that does not hash to the payment hash');
    }
    const expiresAtS = found.creation_date + found.expiry;
    return {
      paymentHash: hash,
      bolt11: found.payment_request,
      amountMsat: found.value_msat,
      description: found.memo ?? decoded.description,
      createdAtS: found.creation_date,
      expiresAtS,
      state: settled
        ? 'settled'
        : found.state === 'CANCELED' || this.nowS() >= expiresAtS
          ? 'expired'
          : 'open',
      preimage,
      settledAtS: settled && found.settle_date ? found.settle_date : undefined,
    };
  }

  /** A Payment message as a PaymentStatus (the preimage checked against the hash). */
  private statusOf(hash: string, payment: LndPayment): PaymentStatus {
    if (payment.payment_hash !== hash)
      throw this.unreadable('GET', '/v2/router/track', 'a payment of another hash');
    if (payment.status === 'SUCCEEDED') {
      const preimage = (payment.payment_preimage ?? '').toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(preimage) || sha256Hex(preimage) !== hash)
        throw this.unreadable('GET', '/v2/router/track', 'a preimage that does not hash to the payment hash');
      if (payment.value_msat === undefined)
        throw this.unreadable('GET', '/v2/router/track', 'a succeeded payment without value_msat');
      return {
        state: 'succeeded',
        paymentHash: hash,
        preimage,
        amountMsat: payment.value_msat,
        feeMsat: payment.fee_msat ?? 0,
      };
    }
    if (payment.status === 'FAILED')
      return { state: 'failed', paymentHash: hash, code: lndFailureCode(payment.failure_reason) };
    return { state: 'pending', paymentHash: hash };
  }

  /**
   * `GET /v2/router/track/{payment_hash}`: its first message is the payment's current state.
   * LND answers "payment isn't initiated" (gRPC NotFound, 5) for a hash it never paid: unknown.
   */
  async lookupPayment(paymentHash: string): Promise<PaymentStatus> {
    const hash = paymentHash.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hash)) return { state: 'unknown', paymentHash: hash };
    // The gateway decodes a `bytes` path parameter as padded base64 (standard, then URL-safe).
    const path = `/v2/router/track/${encodeURIComponent(`${Buffer.from(hash, 'hex').toString('base64url')}=`)}`;
    const shown = '/v2/router/track/:payment_hash';
    let first: z.infer<typeof streamLine> | null | undefined;
    const ended = await this.stream('GET', path, undefined, this.timeoutMs, (line) => {
      first = line;
      return true;
    }).catch((error: unknown) => {
      if (error instanceof LndError) throw new LndError(0, error.message.replace(path, shown));
      throw error;
    });
    if (first === undefined || first === null) {
      // A bare 404 (no gRPC status saying "not initiated") is a wrong URL, not an unknown payment.
      throw new LndError(
        ended.status,
        `lnd: GET ${shown} gave ${ended.ended === 'oversized' ? 'an oversized' : 'an unreadable'} answer`,
      );
    }
    if ('error' in first) {
      const failure =
        typeof first.error === 'string' ? { code: undefined, message: first.error } : rpcFailure(first.error);
      if (failure.code === 5 || /isn't initiated|not initiated/i.test(failure.message))
        return { state: 'unknown', paymentHash: hash };
      throw new LndError(
        ended.status,
        `lnd: GET ${shown} answered ${ended.status}: ${failure.message}`,
        failure.code,
      );
    }
    const payment = paymentAnswer.safeParse(first.result);
    if (!payment.success) throw this.unreadable('GET', shown);
    return this.statusOf(hash, payment.data);
  }

  /**
   * `POST /v2/router/send` with `no_inflight_updates`: LND answers the final Payment once it
   * settles or fails. Idempotent by payment hash: the payment is tracked first and a succeeded or
   * in-flight one is never sent again. Throws LightningPaymentError: a FAILED payment or a refusal
   * before anything was sent is `definite`; a payment still in flight when this call gives up, a
   * broken or unreadable stream, or no answer is not: ask `lookupPayment` later.
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
    const unknown = (why: string) => new LightningPaymentError('BACKEND_ERROR', `lnd: ${why}`, false);
    const before = await this.lookupPayment(hash).catch((error: unknown) => {
      throw unknown(`could not ask about an earlier payment (${(error as Error).message}); nothing sent`);
    });
    if (before.state === 'succeeded') return paymentResultOf(before);
    if (before.state === 'pending') throw unknown('a payment of this invoice is in flight; look it up later');

    const path = '/v2/router/send';
    let final: LndPayment | undefined;
    let refusal: RpcFailure | undefined;
    let unreadable = false;
    let ended: Awaited<ReturnType<LndBackend['stream']>>;
    try {
      ended = await this.stream(
        'POST',
        path,
        {
          payment_request: paymentRequest.trim(),
          timeout_seconds: this.payTimeoutSeconds,
          fee_limit_msat: String(options.maxFeeMsat),
          no_inflight_updates: true,
        },
        // LND stops trying routes after timeout_seconds; HTLCs in flight may take longer.
        this.payTimeoutSeconds * 1000 + this.timeoutMs,
        (line) => {
          if (line === null) {
            unreadable = true;
            return true;
          }
          if ('error' in line) {
            refusal =
              typeof line.error === 'string'
                ? { code: undefined, message: line.error }
                : rpcFailure(line.error);
            return true;
          }
          const payment = paymentAnswer.safeParse(line.result);
          if (!payment.success || payment.data.payment_hash !== hash) {
            unreadable = true;
            return true;
          }
          final = payment.data;
          return payment.data.status === 'SUCCEEDED' || payment.data.status === 'FAILED';
        },
      );
    } catch (error) {
      throw unknown(`${(error as Error).message} (the outcome is unknown)`);
    }
    if (ended.ended === 'oversized' || unreadable)
      throw unknown('unreadable answer to the payment (the outcome is unknown)');
    // A refusal before the stream began is a plain error body with a 4xx/5xx status.
    if (!final && !refusal && ended.status !== 200)
      refusal = { code: undefined, message: `HTTP ${ended.status}` };
    if (refusal) return this.refused(hash, ended.status, refusal);
    if (final?.status === 'SUCCEEDED' || final?.status === 'FAILED') {
      const status = this.statusOfPaid(hash, final);
      if (status.state === 'succeeded') return paymentResultOf(status);
      if (status.state === 'failed')
        throw new LightningPaymentError(
          status.code,
          `lnd: the payment failed (${final.failure_reason ?? 'no reason'})`,
          true,
        );
    }
    throw unknown(
      ended.ended === 'broken'
        ? 'the payment stream broke (the outcome is unknown)'
        : 'the payment is still in flight; look it up later',
    );
  }

  private statusOfPaid(hash: string, payment: LndPayment): PaymentStatus {
    try {
      return this.statusOf(hash, payment);
    } catch (error) {
      throw new LightningPaymentError(
        'BACKEND_ERROR',
        `${(error as Error).message} (the outcome is unknown)`,
        false,
      );
    }
  }

  /** LND refused the send (an `{"error"}` message or body before any Payment). */
  private async refused(hash: string, status: number, failure: RpcFailure): Promise<PaymentResult> {
    const message = `lnd: POST /v2/router/send answered ${status}: ${failure.message}`;
    // AlreadyExists (6): "invoice is already paid", "payment is in transition", "payment already exists".
    if (failure.code === 6 || /already paid|in transition|already exists/i.test(failure.message)) {
      const now = await this.lookupPayment(hash).catch(() => null);
      if (now?.state === 'succeeded') return paymentResultOf(now);
      if (/already paid/i.test(failure.message) && now?.state !== 'pending')
        throw new LightningPaymentError('ALREADY_PAID', message, true);
      throw new LightningPaymentError('BACKEND_ERROR', `${message} (in flight; look it up later)`, false);
    }
    if (/invoice expired/i.test(failure.message))
      throw new LightningPaymentError('INVOICE_EXPIRED', message, true);
    // Refused before any attempt: bad arguments (3), permissions (7, 16) or a macaroon LND rejects.
    if (
      failure.code === 3 ||
      failure.code === 7 ||
      failure.code === 16 ||
      status === 400 ||
      status === 401 ||
      status === 403 ||
      /macaroon|verification failed|permission denied/i.test(failure.message)
    )
      throw new LightningPaymentError('BACKEND_ERROR', message, true);
    throw new LightningPaymentError('BACKEND_ERROR', `${message} (the outcome is unknown)`, false);
  }

  /** Polls the open invoices this adapter created while a listener is registered (a hint). */
  onSettled(listener: (invoice: Invoice) => void): () => void {
    return this.watcher.onSettled(listener);
  }

  /** Stops polling (listeners stay registered but hear nothing more). */
  close(): void {
    this.watcher.stop();
  }

  async destroy(): Promise<void> {
    this.close();
    if (this.dispatcher) await this.dispatcher.close();
  }

  /** One pass over the watched invoices (never two at once). */
  async pollWatched(): Promise<number> {
    return this.watcher.poll();
  }
}

/** One stream message; a bare gRPC status body (`{code, message}`, a refusal before streaming) reads as an error. */
function parseLine(line: string): z.infer<typeof streamLine> | null {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  const parsed = streamLine.safeParse(value);
  if (parsed.success) return parsed.data;
  const bare = rpcError.safeParse(value);
  return bare.success && bare.data.message !== undefined ? { error: bare.data } : null;
}
