// A Lightning backend that is one Nostr Wallet Connect (NIP-47) wallet, through @getalby/sdk's
// NWCClient over the relays of the `nostr+walletconnect://` URI: `make_invoice`, `lookup_invoice`
// (incoming invoices and, by payment hash, outgoing payments: `type`, `state`), `pay_invoice` and
// `get_balance`. Every amount NIP-47 carries is msat.
//
// The URI holds the client's secret key: it is parsed here (never by the SDK, whose errors could
// echo it) and never appears in an error message. Every call has its own timeout. Stateless apart
// from the invoices it waits on for `onSettled` (bounded) and the relay connections (`destroy`).

import { FedAiError } from '@fed-ai/protocol';
import bolt11 from 'bolt11';
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

export interface NwcOptions {
  /** `nostr+walletconnect://<wallet pubkey>?relay=wss://…&secret=<64 hex>` (a secret). */
  url: string;
  /** Each call but a payment: publish, wait for the answer (10 s). */
  timeoutMs?: number;
  /** `pay_invoice`: how long to wait for the wallet's answer (60 s; the SDK waits at most 60 s). */
  payTimeoutMs?: number;
  pollIntervalMs?: number;
  maxWatchedInvoices?: number;
  nowS?: () => number;
}

type Sdk = typeof import('@getalby/sdk/nwc');
type Client = InstanceType<Sdk['NWCClient']>;

const NWC_SCHEME = /^nostr\+walletconnect:\/\//i;

const hex64 = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/)
  .transform((s) => s.toLowerCase());
const msat = z
  .number()
  .int()
  .refine((n) => Number.isSafeInteger(n) && n >= 0, 'not a safe msat amount');
const seconds = z.number().int().nonnegative();

const transaction = z.object({
  type: z.enum(['incoming', 'outgoing']),
  state: z.enum(['pending', 'settled', 'accepted', 'expired', 'failed']).optional(),
  invoice: z.string().max(8192).optional(),
  description: z.string().max(4096).nullish(),
  preimage: z.string().max(128).nullish(),
  payment_hash: hex64,
  amount: msat,
  fees_paid: msat.nullish(),
  created_at: seconds.nullish(),
  expires_at: seconds.nullish(),
  settled_at: seconds.nullish(),
});
type Transaction = z.infer<typeof transaction>;
const payAnswer = z.object({ preimage: z.string().max(128), fees_paid: msat.nullish() });
const balanceAnswer = z.object({ balance: msat });

/** A refusal or a missing answer of a call other than a payment. The URI never appears. */
export class NwcCallError extends Error {
  constructor(
    /** The wallet's NIP-47 error code, or NO_ANSWER (timeout, relay down, unreadable answer). */
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = 'NwcCallError';
  }

  /** The wallet answered (with an error code): the request was read and refused. */
  get answered(): boolean {
    return this.code !== 'NO_ANSWER';
  }
}

interface Connection {
  walletPubkey: string;
  relayUrls: string[];
  secretHex: string;
}

/** Parses a NIP-47 connection URI; a bad one is refused without showing any part of it. */
export function parseNwcUrl(uri: string): Connection {
  const refused = (why: string) =>
    new FedAiError(
      'INVALID_REQUEST',
      `the NWC URL must be nostr+walletconnect://<64-hex wallet pubkey>?relay=wss://…&secret=<64 hex> (${why})`,
    );
  const text = uri.trim();
  if (!NWC_SCHEME.test(text)) throw refused('another scheme');
  let url: URL;
  try {
    url = new URL(text.replace(NWC_SCHEME, 'http://'));
  } catch {
    throw refused('not a URI');
  }
  const walletPubkey = url.hostname.toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(walletPubkey)) throw refused('the wallet pubkey is not 64 hex');
  const relayUrls = url.searchParams.getAll('relay').map((r) => r.trim());
  if (relayUrls.length === 0 || relayUrls.length > 8) throw refused('one to eight relay parameters');
  for (const relay of relayUrls)
    if (!/^wss?:\/\/[^\s]+$/i.test(relay)) throw refused('a relay is not a ws:// or wss:// URL');
  const secretHex = (url.searchParams.get('secret') ?? '').toLowerCase();
  if (!/^[0-9a-f]{64}$/.test(secretHex)) throw refused('the secret is not 64 hex');
  return { walletPubkey, relayUrls, secretHex };
}

let sdkModule: Promise<Sdk> | undefined;
/** The SDK needs a global WebSocket, which Node 20 lacks: `ws` stands in. */
function loadSdk(): Promise<Sdk> {
  sdkModule ??= (async () => {
    const scope = globalThis as { WebSocket?: unknown };
    if (!scope.WebSocket) scope.WebSocket = (await import('ws')).default;
    return import('@getalby/sdk/nwc');
  })();
  return sdkModule;
}

