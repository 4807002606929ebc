// One interface for every Lightning backend: LND REST, Core Lightning (clnrest), LNbits, an
// upstream NWC wallet, and the internal backend that settles invoices between accounts of this
// system without the Lightning network (the default for local networks and tests).

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

export interface LightningBackend {
  readonly name: 'internal' | 'lnd' | 'cln' | 'lnbits' | 'nwc';
  createInvoice(input: { amountMsat: number; description: string; expirySeconds: number }): Promise<Invoice>;
  lookupInvoice(paymentHash: string): Promise<Invoice | null>;
  /** Pays an invoice; resolves once settled, with the preimage as proof. */
  payInvoice(bolt11: string, options: { maxFeeMsat: number }): Promise<PaymentResult>;
  /** Called once for each invoice that becomes settled. Returns an unsubscribe function. */
  onSettled(listener: (invoice: Invoice) => void): () => void;
}
