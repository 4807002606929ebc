// NIP-47 transaction objects from the fleet's invoice and payment rows (make_invoice, lookup_invoice,
// list_transactions and notifications all answer in this one shape).

export interface InvoiceRowForNwc {
  payment_hash: string;
  bolt11: string;
  amount_msat: string | number;
  description: string;
  created_at_s: string | number;
  expires_at_s: string | number;
  settled_at_s: string | number | null;
  preimage: string | null;
}

export interface PaymentRowForNwc {
  payment_hash: string;
  bolt11: string;
  amount_msat: string | number;
  fee_msat: string | number | null;
  description: string | null;
  state: 'sending' | 'succeeded' | 'failed';
  preimage: string | null;
  created_at_s: string | number;
  settled_at_s: string | number | null;
}

export interface NwcTransaction {
  type: 'incoming' | 'outgoing';
  state: 'pending' | 'settled' | 'expired' | 'failed';
  invoice: string;
  description: string;
  description_hash: string;
  preimage: string;
  payment_hash: string;
  amount: number;
  fees_paid: number;
  created_at: number;
  expires_at: number | null;
  settled_at: number | null;
  metadata: Record<string, never>;
}

export function incomingTransaction(row: InvoiceRowForNwc, nowS: number): NwcTransaction {
  const settled = row.settled_at_s !== null;
  return {
    type: 'incoming',
    state: settled ? 'settled' : Number(row.expires_at_s) <= nowS ? 'expired' : 'pending',
    invoice: row.bolt11,
    description: row.description,
    description_hash: '',
    preimage: settled ? (row.preimage ?? '') : '',
    payment_hash: row.payment_hash,
    amount: Number(row.amount_msat),
    fees_paid: 0,
    created_at: Number(row.created_at_s),
    expires_at: Number(row.expires_at_s),
    settled_at: settled ? Number(row.settled_at_s) : null,
    metadata: {},
  };
}

export function outgoingTransaction(row: PaymentRowForNwc): NwcTransaction {
  return {
    type: 'outgoing',
    state: row.state === 'succeeded' ? 'settled' : row.state === 'failed' ? 'failed' : 'pending',
    invoice: row.bolt11,
    description: row.description ?? '',
    description_hash: '',
    preimage: row.preimage ?? '',
    payment_hash: row.payment_hash,
    amount: Number(row.amount_msat),
    fees_paid: Number(row.fee_msat ?? 0),
    created_at: Number(row.created_at_s),
    expires_at: null,
    settled_at: row.settled_at_s === null ? null : Number(row.settled_at_s),
    metadata: {},
  };
}
