// The devnet Lightning service's books: wallets with balances in msat, the invoices it issued
// (real BOLT11, signed with its node key; the preimage is kept and revealed only once paid) and
// the payments between its own wallets. A payment is ONE transaction: lock both wallet rows (in id
// order), lock the invoice, check, debit the payer, credit the payee, mark the invoice paid and
// record the payment. Idempotent by payment hash: an invoice is paid at most once.
//
// Money is created in one place only: the mint wallet (at most one, flagged at creation through
// the devnet admin route) may go below zero. Every other wallet's balance stays >= 0 (a CHECK).
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { Db, Migration, Queryable } from '@fed-ai/kit';
import { decodeInvoice, encodeInvoice, sha256Hex } from '@fed-ai/lightning';

export const DEVNET_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'wallets_invoices_payments',
    sql: `CREATE TABLE IF NOT EXISTS devnet_wallets (
      id TEXT PRIMARY KEY,
      name TEXT NOT NULL,
      admin_key_hash TEXT NOT NULL UNIQUE,
      invoice_key_hash TEXT NOT NULL UNIQUE,
      balance_msat BIGINT NOT NULL DEFAULT 0,
      mint BOOLEAN NOT NULL DEFAULT false,
      created_at_s BIGINT NOT NULL,
      CHECK (mint OR balance_msat >= 0)
    );
    CREATE UNIQUE INDEX IF NOT EXISTS devnet_wallets_one_mint ON devnet_wallets (mint) WHERE mint;
    CREATE TABLE IF NOT EXISTS devnet_invoices (
      payment_hash TEXT PRIMARY KEY,
      wallet_id TEXT NOT NULL REFERENCES devnet_wallets (id),
      bolt11 TEXT NOT NULL,
      amount_msat BIGINT NOT NULL CHECK (amount_msat > 0),
      memo TEXT NOT NULL,
      preimage TEXT NOT NULL,
      created_at_s BIGINT NOT NULL,
      expires_at_s BIGINT NOT NULL,
      paid_at_s BIGINT
    );
    CREATE TABLE IF NOT EXISTS devnet_payments (
      payment_hash TEXT PRIMARY KEY REFERENCES devnet_invoices (payment_hash),
      wallet_id TEXT NOT NULL REFERENCES devnet_wallets (id),
      amount_msat BIGINT NOT NULL CHECK (amount_msat > 0),
      fee_msat BIGINT NOT NULL DEFAULT 0,
      created_at_s BIGINT NOT NULL
    );`,
  },
];

/** A refusal with LNbits' status and sentence (`{"detail": ...}` on the wire). */
export class DevnetError extends Error {
  constructor(
    readonly status: number,
    readonly detail: string,
  ) {
    super(detail);
    this.name = 'DevnetError';
  }
}

/** LNbits answers payment errors with HTTP 520. */
const PAYMENT_ERROR = 520;

export interface Wallet {
  id: string;
  name: string;
  balance_msat: number;
  mint: boolean;
}

export interface NewWallet extends Wallet {
  adminkey: string;
  inkey: string;
}

interface InvoiceRow {
  payment_hash: string;
  wallet_id: string;
  bolt11: string;
  amount_msat: number;
  memo: string;
  preimage: string;
  created_at_s: number;
  expires_at_s: number;
  paid_at_s: number | null;
}

/** What `GET /api/v1/payments/:hash` answers (LNbits' shape; amounts in msat). */
export interface PaymentView {
  paid: boolean;
  status: 'success' | 'pending';
  preimage: string | null;
  details?: {
    payment_hash: string;
    checking_id: string;
    wallet_id: string;
    amount: number;
    fee: number;
    bolt11: string;
    memo: string;
    time: number;
    expiry: number;
    status: 'success' | 'pending';
  };
}

const keyHash = (key: string) => createHash('sha256').update(key, 'utf8').digest('hex');

/** Constant-time comparison of two secrets (by their hashes, so lengths may differ). */
export function sameSecret(given: string, expected: string): boolean {
  return timingSafeEqual(Buffer.from(keyHash(given), 'hex'), Buffer.from(keyHash(expected), 'hex'));
}

