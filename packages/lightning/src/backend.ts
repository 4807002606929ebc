// One interface for every Lightning backend: LND REST, Core Lightning (clnrest), LNbits, an
// upstream NWC wallet, and the internal backend that settles invoices between accounts of this
// system without the Lightning network (the default for local networks and tests).
//
// Backends are stateless adapters: they create, look up and pay invoices on the node or wallet
// they front, and report settled invoices. Whoever uses one (settlement) keeps its own invoice and
// payment state in its own tables and asks the backend again after a crash (`lookupPayment`).

export const LIGHTNING_BACKENDS = [
  'internal',
  'lnd',
  'cln',
  'lnbits',
  'nwc',
  // An account at a fed-ai settlement service (settlement-account.ts), for services such as the
  // wallet fleet. Never settlement's own backend: its config accepts only `internal`.
  'settlement',
] as const;
export type LightningBackendName = (typeof LIGHTNING_BACKENDS)[number];

export interface Invoice {
  paymentHash: string;
  bolt11: string;
  amountMsat: number;
  description: string;
  createdAtS: number;
  expiresAtS: number;
  state: 'open' | 'settled' | 'expired';
  /** Known once settled. */
  preimage?: string | undefined;
  settledAtS?: number | undefined;
}

export interface PaymentResult {
  paymentHash: string;
  preimage: string;
  amountMsat: number;
  feeMsat: number;
}

/** What the backend knows of an outgoing payment, by payment hash. */
export type PaymentStatus =
  | ({ state: 'succeeded' } & PaymentResult)
  | { state: 'failed'; paymentHash: string; code: PaymentFailureCode }
  /** In flight: neither outcome is final yet. Ask again later. */
  | { state: 'pending'; paymentHash: string }
  /** The backend never attempted (or does not remember) a payment of this hash. */
  | { state: 'unknown'; paymentHash: string };

export type PaymentFailureCode =
  | 'INVOICE_NOT_FOUND'
  | 'INVOICE_EXPIRED'
  | 'ALREADY_PAID'
  | 'NO_ROUTE'
  | 'FEE_TOO_HIGH'
  /** The account the backend pays from cannot cover the amount (and the most fee). */
  | 'INSUFFICIENT_BALANCE'
  | 'BACKEND_ERROR';

/** The result part of a succeeded payment status (what `payInvoice` returns). */
export function paymentResultOf(status: Extract<PaymentStatus, { state: 'succeeded' }>): PaymentResult {
  return {
    paymentHash: status.paymentHash,
    preimage: status.preimage,
    amountMsat: status.amountMsat,
    feeMsat: status.feeMsat,
  };
}

/**
 * A refused or failed payment. `definite` is true when no part of the payment can still arrive
 * (no HTLC in flight): the caller may release what it held. When false the outcome is unknown and
 * the caller must ask `lookupPayment` later instead.
 */
export class LightningPaymentError extends Error {
  constructor(
    readonly code: PaymentFailureCode,
    message: string,
    readonly definite: boolean,
  ) {
    super(message);
    this.name = 'LightningPaymentError';
  }
}

export interface CreateInvoiceInput {
  amountMsat: number;
  description: string;
  expirySeconds: number;
}

export interface LightningBackend {
  readonly name: LightningBackendName;
  createInvoice(input: CreateInvoiceInput): Promise<Invoice>;
  /** An invoice this backend issued; null if it never did. */
  lookupInvoice(paymentHash: string): Promise<Invoice | null>;
  /**
   * Pays an invoice; resolves once settled, with the preimage as proof. Throws
   * LightningPaymentError (see `definite`) when it did not succeed.
   */
  payInvoice(bolt11: string, options: { maxFeeMsat: number }): Promise<PaymentResult>;
  /** The state of an outgoing payment this backend was asked to make (crash recovery). */
  lookupPayment(paymentHash: string): Promise<PaymentStatus>;
  /**
   * Called for invoices that become settled (a hint: callers also poll `lookupInvoice`, since a
   * listener misses what settled while the process was down). Returns an unsubscribe function.
   */
  onSettled(listener: (invoice: Invoice) => void): () => void;
}