/** NIP-47 refusals of `pay_invoice` that are final before any payment is attempted. */
const REFUSED_BEFORE_PAYING: Record<string, PaymentFailureCode> = {
  INSUFFICIENT_BALANCE: 'INSUFFICIENT_BALANCE',
  // A spending quota of the connection: the wallet cannot cover the amount for this client.
  QUOTA_EXCEEDED: 'INSUFFICIENT_BALANCE',
  RATE_LIMITED: 'BACKEND_ERROR',
  RESTRICTED: 'BACKEND_ERROR',
  UNAUTHORIZED: 'BACKEND_ERROR',
  NOT_IMPLEMENTED: 'BACKEND_ERROR',
  UNSUPPORTED_ENCRYPTION: 'BACKEND_ERROR',
  NOT_FOUND: 'INVOICE_NOT_FOUND',
};

/** The failure code a failed payment's words suggest (NIP-47 has one code for all of them). */
function failureCodeOf(nwcCode: string, message: string): PaymentFailureCode {
  if (/already.?paid/i.test(message)) return 'ALREADY_PAID';
  if (/expired/i.test(message)) return 'INVOICE_EXPIRED';
  if (/insufficient|not enough/i.test(message)) return 'INSUFFICIENT_BALANCE';
  if (/no.?route|route/i.test(message)) return 'NO_ROUTE';
  return nwcCode === 'PAYMENT_FAILED' ? 'NO_ROUTE' : 'BACKEND_ERROR';
}

export class NwcBackend implements LightningBackend {
  readonly name = 'nwc' as const;
  /** The wallet service's pubkey (public). */
  readonly walletPubkey: string;
  /** The relays of the URI (public). */
  readonly relayUrls: readonly string[];
  readonly #connection: Connection;
  #client: Promise<{ sdk: Sdk; client: Client }> | undefined;
  private readonly timeoutMs: number;
  private readonly payTimeoutMs: number;
  private readonly watcher: InvoiceWatcher;
  private readonly nowS: () => number;