export class DevnetStore {
  constructor(
    private readonly db: Db,
    private readonly nodeSecretKeyHex: string,
    private readonly nowS: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  async createWallet(name: string, mint: boolean): Promise<NewWallet> {
    const wallet: NewWallet = {
      id: randomBytes(16).toString('hex'),
      name,
      balance_msat: 0,
      mint,
      adminkey: randomBytes(16).toString('hex'),
      inkey: randomBytes(16).toString('hex'),
    };
    try {
      await this.db.query(
        `INSERT INTO devnet_wallets (id, name, admin_key_hash, invoice_key_hash, mint, created_at_s)
         VALUES ($1, $2, $3, $4, $5, $6)`,
        [wallet.id, name, keyHash(wallet.adminkey), keyHash(wallet.inkey), mint, this.nowS()],
      );
    } catch (error) {
      if (mint && /devnet_wallets_one_mint|unique|duplicate/i.test((error as Error).message))
        throw new DevnetError(409, 'A mint wallet exists already (there is one).');
      throw error;
    }
    return wallet;
  }

  /** The wallet a key opens, and whether it is the admin key; null for an unknown key. */
  async walletForKey(key: string): Promise<{ wallet: Wallet; admin: boolean } | null> {
    const hash = keyHash(key);
    const rows = await this.db.query<Wallet & { admin_key_hash: string }>(
      `SELECT id, name, balance_msat, mint, admin_key_hash FROM devnet_wallets
       WHERE admin_key_hash = $1 OR invoice_key_hash = $1`,
      [hash],
    );
    const row = rows.rows[0];
    if (!row) return null;
    return {
      wallet: { id: row.id, name: row.name, balance_msat: row.balance_msat, mint: row.mint },
      admin: row.admin_key_hash === hash,
    };
  }

  async createInvoice(
    walletId: string,
    input: { amountMsat: number; memo: string; expirySeconds: number; descriptionHash?: string },
  ): Promise<{ paymentHash: string; bolt11: string }> {
    const now = this.nowS();
    const encoded = encodeInvoice({
      amountMsat: input.amountMsat,
      description: input.memo,
      expirySeconds: input.expirySeconds,
      nodeSecretKeyHex: this.nodeSecretKeyHex,
      nowS: now,
      ...(input.descriptionHash ? { descriptionHash: input.descriptionHash } : {}),
    });
    await this.db.query(
      `INSERT INTO devnet_invoices (payment_hash, wallet_id, bolt11, amount_msat, memo, preimage, created_at_s, expires_at_s)
       VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
      [
        encoded.paymentHash,
        walletId,
        encoded.bolt11,
        input.amountMsat,
        input.memo,
        encoded.preimage,
        encoded.createdAtS,
        encoded.expiresAtS,
      ],
    );
    return { paymentHash: encoded.paymentHash, bolt11: encoded.bolt11 };
  }

  /**
   * Pays `bolt11` from `payerId`, in one transaction. Only invoices this service issued can be
   * paid (there is no route anywhere else). Paying an invoice of the payer's own wallet is
   * allowed, as LNbits allows it. Refusals are LNbits' sentences with status 520 (400 for an
   * unreadable invoice).
   */
  async pay(payerId: string, bolt11: string): Promise<{ paymentHash: string }> {
    let hash: string;
    try {
      hash = decodeInvoice(bolt11).paymentHash;
    } catch {
      throw new DevnetError(400, 'Bolt11 decoding failed.');
    }
    const text = bolt11.trim().toLowerCase();
    return this.db.transaction(async (tx) => {
      const found = await tx.query<InvoiceRow>('SELECT * FROM devnet_invoices WHERE payment_hash = $1', [
        hash,
      ]);
      const invoice = found.rows[0];
      // The hash alone is not enough: the invoice must be the very one issued here.
      if (!invoice || invoice.bolt11.toLowerCase() !== text)
        throw new DevnetError(
          PAYMENT_ERROR,
          'Payment failed: no route to the payee (this devnet service settles only invoices it issued).',
        );
      // Both wallet rows, in id order (two payments in opposite directions cannot deadlock), then
      // the invoice row.
      await tx.query('SELECT id FROM devnet_wallets WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE', [
        [payerId, invoice.wallet_id],
      ]);
      const locked = await tx.query<InvoiceRow>(
        'SELECT * FROM devnet_invoices WHERE payment_hash = $1 FOR UPDATE',
        [hash],
      );
      const row = locked.rows[0]!;
      if (row.paid_at_s !== null) throw new DevnetError(PAYMENT_ERROR, 'Internal invoice already paid.');
      const now = this.nowS();
      if (row.expires_at_s <= now) throw new DevnetError(PAYMENT_ERROR, 'Invoice has expired.');
      const debited = await tx.query(
        `UPDATE devnet_wallets SET balance_msat = balance_msat - $2
         WHERE id = $1 AND (mint OR balance_msat >= $2) RETURNING id`,
        [payerId, row.amount_msat],
      );
      if (debited.rows.length !== 1) throw new DevnetError(PAYMENT_ERROR, 'Insufficient balance.');
      await tx.query('UPDATE devnet_wallets SET balance_msat = balance_msat + $2 WHERE id = $1', [
        row.wallet_id,
        row.amount_msat,
      ]);
      const marked = await tx.query(
        'UPDATE devnet_invoices SET paid_at_s = $2 WHERE payment_hash = $1 AND paid_at_s IS NULL RETURNING payment_hash',
        [hash, now],
      );
      if (marked.rows.length !== 1) throw new DevnetError(PAYMENT_ERROR, 'Internal invoice already paid.');
      if (sha256Hex(row.preimage) !== hash) throw new Error('stored preimage does not match its hash');
      await tx.query(
        `INSERT INTO devnet_payments (payment_hash, wallet_id, amount_msat, fee_msat, created_at_s)
         VALUES ($1, $2, $3, 0, $4)`,
        [hash, payerId, row.amount_msat, now],
      );
      return { paymentHash: hash };
    });
  }

  /**
   * LNbits' view of a payment hash: with the key of a wallet that paid it or issued it, the
   * details (outgoing first: amount negative); otherwise only whether it is paid. The preimage
   * only once paid. Null when this service never issued the hash.
   */
  async paymentView(hash: string, walletId: string | null): Promise<PaymentView | null> {
    const invoice = (
      await this.db.query<InvoiceRow>('SELECT * FROM devnet_invoices WHERE payment_hash = $1', [hash])
    ).rows[0];
    if (!invoice) return null;
    const paid = invoice.paid_at_s !== null;
    const status = paid ? ('success' as const) : ('pending' as const);
    const view: PaymentView = { paid, status, preimage: paid ? invoice.preimage : null };
    if (walletId === null) return view;
    const outgoing = (
      await this.db.query<{ amount_msat: number; fee_msat: number; created_at_s: number }>(
        'SELECT amount_msat, fee_msat, created_at_s FROM devnet_payments WHERE payment_hash = $1 AND wallet_id = $2',
        [hash, walletId],
      )
    ).rows[0];
    const base = {
      payment_hash: hash,
      wallet_id: walletId,
      bolt11: invoice.bolt11,
      memo: invoice.memo,
      expiry: invoice.expires_at_s,
      status,
    };
    if (outgoing)
      return {
        ...view,
        details: {
          ...base,
          checking_id: `internal_${hash}`,
          amount: -outgoing.amount_msat,
          fee: -outgoing.fee_msat,
          time: outgoing.created_at_s,
        },
      };
    if (invoice.wallet_id === walletId)
      return {
        ...view,
        details: {
          ...base,
          checking_id: hash,
          amount: invoice.amount_msat,
          fee: 0,
          time: invoice.created_at_s,
        },
      };
    return view;
  }

  /** The sum of all balances: zero when no money was created or lost (the mint's debt included). */
  async totalMsat(q: Queryable = this.db): Promise<number> {
    const rows = await q.query<{ total: string | null }>(
      'SELECT SUM(balance_msat)::text AS total FROM devnet_wallets',
    );
    return Number(rows.rows[0]?.total ?? 0);
  }
}
