// The internal Lightning backend: real, signed BOLT11 invoices, settled between accounts of this
// system without the Lightning network (like LNbits' internal payments). The preimage is revealed
// only when an invoice is paid, and a payment is accepted only if sha256(preimage) = payment hash.
// Its one table (`invoices`) is the backend's own state, as a Lightning node's database would be:
// its users keep their invoice and payment state in their own tables.
import { type Db, type Migration, migrate } from '@fed-ai/kit';
import {
  type CreateInvoiceInput,
  type Invoice,
  type LightningBackend,
  LightningPaymentError,
  type PaymentResult,
  type PaymentStatus,
} from './backend';
import { decodeInvoice, encodeInvoice, sha256Hex } from './bolt11';

/** The migrations' service name: settlement's, where the table first lived (existing data dirs). */
export const INVOICE_MIGRATIONS_SERVICE = 'settlement-invoices';
const MAX_LISTENERS = 64;

export const INVOICE_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'invoices',
    sql: `CREATE TABLE IF NOT EXISTS invoices (
      payment_hash TEXT PRIMARY KEY,
      bolt11 TEXT NOT NULL,
      amount_msat BIGINT NOT NULL CHECK (amount_msat > 0),
      description TEXT NOT NULL,
      preimage TEXT NOT NULL,
      created_at_s BIGINT NOT NULL,
      expires_at_s BIGINT NOT NULL,
      settled_at_s BIGINT
    );`,
  },
];

interface InvoiceRow {
  payment_hash: string;
  bolt11: string;
  amount_msat: number;
  description: string;
  preimage: string;
  created_at_s: number;
  expires_at_s: number;
  settled_at_s: number | null;
}

export class InternalLightning implements LightningBackend {
  readonly name = 'internal' as const;
  private readonly listeners = new Set<(invoice: Invoice) => void>();

  /** Creates the backend's table if needed (versioned migrations), then the backend. */
  static async open(
    db: Db,
    nodeSecretKeyHex: string,
    nowS: () => number = () => Math.floor(Date.now() / 1000),
  ): Promise<InternalLightning> {
    await migrate(db, INVOICE_MIGRATIONS_SERVICE, INVOICE_MIGRATIONS);
    return new InternalLightning(db, nodeSecretKeyHex, nowS);
  }

  constructor(
    private readonly db: Db,
    /** Signs invoices: the settlement service's node key (hex). */
    private readonly nodeSecretKeyHex: string,
    private readonly nowS: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  private toInvoice(r: InvoiceRow, withPreimage: boolean): Invoice {
    const now = this.nowS();
    return {
      paymentHash: r.payment_hash,
      bolt11: r.bolt11,
      amountMsat: r.amount_msat,
      description: r.description,
      createdAtS: r.created_at_s,
      expiresAtS: r.expires_at_s,
      state: r.settled_at_s !== null ? 'settled' : now >= r.expires_at_s ? 'expired' : 'open',
      preimage: withPreimage && r.settled_at_s !== null ? r.preimage : undefined,
      settledAtS: r.settled_at_s ?? undefined,
    };
  }

  async createInvoice(input: CreateInvoiceInput): Promise<Invoice> {
    const encoded = encodeInvoice({ ...input, nodeSecretKeyHex: this.nodeSecretKeyHex, nowS: this.nowS() });
    await this.db.query(
      `INSERT INTO invoices (payment_hash, bolt11, amount_msat, description, preimage, created_at_s, expires_at_s) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
      [
        encoded.paymentHash,
        encoded.bolt11,
        input.amountMsat,
        input.description,
        encoded.preimage,
        encoded.createdAtS,
        encoded.expiresAtS,
      ],
    );
    return {
      paymentHash: encoded.paymentHash,
      bolt11: encoded.bolt11,
      amountMsat: input.amountMsat,
      description: input.description,
      createdAtS: encoded.createdAtS,
      expiresAtS: encoded.expiresAtS,
      state: 'open',
    };
  }

  async lookupInvoice(paymentHash: string): Promise<Invoice | null> {
    const rows = await this.db.query<InvoiceRow>('SELECT * FROM invoices WHERE payment_hash = $1', [
      paymentHash,
    ]);
    return rows.rows[0] ? this.toInvoice(rows.rows[0], true) : null;
  }

  /**
   * Pays one of our own invoices: marks it settled exactly once and reveals the preimage.
   * Invoices of other nodes need a real Lightning backend. Every failure is definite: the payment
   * is one UPDATE, so it either happened or not.
   */
  async payInvoice(bolt11: string, _options: { maxFeeMsat: number }): Promise<PaymentResult> {
    let paymentHash: string;
    try {
      paymentHash = decodeInvoice(bolt11).paymentHash;
    } catch (error) {
      throw new LightningPaymentError(
        'INVOICE_NOT_FOUND',
        `not a BOLT11 invoice: ${(error as Error).message}`,
        true,
      );
    }
    const now = this.nowS();
    const updated = await this.db.query<InvoiceRow>(
      `UPDATE invoices SET settled_at_s = $2 WHERE payment_hash = $1 AND settled_at_s IS NULL AND expires_at_s > $2 RETURNING *`,
      [paymentHash, now],
    );
    const row = updated.rows[0];
    if (!row) {
      const existing = await this.lookupInvoice(paymentHash);
      if (!existing)
        throw new LightningPaymentError(
          'INVOICE_NOT_FOUND',
          'not an invoice of this system (the internal backend pays only its own)',
          true,
        );
      if (existing.state === 'expired')
        throw new LightningPaymentError('INVOICE_EXPIRED', 'invoice expired', true);
      throw new LightningPaymentError('ALREADY_PAID', 'invoice already paid', true);
    }
    if (sha256Hex(row.preimage) !== row.payment_hash)
      throw new Error('stored preimage does not match its hash');
    const invoice = this.toInvoice(row, true);
    for (const listener of this.listeners) {
      try {
        listener(invoice);
      } catch {
        // A listener's failure is its own; the payment happened.
      }
    }
    return { paymentHash: row.payment_hash, preimage: row.preimage, amountMsat: row.amount_msat, feeMsat: 0 };
  }

  /**
   * Every invoice of this backend is paid by it (internally), so a settled invoice is a succeeded
   * payment; anything else was never paid (a payment is atomic here: never pending).
   */
  async lookupPayment(paymentHash: string): Promise<PaymentStatus> {
    const invoice = await this.lookupInvoice(paymentHash);
    if (invoice?.state === 'settled' && invoice.preimage)
      return {
        state: 'succeeded',
        paymentHash,
        preimage: invoice.preimage,
        amountMsat: invoice.amountMsat,
        feeMsat: 0,
      };
    return { state: 'unknown', paymentHash };
  }

  onSettled(listener: (invoice: Invoice) => void): () => void {
    if (this.listeners.size >= MAX_LISTENERS) throw new RangeError(`more than ${MAX_LISTENERS} listeners`);
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