  constructor(options: NwcOptions) {
    this.#connection = parseNwcUrl(options.url);
    this.walletPubkey = this.#connection.walletPubkey;
    this.relayUrls = [...this.#connection.relayUrls];
    this.timeoutMs = options.timeoutMs ?? 10_000;
    this.payTimeoutMs = options.payTimeoutMs ?? 60_000;
    for (const [name, value] of [
      ['timeoutMs', this.timeoutMs],
      ['payTimeoutMs', this.payTimeoutMs],
    ] as const)
      if (!Number.isSafeInteger(value) || value <= 0 || value > 600_000)
        throw new FedAiError('INVALID_REQUEST', `${name} must be a whole number of ms (1 to 600,000)`);
    this.nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
    this.watcher = new InvoiceWatcher({
      lookup: (hash) => this.lookupInvoice(hash),
      pollIntervalMs: options.pollIntervalMs ?? 2_000,
      maxWatched: options.maxWatchedInvoices ?? 1_000,
      nowS: this.nowS,
    });
  }

  private connect(): Promise<{ sdk: Sdk; client: Client }> {
    this.#client ??= loadSdk().then((sdk) => ({
      sdk,
      client: new sdk.NWCClient({
        relayUrls: this.#connection.relayUrls,
        walletPubkey: this.#connection.walletPubkey,
        secret: this.#connection.secretHex,
      }),
    }));
    return this.#client;
  }

  /**
   * One NIP-47 request with a timeout. Throws NwcCallError: the wallet's code when it answered with an
   * error, NO_ANSWER when nothing (readable) came back in time.
   */
  private async call<T>(method: string, run: (client: Client) => Promise<T>, timeoutMs = this.timeoutMs) {
    const { sdk, client } = await this.connect();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new NwcCallError('NO_ANSWER', `nwc: ${method} got no answer within ${timeoutMs} ms`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([run(client), timeout]);
    } catch (error) {
      if (error instanceof NwcCallError) throw error;
      if (error instanceof sdk.Nip47WalletError || error instanceof sdk.Nip47UnsupportedEncryptionError) {
        const code = /^[A-Z_]{1,40}$/.test(error.code) ? error.code : 'OTHER';
        throw new NwcCallError(
          code,
          `nwc: ${method} refused: ${code}: ${String(error.message).slice(0, 500)}`,
        );
      }
      const kind =
        error instanceof Error && error.constructor.name !== 'Error' ? error.constructor.name : 'error';
      throw new NwcCallError('NO_ANSWER', `nwc: ${method} got no answer (${kind})`);
    } finally {
      clearTimeout(timer);
    }
  }

  private unreadable(method: string, why = 'an unreadable answer'): NwcCallError {
    return new NwcCallError('NO_ANSWER', `nwc: ${method} gave ${why}`);
  }

  /** `get_balance`: msat. */
  async balanceMsat(): Promise<number> {
    const answer = await this.call('get_balance', (c) => c.getBalance());
    const parsed = balanceAnswer.safeParse(answer);
    if (!parsed.success) throw this.unreadable('get_balance');
    return parsed.data.balance;
  }

  async createInvoice(input: CreateInvoiceInput): Promise<Invoice> {
    if (!Number.isSafeInteger(input.amountMsat) || input.amountMsat <= 0)
      throw new FedAiError('INVALID_REQUEST', `amount_msat must be a positive integer (${input.amountMsat})`);
    if (!Number.isSafeInteger(input.expirySeconds) || input.expirySeconds <= 0)
      throw new FedAiError('INVALID_REQUEST', `expiry must be a positive integer (${input.expirySeconds})`);
    const answer = await this.call('make_invoice', (c) =>
      c.makeInvoice({
        amount: input.amountMsat,
        description: input.description,
        expiry: input.expirySeconds,
      }),
    );
    const parsed = transaction.safeParse(answer);
    if (!parsed.success || !parsed.data.invoice) throw this.unreadable('make_invoice');
    const invoice = this.invoiceOf(parsed.data, 'make_invoice');
    if (invoice.amountMsat !== input.amountMsat)
      throw this.unreadable(
        'make_invoice',
        `an invoice of ${invoice.amountMsat} msat, not ${input.amountMsat}`,
      );
    if (invoice.expiresAtS - invoice.createdAtS !== input.expirySeconds)
      throw this.unreadable('make_invoice', 'an invoice with another expiry');
    this.watcher.watch(invoice.paymentHash, invoice.expiresAtS);
    return { ...invoice, state: 'open', preimage: undefined, settledAtS: undefined };
  }

  /** An incoming NIP-47 transaction as an Invoice: the BOLT11 decoded and checked. */
  private invoiceOf(tx: Transaction, method: string): Invoice {
    const text = tx.invoice ?? '';
    let decoded: ReturnType<typeof decodeInvoice>;
    let createdAtS: number;
    try {
      decoded = decodeInvoice(text);
      const lower = text.trim().toLowerCase();
      createdAtS = bolt11.decode(lower, lower.startsWith('lnbcrt') ? REGTEST : undefined).timestamp ?? 0;
    } catch {
      throw this.unreadable(method, 'an invoice that does not decode');
    }
    if (decoded.paymentHash !== tx.payment_hash || decoded.amountMsat !== tx.amount)
      throw this.unreadable(method, 'fields that do not match the invoice');
    const settled = tx.state === 'settled' || (tx.state === undefined && !!tx.settled_at);
    let preimage: string | undefined;
    if (settled) {
      preimage = (tx.preimage ?? '').toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(preimage) || sha256Hex(preimage) !== tx.payment_hash)
        throw this.unreadable(method, 'a preimage that does not hash to the payment hash');
    }
    return {
      paymentHash: tx.payment_hash,
      bolt11: text.trim(),
      amountMsat: decoded.amountMsat,
      description: tx.description ?? decoded.description,
      createdAtS,
      expiresAtS: decoded.expiresAtS,
      state: settled
        ? 'settled'
        : tx.state === 'expired' || tx.state === 'failed' || this.nowS() >= decoded.expiresAtS
          ? 'expired'
          : 'open',
      preimage,
      settledAtS: settled ? (tx.settled_at ?? undefined) : undefined,
    };
  }

  /** `lookup_invoice {payment_hash}`; null when the wallet knows none (or only a payment). */
  private async lookup(paymentHash: string): Promise<Transaction | null> {
    try {
      const answer = await this.call('lookup_invoice', (c) => c.lookupInvoice({ payment_hash: paymentHash }));
      const parsed = transaction.safeParse(answer);
      if (!parsed.success || parsed.data.payment_hash !== paymentHash)
        throw this.unreadable('lookup_invoice');
      return parsed.data;
    } catch (error) {
      if (error instanceof NwcCallError && error.code === 'NOT_FOUND') return null;
      throw error;
    }
  }

  async lookupInvoice(paymentHash: string): Promise<Invoice | null> {
    if (!/^[0-9a-fA-F]{64}$/.test(paymentHash)) return null;
    const tx = await this.lookup(paymentHash.toLowerCase());
    if (tx?.type !== 'incoming' || !tx.invoice) return null;
    return this.invoiceOf(tx, 'lookup_invoice');
  }

  /** `lookup_invoice` of an outgoing payment: settled / failed / pending; none: unknown. */
  async lookupPayment(paymentHash: string): Promise<PaymentStatus> {
    const hash = paymentHash.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(hash)) return { state: 'unknown', paymentHash: hash };
    const tx = await this.lookup(hash);
    if (tx?.type !== 'outgoing') return { state: 'unknown', paymentHash: hash };
    if (tx.state === 'settled') {
      const preimage = (tx.preimage ?? '').toLowerCase();
      if (!/^[0-9a-f]{64}$/.test(preimage) || sha256Hex(preimage) !== hash)
        throw this.unreadable('lookup_invoice', 'a preimage that does not hash to the payment hash');
      return {
        state: 'succeeded',
        paymentHash: hash,
        preimage,
        amountMsat: tx.amount,
        feeMsat: tx.fees_paid ?? 0,
      };
    }
    // NIP-47 keeps no failure reason.
    if (tx.state === 'failed') return { state: 'failed', paymentHash: hash, code: 'BACKEND_ERROR' };
    return { state: 'pending', paymentHash: hash };
  }

  /**
   * `pay_invoice {invoice}`. Idempotent by payment hash: `lookup_invoice` is asked first and a
   * settled or pending payment is never sent again. NIP-47 takes no fee limit (the wallet's own
   * limits apply; the fee it reports is passed on). Throws LightningPaymentError: definite for
   * refusals before paying (quota, balance, restricted, rate limited, unauthorized, not found)
   * and for a failure the wallet confirms (`lookup_invoice`: failed, or no payment at all); not
   * definite when no answer came, or the outcome is otherwise unknown: ask `lookupPayment` later.
   */
  async payInvoice(paymentRequest: string, options: { maxFeeMsat: number }): Promise<PaymentResult> {
    let decoded: ReturnType<typeof decodeInvoice>;
    try {
      decoded = decodeInvoice(paymentRequest);
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
    const hash = decoded.paymentHash;
    const unknown = (why: string) => new LightningPaymentError('BACKEND_ERROR', `nwc: ${why}`, false);
    const before = await this.lookupPayment(hash).catch((error: unknown) => {
      throw unknown(`could not ask about an earlier payment (${(error as Error).message}); nothing sent`);
    });
    if (before.state === 'succeeded') return paymentResultOf(before);
    if (before.state === 'pending') throw unknown('a payment of this invoice is in flight; look it up later');

    let answer: unknown;
    try {
      answer = await this.call(
        'pay_invoice',
        (c) => c.payInvoice({ invoice: paymentRequest.trim() }),
        this.payTimeoutMs,
      );
    } catch (error) {
      if (!(error instanceof NwcCallError) || !error.answered)
        throw unknown(`${(error as Error).message} (the outcome is unknown)`);
      const refused = REFUSED_BEFORE_PAYING[error.code];
      if (refused) throw new LightningPaymentError(refused, error.message, true);
      return this.confirmFailure(hash, error);
    }
    const paid = payAnswer.safeParse(answer);
    const preimage = paid.success ? paid.data.preimage.toLowerCase() : '';
    if (!/^[0-9a-f]{64}$/.test(preimage) || sha256Hex(preimage) !== hash)
      throw unknown(
        'an unreadable answer or a preimage that does not hash to the payment hash (the outcome is unknown)',
      );
    return {
      paymentHash: hash,
      preimage,
      amountMsat: decoded.amountMsat,
      feeMsat: paid.data?.fees_paid ?? 0,
    };
  }

  /**
   * PAYMENT_FAILED, OTHER, INTERNAL or an unknown code: asks the wallet what became of the payment.
   * Settled: the result. Failed: definite. No payment of this hash: definite for PAYMENT_FAILED
   * and OTHER (refused before sending), unknown for INTERNAL and unknown codes. Else unknown.
   */
  private async confirmFailure(hash: string, error: NwcCallError): Promise<PaymentResult> {
    const code = failureCodeOf(error.code, error.message);
    const status = await this.lookupPayment(hash).catch(() => null);
    if (status?.state === 'succeeded') return paymentResultOf(status);
    const definite =
      status?.state === 'failed' ||
      (status?.state === 'unknown' && (error.code === 'PAYMENT_FAILED' || error.code === 'OTHER'));
    throw new LightningPaymentError(
      code,
      definite ? error.message : `${error.message} (the outcome is unknown)`,
      definite,
    );
  }

  /** Polls the open invoices this adapter created while a listener is registered (a hint). */
  onSettled(listener: (invoice: Invoice) => void): () => void {
    return this.watcher.onSettled(listener);
  }

  /** Stops polling (listeners stay registered but hear nothing more). */
  close(): void {
    this.watcher.stop();
  }

  /** Stops polling and closes the relay connections. */
  async destroy(): Promise<void> {
    this.close();
    const opened = this.#client;
    this.#client = undefined;
    if (opened) (await opened.catch(() => null))?.client.close();
  }

  /** One pass over the watched invoices (never two at once). */
  async pollWatched(): Promise<number> {
    return this.watcher.poll();
  }
}
