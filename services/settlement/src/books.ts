// The network's books on top of the ledger: account layout, tab top-ups through Lightning
// invoices, refunds paid over Lightning, reservations before dispatch, captures split into node
// earnings and router fee, and releases. Every operation has a deterministic id derived from its
// request (a transfer id; for a capture from a lease, its charge row's key), so a retry (after a
// timeout or a crash) can never move money twice.
//
// Settlement owns the invoice and payment state (`topups`, `payments`); the Lightning backend is a
// stateless adapter it asks (create, look up, pay) and asks again after a crash.
import { randomUUID } from 'node:crypto';
import { type Db, GroupCommit, type ItemOutcome, type Migration, type Queryable } from '@fed-ai/kit';
import {
  ACCOUNT_FLAGS,
  type Account,
  availableMsat,
  type Ledger,
  type StoredTransfer,
  type TransferInput,
  type TransferResult,
} from '@fed-ai/ledger';
import {
  type BitcoinNetwork,
  decodeInvoice,
  type Invoice,
  invoiceNetwork,
  type LightningBackend,
  LightningPaymentError,
  type PaymentFailureCode,
  type PaymentStatus,
  sha256Hex,
} from '@fed-ai/lightning';
import {
  checkMeteringRecord,
  FedAiError,
  KIND,
  type MeteringRecord,
  offloadFeeMsat,
  type ReasonCode,
  splitCharge,
  verifyEnvelope,
} from '@fed-ai/protocol';
import {
  type ChargePart,
  type ExistingCharge,
  type LeaseCapture,
  type LeaseChargePlan,
  planLeaseCharges,
  sameCharge,
} from './lease-charges';

export const ACCOUNTS = {
  /** Asset: what we hold on Lightning. Credits (money out) never exceed debits (money in). */
  lightning: 'lightning',
  /** Devnet only: an unlimited source that pays top-up invoices so demo keys have funds. */
  faucet: 'faucet',
  /** Reservations in flight between a tab and the node/router split. */
  escrow: 'escrow',
  routerFees: 'fees:router',
  tab: (payer: string) => `tab:${payer}`,
  earnings: (node: string) => `earnings:${node}`,
  /** A spending lease's money while it is open (never below zero: captures cannot overdraw it). */
  lease: (leaseId: string) => `lease:${leaseId}`,
} as const;

/**
 * SQL for what the open leases of the tab named by `tabSql` (a column or a parameter) still hold:
 * reserved money of that tab, like its reservations (Books.tab, the admin overview).
 */
export function leasedMsatSql(tabSql: string): string {
  return `COALESCE((SELECT SUM(la.credits_posted - la.debits_posted) FROM leases l
    JOIN ledger_accounts la ON la.id = 'lease:' || l.lease_id
    WHERE l.account = ${tabSql} AND l.closed_at_s IS NULL), 0)::bigint`;
}

/** Ledger transfer ids of a spending lease, from its id (idempotent by lease). */
export const LEASE_IDS = {
  /** The tab's money moved into the lease. */
  open: (leaseId: string) => `lopen:${leaseId}`,
  /** What the lease still held, back to the tab when it closed. */
  close: (leaseId: string) => `lclose:${leaseId}`,
} as const;

/** Ledger transfer ids of a refund, all from the invoice's payment hash (idempotent by invoice). */
export const REFUND_IDS = {
  /** The hold on the tab while the payment is in flight. */
  hold: (hash: string) => `rfd:${hash}`,
  /** Posting the hold to Lightning (an invoice of another node). */
  post: (hash: string) => `rfp:${hash}`,
  /** Posting the hold to the tab an invoice of this system tops up: the top-up's own id. */
  postTopup: (hash: string) => `topup:${hash}`,
  void: (hash: string) => `rfv:${hash}`,
} as const;

export const BOOKS_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'topups_and_charges',
    sql: `CREATE TABLE IF NOT EXISTS topups (
      payment_hash TEXT PRIMARY KEY,
      account TEXT NOT NULL,
      amount_msat BIGINT NOT NULL,
      paid_by TEXT,
      created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS charges (
      op_id TEXT PRIMARY KEY,
      account TEXT NOT NULL,
      node TEXT NOT NULL,
      amount_msat BIGINT NOT NULL,
      node_msat BIGINT NOT NULL,
      router_msat BIGINT NOT NULL,
      metering JSONB NOT NULL,
      created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE INDEX IF NOT EXISTS charges_account ON charges (account, created_at DESC);`,
  },
  {
    // Settlement keeps its invoices' state itself (it no longer reads the internal backend's
    // table). Rows from version 1 have NULLs here and are looked up in the backend once.
    version: 2,
    name: 'invoice_state_and_payments',
    sql: `ALTER TABLE topups ADD COLUMN IF NOT EXISTS expires_at_s BIGINT;
    ALTER TABLE topups ADD COLUMN IF NOT EXISTS settled_at_s BIGINT;
    ALTER TABLE topups ADD COLUMN IF NOT EXISTS preimage TEXT;
    CREATE INDEX IF NOT EXISTS topups_open ON topups (created_at) WHERE settled_at_s IS NULL;
    CREATE TABLE IF NOT EXISTS payments (
      payment_hash TEXT PRIMARY KEY,
      account TEXT NOT NULL,
      destination TEXT NOT NULL,
      bolt11 TEXT NOT NULL,
      amount_msat BIGINT NOT NULL CHECK (amount_msat > 0),
      max_fee_msat BIGINT NOT NULL DEFAULT 0 CHECK (max_fee_msat >= 0),
      fee_msat BIGINT CHECK (fee_msat >= 0),
      state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
      preimage TEXT,
      failure_code TEXT,
      created_at_s BIGINT NOT NULL,
      updated_at_s BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS payments_pending ON payments (created_at_s) WHERE state = 'pending';`,
  },
  {
    // Accounts look their invoices up by hash: settlement answers with the invoice itself, from
    // its own table. Rows before version 3 have NULLs (they are answered from the backend).
    version: 3,
    name: 'topup_invoice_text',
    sql: `ALTER TABLE topups ADD COLUMN IF NOT EXISTS bolt11 TEXT;
    ALTER TABLE topups ADD COLUMN IF NOT EXISTS description TEXT;
    ALTER TABLE topups ADD COLUMN IF NOT EXISTS created_at_s BIGINT;`,
  },
  {
    // Node payouts (payouts.ts): where each node is paid, one row per payout with its statement,
    // and which payout covered each charge. Earnings can never go negative from here on.
    version: 4,
    name: 'node_payouts',
    sql: `ALTER TABLE charges ADD COLUMN IF NOT EXISTS payout_id TEXT;
    CREATE INDEX IF NOT EXISTS charges_unpaid ON charges (node, created_at) WHERE payout_id IS NULL;
    UPDATE ledger_accounts SET flags = flags | ${ACCOUNT_FLAGS.debitsMustNotExceedCredits} WHERE id LIKE 'earnings:%';
    CREATE TABLE IF NOT EXISTS payout_destinations (
      node TEXT PRIMARY KEY,
      kind TEXT NOT NULL CHECK (kind IN ('lightning_address', 'nwc')),
      value TEXT NOT NULL,
      updated_at_s BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS payouts (
      payout_id TEXT PRIMARY KEY,
      node TEXT NOT NULL,
      payment_hash TEXT NOT NULL UNIQUE,
      hold_msat BIGINT NOT NULL CHECK (hold_msat > 0),
      state TEXT NOT NULL CHECK (state IN ('pending', 'succeeded', 'failed')),
      draft JSONB NOT NULL,
      statement JSONB,
      created_at_s BIGINT NOT NULL,
      updated_at_s BIGINT NOT NULL
    );
    CREATE UNIQUE INDEX IF NOT EXISTS payouts_one_open ON payouts (node) WHERE state = 'pending';
    CREATE INDEX IF NOT EXISTS payouts_by_node ON payouts (node, created_at_s DESC);`,
  },
  {
    // Disputes (disputes.ts): one case per charge and claimant, its audit trail, and what each
    // verdict refunded (a refund comes out of the node's earnings: the next payout statement's
    // carried_in_msat shows it).
    version: 5,
    name: 'disputes',
    sql: `CREATE TABLE IF NOT EXISTS disputes (
      case_id TEXT PRIMARY KEY,
      charge_op_id TEXT NOT NULL,
      role TEXT NOT NULL CHECK (role IN ('payer', 'node')),
      party TEXT NOT NULL,
      claimant TEXT NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('opened', 'evidence', 'decided', 'closed')),
      evidence JSONB NOT NULL,
      verdict TEXT CHECK (verdict IN ('refund_full', 'refund_partial', 'charge_stands', 'rejected')),
      rule TEXT,
      detail TEXT,
      refund_msat BIGINT NOT NULL DEFAULT 0 CHECK (refund_msat >= 0),
      node_refund_msat BIGINT NOT NULL DEFAULT 0 CHECK (node_refund_msat >= 0),
      router_refund_msat BIGINT NOT NULL DEFAULT 0 CHECK (router_refund_msat >= 0),
      verdict_envelope JSONB,
      opened_at_s BIGINT NOT NULL,
      decided_at_s BIGINT,
      closed_at_s BIGINT
    );
    CREATE INDEX IF NOT EXISTS disputes_by_charge ON disputes (charge_op_id);
    CREATE INDEX IF NOT EXISTS disputes_open_by_party ON disputes (role, party) WHERE state <> 'closed';
    CREATE TABLE IF NOT EXISTS dispute_events (
      case_id TEXT NOT NULL,
      seq INTEGER NOT NULL,
      from_state TEXT,
      to_state TEXT NOT NULL,
      at_s BIGINT NOT NULL,
      actor TEXT NOT NULL,
      PRIMARY KEY (case_id, seq)
    );`,
  },
  {
    // Spending leases: whose tab a lease came from, which router holds it, and until when
    // (settlement closes it then if the router did not).
    version: 6,
    name: 'spending_leases',
    sql: `CREATE TABLE IF NOT EXISTS leases (
      lease_id TEXT PRIMARY KEY,
      account TEXT NOT NULL,
      router TEXT NOT NULL,
      amount_msat BIGINT NOT NULL,
      expires_at_s BIGINT NOT NULL,
      closed_at_s BIGINT
    );
    CREATE INDEX IF NOT EXISTS leases_open ON leases (expires_at_s) WHERE closed_at_s IS NULL;
    CREATE INDEX IF NOT EXISTS leases_open_by_account ON leases (account) WHERE closed_at_s IS NULL;`,
  },
];

const ok = (r: TransferResult) => r.code === 'OK' || r.code === 'EXISTS';

export interface BooksOptions {
  routerFeeBps: number;
  /** Fee on a peer router's cost when a request was offloaded (federation). */
  offloadFeeBps?: number;
  /** The network every invoice made or paid must be on (LIGHTNING_NETWORK; default regtest). */
  network?: BitcoinNetwork;
  topupExpiryS?: number;
  faucetEnabled?: boolean;
  /** Devnet faucet that pays over Lightning (the LNbits mint wallet); default: the faucet account. */
  faucetLightning?: LightningBackend | undefined;
  maxTopupMsat?: number;
  /** How long a refund's hold lasts: longer than any Lightning payment can stay in flight. */
  refundHoldS?: number;
  /** Most routing fee a refund to another node may cost (held on top of the amount). */
  refundMaxFeeMsat?: number;
  nowS?: () => number;
  /** Told the size of every ledger transaction of request operations (reserves, captures). */
  onRequestBatch?: (ops: number) => void;
}

export interface TopupOptions {
  /** The invoice's description (default: names the tab). */
  description?: string | undefined;
  expirySeconds?: number | undefined;
  /** Smallest amount accepted (default 1000 msat, the tab top-up minimum). */
  minAmountMsat?: number | undefined;
}

/** An account's invoice as settlement records it. */
export interface AccountInvoice {
  paymentHash: string;
  bolt11: string;
  amountMsat: number;
  description: string;
  createdAtS: number;
  expiresAtS: number;
  state: 'open' | 'settled' | 'expired';
  preimage: string | null;
  settledAtS: number | null;
}

interface InvoiceRow {
  payment_hash: string;
  account: string;
  amount_msat: number;
  bolt11: string | null;
  description: string | null;
  created_at_s: number | null;
  expires_at_s: number | null;
  settled_at_s: number | null;
  preimage: string | null;
}

export type PaymentState = 'pending' | 'succeeded' | 'failed';

/** A backend's answer, or settlement's own verdict on a payment the backend never saw. */
export type PaymentOutcome = PaymentStatus | { state: 'failed'; paymentHash: string; code: 'NOT_SENT' };

/** A row of `payments`: one outgoing Lightning payment (a refund), by payment hash. */
export interface PaymentRow {
  payment_hash: string;
  account: string;
  destination: string;
  bolt11: string;
  amount_msat: number;
  max_fee_msat: number;
  fee_msat: number | null;
  state: PaymentState;
  preimage: string | null;
  failure_code: string | null;
  created_at_s: number;
  updated_at_s: number;
}

/** A top-up the ledger has not credited (reconcile.ts compares it with the backend). */
export interface UncreditedTopup {
  payment_hash: string;
  account: string;
  amount_msat: number;
  expires_at_s: number | null;
  settled_at_s: number | null;
}

export interface RefundOutcome {
  paymentHash: string;
  amountMsat: number;
  balanceMsat: number;
  /** `pending`: the backend has not said yet; settlement resolves it later (never twice). */
  state: 'succeeded' | 'pending';
}

/** At most this many payments in flight from one process (each holds a backend call open). */
const MAX_PAYMENTS_IN_FLIGHT = 256;
/** Earnings accounts this process knows exist (a cache: clearing it costs one idempotent insert). */
const MAX_KNOWN_EARNINGS = 10_000;
const TOPUP_POLL_GRACE_S = 60;

/** What a refund failure tells the caller; the Lightning code travels in the message and details. */
const FAILURE_REASON: Record<PaymentFailureCode | 'NOT_SENT', ReasonCode> = {
  INVOICE_NOT_FOUND: 'INVOICE_NOT_FOUND',
  INVOICE_EXPIRED: 'INVOICE_EXPIRED',
  ALREADY_PAID: 'ALREADY_PAID',
  NO_ROUTE: 'SETTLEMENT_UNAVAILABLE',
  FEE_TOO_HIGH: 'SETTLEMENT_UNAVAILABLE',
  INSUFFICIENT_BALANCE: 'SETTLEMENT_UNAVAILABLE',
  BACKEND_ERROR: 'SETTLEMENT_UNAVAILABLE',
  NOT_SENT: 'SETTLEMENT_UNAVAILABLE',
};

function failureError(code: string | null, prefix: string): FedAiError {
  const lightningCode = (code ?? 'BACKEND_ERROR') as keyof typeof FAILURE_REASON;
  return new FedAiError(
    FAILURE_REASON[lightningCode] ?? 'SETTLEMENT_UNAVAILABLE',
    `${prefix} (${lightningCode}); nothing was taken from the tab.`,
    { lightning_code: lightningCode },
  );
}

/**
 * Runs inside the transaction that posts or voids a payment's hold, so what rests on the payment
 * (a payout's statement) commits with it or not at all. Called once per outcome.
 */
export type PaymentHook = (
  tx: Queryable,
  payment: PaymentRow,
  outcome: { state: 'failed' } | { state: 'succeeded'; preimage: string; feeMsat: number },
) => Promise<void>;

export class Books {
  private readonly inFlight = new Set<string>();
  private readonly knownEarnings = new Set<string>();
  /** Reserves and charges of concurrent requests, written in one ledger transaction per batch. */
  private readonly requestOps = new GroupCommit<RequestOp, RequestOpResult>(
    (ops) => this.writeRequestOps(ops),
    { gatherTurn: true },
  );
  /** Reservations looked up by concurrent captures and releases, read in one statement per batch. */
  private readonly reservationReads = new GroupCommit<string, StoredTransfer | undefined>(
    async (ids) => {
      const found = new Map((await this.ledger.lookupTransfers(ids)).map((t) => [t.id, t]));
      return ids.map((id) => ({ ok: true, value: found.get(id) }));
    },
    { gatherTurn: true },
  );
  /** Leases looked up by concurrent captures, read in one statement per batch. */
  private readonly leaseReads = new GroupCommit<string, LeaseRow | undefined>(
    async (ids) => {
      const found = await this.db.query<LeaseRow>(
        'SELECT lease_id, account, router, amount_msat, expires_at_s, closed_at_s FROM leases WHERE lease_id = ANY($1)',
        [ids],
      );
      const byId = new Map(found.rows.map((r) => [r.lease_id, r]));
      return ids.map((id) => ({ ok: true, value: byId.get(id) }));
    },
    { gatherTurn: true },
  );
  private readonly paymentHooks: PaymentHook[] = [];
  private readonly nowS: () => number;
  /** The Bitcoin network every invoice made or paid is on (LIGHTNING_NETWORK). */
  readonly network: BitcoinNetwork;

  constructor(
    private readonly db: Db,
    private readonly ledger: Ledger,
    private readonly lightning: LightningBackend,
    private readonly options: BooksOptions,
  ) {
    this.nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
    this.network = options.network ?? 'regtest';
  }

  /** The Lightning backend's name (`internal` pays only invoices of this system). */
  get backendName(): string {
    return this.lightning.name;
  }

  /** Adds a hook to every payment's final post or void (see PaymentHook). */
  onPaymentOutcome(hook: PaymentHook): void {
    this.paymentHooks.push(hook);
  }

  async init(): Promise<void> {
    await this.ledger.createAccounts([
      { id: ACCOUNTS.lightning, flags: ACCOUNT_FLAGS.creditsMustNotExceedDebits },
      { id: ACCOUNTS.faucet },
      { id: ACCOUNTS.escrow },
      { id: ACCOUNTS.routerFees },
    ]);
  }

  private async ensureTab(payer: string): Promise<string> {
    const id = ACCOUNTS.tab(payer);
    await this.ledger.createAccounts([{ id, flags: ACCOUNT_FLAGS.debitsMustNotExceedCredits }]);
    return id;
  }

  /**
   * A BOLT11 invoice that credits `payer`'s tab exactly once when paid. `options` serve accounts
   * (the invoices an account gives out): their own description, expiry and smallest amount.
   */
  async openTopup(payer: string, amountMsat: number, options: TopupOptions = {}): Promise<Invoice> {
    const max = this.options.maxTopupMsat ?? 100_000_000_000;
    const min = options.minAmountMsat ?? 1000;
    if (!Number.isSafeInteger(amountMsat) || amountMsat < min || amountMsat > max) {
      throw new FedAiError('INVALID_REQUEST', `amount_msat must be ${min}..${max}`);
    }
    const account = await this.ensureTab(payer);
    const invoice = await this.lightning.createInvoice({
      amountMsat,
      description: options.description ?? `fed-ai tab top-up ${account}`,
      expirySeconds: options.expirySeconds ?? this.options.topupExpiryS ?? 3600,
    });
    // A backend on another network than configured: nobody could pay it as expected; fail closed.
    const made = invoiceNetwork(invoice.bolt11);
    if (made !== this.network)
      throw new FedAiError(
        'LIGHTNING_NETWORK_MISMATCH',
        `The Lightning backend made a ${made ?? 'unknown'} invoice; LIGHTNING_NETWORK is ${this.network}.`,
      );
    await this.db.query(
      `INSERT INTO topups (payment_hash, account, amount_msat, expires_at_s, bolt11, description, created_at_s)
       VALUES ($1, $2, $3, $4, $5, $6, $7)`,
      [
        invoice.paymentHash,
        account,
        amountMsat,
        invoice.expiresAtS,
        invoice.bolt11,
        invoice.description,
        invoice.createdAtS,
      ],
    );
    return invoice;
  }

  /** Devnet faucet: pays one of our top-up invoices from the faucet account. */
  async faucetPay(bolt11: string): Promise<{ paymentHash: string; creditedMsat: number }> {
    if (!this.options.faucetEnabled) throw new FedAiError('FORBIDDEN', 'The faucet is off (devnet only).');
    const topup = await this.topupFor(bolt11);
    // A refund paying this invoice owns it until that payment fails.
    const paying = await this.paymentRow(topup.payment_hash);
    if (paying && paying.state !== 'failed')
      throw new FedAiError('ALREADY_PAID', 'A refund pays this invoice; nothing more was credited.');
    // With a faucet wallet of its own (the devnet mint on LNbits) the money arrives over Lightning
    // and is credited from `lightning` like any paid invoice; otherwise the faucet account pays.
    const payer = this.options.faucetLightning;
    // An LNbits payment is idempotent (paying again answers the first payment): refuse here.
    if (payer && topup.settled_at_s !== null) {
      await this.creditSettledTopups();
      throw new FedAiError('ALREADY_PAID', 'This invoice was already paid; nothing more was credited.');
    }
    if (!payer)
      await this.db.query('UPDATE topups SET paid_by = $2 WHERE payment_hash = $1 AND paid_by IS NULL', [
        topup.payment_hash,
        ACCOUNTS.faucet,
      ]);
    let alreadyPaid = false;
    try {
      const paid = await (payer ?? this.lightning).payInvoice(bolt11, { maxFeeMsat: 0 });
      await this.markTopupSettled(topup.payment_hash, paid.preimage);
    } catch (error) {
      if (!(error instanceof LightningPaymentError)) throw error;
      if (error.code !== 'ALREADY_PAID') throw failureError(error.code, 'The faucet could not pay');
      alreadyPaid = true; // paid before (faucet, refund or Lightning): the credit below is idempotent
    }
    await this.creditSettledTopups();
    if (alreadyPaid)
      throw new FedAiError('ALREADY_PAID', 'This invoice was already paid; nothing more was credited.');
    return { paymentHash: topup.payment_hash, creditedMsat: topup.amount_msat };
  }

  private async topupFor(
    bolt11: string,
  ): Promise<{ payment_hash: string; account: string; amount_msat: number; settled_at_s: number | null }> {
    const hash = decodeOrRefuse(bolt11, this.network).paymentHash;
    const row = await this.topupRow(hash);
    if (!row) throw new FedAiError('INVOICE_NOT_FOUND');
    return row;
  }

  /** The top-up of this system with that payment hash, if any (its invoice is ours). */
  async topupRow(hash: string): Promise<{
    payment_hash: string;
    account: string;
    amount_msat: number;
    settled_at_s: number | null;
  } | null> {
    const rows = await this.db.query<{
      payment_hash: string;
      account: string;
      amount_msat: number;
      settled_at_s: number | null;
    }>('SELECT payment_hash, account, amount_msat, settled_at_s FROM topups WHERE payment_hash = $1', [hash]);
    return rows.rows[0] ?? null;
  }

  /** Records that a top-up invoice was paid (the preimage is the proof). Idempotent. */
  private async markTopupSettled(hash: string, preimage: string, settledAtS = this.nowS()): Promise<void> {
    if (sha256Hex(preimage) !== hash)
      throw new Error(`backend returned a preimage that does not hash to ${hash}`);
    await this.db.query(
      'UPDATE topups SET settled_at_s = COALESCE(settled_at_s, $2), preimage = COALESCE(preimage, $3) WHERE payment_hash = $1',
      [hash, settledAtS, preimage],
    );
  }

  /**
   * Asks the backend about open top-up invoices (bounded) and records the settled ones: how
   * settlement learns of invoices paid from outside (and of payments a crash kept it from recording).
   */
  async pollOpenTopups(limit = 200): Promise<number> {
    const now = this.nowS();
    const open = await this.db.query<{ payment_hash: string }>(
      `SELECT payment_hash FROM topups WHERE settled_at_s IS NULL AND (expires_at_s IS NULL OR expires_at_s > $1)
       ORDER BY created_at LIMIT $2`,
      [now - TOPUP_POLL_GRACE_S, Math.min(Math.max(limit, 1), 1000)],
    );
    let settled = 0;
    for (const { payment_hash: hash } of open.rows) {
      const invoice = await this.lightning.lookupInvoice(hash);
      if (invoice?.state === 'settled' && invoice.preimage) {
        await this.markTopupSettled(hash, invoice.preimage, invoice.settledAtS ?? now);
        settled += 1;
      } else {
        // Unknown to the backend: stop asking. Otherwise remember the expiry (rows of version 1).
        await this.db.query('UPDATE topups SET expires_at_s = $2 WHERE payment_hash = $1', [
          hash,
          invoice ? invoice.expiresAtS : 0,
        ]);
      }
    }
    return settled;
  }

  /**
   * Credits every settled, not yet credited top-up (idempotent: transfer id `topup:<hash>`). Runs
   * after each payment and on a timer, so a crash between "invoice paid" and "tab credited" heals.
   * An invoice a refund pays is credited by that refund's post (same id), never here.
   */
  async creditSettledTopups(limit = 200): Promise<number> {
    await this.pollOpenTopups(limit);
    return this.creditSettled(limit);
  }

  /** Credits settled, not yet credited top-ups (all, or the one of `hash`). */
  private async creditSettled(limit: number, hash: string | null = null): Promise<number> {
    const rows = await this.db.query<{
      payment_hash: string;
      account: string;
      amount_msat: number;
      paid_by: string | null;
    }>(
      `SELECT t.payment_hash, t.account, t.amount_msat, t.paid_by FROM topups t
       WHERE t.settled_at_s IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM ledger_transfers x WHERE x.id = 'topup:' || t.payment_hash)
         AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.payment_hash = t.payment_hash AND p.state <> 'failed')
         AND ($2::text IS NULL OR t.payment_hash = $2::text)
       LIMIT $1`,
      [limit, hash],
    );
    let credited = 0;
    for (const t of rows.rows) {
      const [result] = await this.ledger.createTransfers([
        {
          id: `topup:${t.payment_hash}`,
          kind: 'single',
          debitAccountId: t.paid_by ?? ACCOUNTS.lightning,
          creditAccountId: t.account,
          amountMsat: t.amount_msat,
          userData: t.payment_hash,
        },
      ]);
      if (result?.code === 'OK') credited += 1;
    }
    return credited;
  }

  // Reconciliation (reconcile.ts) reads and heals through these three; they add no behaviour.

  /**
   * Top-ups not credited in the ledger (open, expired or settled; not those a payment of ours
   * pays), created since `sinceS`, newest first, at most `limit` (1..1000).
   */
  async uncreditedTopups(options: { sinceS: number; limit: number }): Promise<UncreditedTopup[]> {
    const rows = await this.db.query<UncreditedTopup>(
      `SELECT t.payment_hash, t.account, t.amount_msat, t.expires_at_s, t.settled_at_s FROM topups t
       WHERE t.created_at >= to_timestamp($1)
         AND NOT EXISTS (SELECT 1 FROM ledger_transfers x WHERE x.id = 'topup:' || t.payment_hash)
         AND NOT EXISTS (SELECT 1 FROM payments p WHERE p.payment_hash = t.payment_hash AND p.state <> 'failed')
       ORDER BY t.created_at DESC LIMIT $2`,
      [options.sinceS, Math.min(Math.max(options.limit, 1), 1000)],
    );
    return rows.rows;
  }

  /**
   * A top-up the backend reports settled: records it (the preimage must hash to `hash`) and
   * credits it through the one credit path (`topup:<hash>`). True only for the call that credited.
   */
  async creditTopupFromBackend(hash: string, preimage: string | null, settledAtS: number): Promise<boolean> {
    if (preimage !== null) await this.markTopupSettled(hash, preimage, settledAtS);
    return (await this.creditSettled(1, hash)) === 1;
  }

  /** Payments still pending (created or in flight), oldest first, at most `limit` (1..1000). */
  async pendingPayments(limit: number): Promise<PaymentRow[]> {
    const rows = await this.db.query<PaymentRow>(
      `SELECT * FROM payments WHERE state = 'pending' ORDER BY created_at_s LIMIT $1`,
      [Math.min(Math.max(limit, 1), 1000)],
    );
    return rows.rows;
  }

  async paymentRow(hash: string): Promise<PaymentRow | null> {
    const rows = await this.db.query<PaymentRow>('SELECT * FROM payments WHERE payment_hash = $1', [hash]);
    return rows.rows[0] ?? null;
  }

  /**
   * Refunds unused balance by paying an invoice the client gives, over the Lightning backend:
   * hold the amount on the tab and record the payment as pending (one transaction), pay, then post
   * the hold (payment succeeded, preimage stored) or void it (payment failed: the balance is back).
   * Idempotent by the invoice's payment hash: an invoice is paid at most once. A crash between the
   * steps leaves a pending payment that `resolvePendingPayments` settles from the backend's answer.
   * An invoice of this system (another tab's top-up) is credited by the post itself, with the
   * top-up's own transfer id, so that tab is credited exactly once.
   */
  async refund(payer: string, bolt11: string): Promise<RefundOutcome> {
    const payment = await this.holdForRefund(payer, bolt11);
    const state = await this.payHeld(payment);
    if (state === 'failed') {
      const row = await this.paymentRow(payment.payment_hash);
      throw failureError(row?.failure_code ?? null, 'The Lightning payment failed');
    }
    const [after] = await this.ledger.lookupAccounts([payment.account]);
    return {
      paymentHash: payment.payment_hash,
      amountMsat: payment.amount_msat,
      balanceMsat: after ? availableMsat(after) : 0,
      state,
    };
  }

  // Accounts: services (the wallet fleet) that keep their money here, as a wallet lives on an
  // LNbits server. An account is a tab like any other; these methods answer only about the
  // caller's own invoices and payments (someone else's read as unknown).

  /** An invoice `payer` opened, its state brought up to date from the backend; null otherwise. */
  async accountInvoice(payer: string, hash: string): Promise<AccountInvoice | null> {
    let row = await this.invoiceRow(hash);
    if (!row || row.account !== ACCOUNTS.tab(payer)) return null;
    const now = this.nowS();
    const open = row.settled_at_s === null && (row.expires_at_s === null || row.expires_at_s > now);
    const backend = open || row.bolt11 === null ? await this.lightning.lookupInvoice(hash) : null;
    if (open && backend?.state === 'settled' && backend.preimage) {
      await this.markTopupSettled(hash, backend.preimage, backend.settledAtS ?? now);
      // Credited here and now (not only by the sweeper), unless a payment of ours credits it.
      await this.creditSettled(1, hash);
      row = (await this.invoiceRow(hash)) ?? row;
    }
    const expiresAtS = row.expires_at_s ?? backend?.expiresAtS ?? 0;
    const settled = row.settled_at_s !== null;
    return {
      paymentHash: row.payment_hash,
      bolt11: row.bolt11 ?? backend?.bolt11 ?? '',
      amountMsat: row.amount_msat,
      description: row.description ?? backend?.description ?? '',
      createdAtS: row.created_at_s ?? backend?.createdAtS ?? 0,
      expiresAtS,
      state: settled ? 'settled' : expiresAtS <= now ? 'expired' : 'open',
      preimage: settled ? row.preimage : null,
      settledAtS: row.settled_at_s,
    };
  }

  private async invoiceRow(hash: string): Promise<InvoiceRow | null> {
    const rows = await this.db.query<InvoiceRow>(
      `SELECT payment_hash, account, amount_msat, bolt11, description, created_at_s, expires_at_s,
        settled_at_s, preimage FROM topups WHERE payment_hash = $1`,
      [hash],
    );
    return rows.rows[0] ?? null;
  }

  /**
   * Pays an invoice from `payer`'s account with the refund machinery (hold, pay, post or void).
   * Idempotent for the same account: an invoice it already paid, or is paying, answers that
   * payment's current state (never a second debit), so a client retrying after a crash learns the
   * outcome. A payment that failed throws its failure again (the hold was voided). Another
   * account's payment of the invoice is a conflict. Answers the payment row (succeeded or pending).
   */
  async accountPay(
    payer: string,
    bolt11: string,
    options: { maxFeeMsat?: number | undefined } = {},
  ): Promise<PaymentRow> {
    const hash = decodeOrRefuse(bolt11, this.network).paymentHash;
    const account = ACCOUNTS.tab(payer);
    const prior = await this.paymentRow(hash);
    if (prior?.account === account) return this.ownPaymentOutcome(prior);
    let held: PaymentRow;
    try {
      held = await this.holdForRefund(payer, bolt11, options);
    } catch (error) {
      // A concurrent call of the same account placed the hold first: answer with its payment.
      if (error instanceof FedAiError && error.code === 'IDEMPOTENCY_CONFLICT') {
        const winner = await this.paymentRow(hash);
        if (winner?.account === account) return this.ownPaymentOutcome(winner);
      }
      throw error;
    }
    const state = await this.payHeld(held);
    const row = (await this.paymentRow(hash)) ?? held;
    if (state === 'failed') throw failureError(row.failure_code, 'The Lightning payment failed');
    return row;
  }

  private async ownPaymentOutcome(prior: PaymentRow): Promise<PaymentRow> {
    const row = await this.refreshPayment(prior);
    if (row.state === 'failed')
      throw failureError(row.failure_code, 'This payment failed before; ask for a new invoice');
    return row;
  }

  /** A payment `payer` made, brought up to date; null for none (or another account's). */
  async accountPayment(payer: string, hash: string): Promise<PaymentRow | null> {
    const row = await this.paymentRow(hash);
    if (!row || row.account !== ACCOUNTS.tab(payer)) return null;
    return this.refreshPayment(row);
  }

  /**
   * A pending payment not in flight here (a crash, or a backend that could not say): asks the
   * backend and records a final answer. An unknown or pending answer changes nothing (the
   * sweeper's `resolvePendingPayments` decides those, after its grace period).
   */
  private async refreshPayment(row: PaymentRow): Promise<PaymentRow> {
    if (row.state !== 'pending' || this.inFlight.has(row.payment_hash)) return row;
    const status = await this.lightning
      .lookupPayment(row.payment_hash)
      .catch((): PaymentStatus => ({ state: 'pending', paymentHash: row.payment_hash }));
    if (status.state !== 'succeeded' && status.state !== 'failed') return row;
    await this.applyPaymentStatus(row, status);
    return (await this.paymentRow(row.payment_hash)) ?? row;
  }

  /** What an account holds: available, and held (reservations and payments in flight). */
  async balance(payer: string): Promise<{ balanceMsat: number; reservedMsat: number }> {
    const [tab] = await this.ledger.lookupAccounts([ACCOUNTS.tab(payer)]);
    return { balanceMsat: tab ? availableMsat(tab) : 0, reservedMsat: tab?.debitsPending ?? 0 };
  }

  /** Refund step 1: the hold on the tab and the pending payment row, in one transaction. */
  async holdForRefund(
    payer: string,
    bolt11: string,
    options: { maxFeeMsat?: number | undefined } = {},
  ): Promise<PaymentRow> {
    const decoded = decodeOrRefuse(bolt11, this.network);
    const hash = decoded.paymentHash;
    const account = ACCOUNTS.tab(payer);
    const prior = await this.paymentRow(hash);
    if (prior) throw priorPaymentError(prior);
    const topup = await this.topupRow(hash);
    // The internal backend settles only invoices of this system (as LNbits internal payments).
    if (!topup && this.lightning.name === 'internal')
      throw new FedAiError(
        'INVOICE_NOT_FOUND',
        'The internal Lightning backend can only pay invoices of this system; external invoices need an LND, CLN or LNbits backend.',
      );
    if (topup?.account === account)
      throw new FedAiError('INVALID_REQUEST', 'That invoice would pay your own tab.');
    if (topup && topup.settled_at_s !== null)
      throw new FedAiError('IDEMPOTENCY_CONFLICT', 'The invoice is already paid.');
    const now = this.nowS();
    if (decoded.expiresAtS <= now) throw new FedAiError('INVOICE_EXPIRED', 'The invoice has expired.');
    if (this.inFlight.size >= MAX_PAYMENTS_IN_FLIGHT)
      throw new FedAiError('OVERLOADED', 'Too many Lightning payments in flight; retry shortly.');
    // Invoices of this system settle internally: no routing fee.
    const maxFeeMsat = topup ? 0 : (options.maxFeeMsat ?? this.options.refundMaxFeeMsat ?? 0);
    const row: PaymentRow = {
      payment_hash: hash,
      account,
      destination: topup ? topup.account : ACCOUNTS.lightning,
      bolt11: bolt11.trim(),
      amount_msat: decoded.amountMsat,
      max_fee_msat: maxFeeMsat,
      fee_msat: null,
      state: 'pending',
      preimage: null,
      failure_code: null,
      created_at_s: now,
      updated_at_s: now,
    };
    const results = await this.ledger.createTransfers(
      [
        {
          id: REFUND_IDS.hold(hash),
          kind: 'pending',
          debitAccountId: account,
          creditAccountId: row.destination,
          amountMsat: row.amount_msat + maxFeeMsat,
          timeoutS: this.options.refundHoldS ?? 14 * 24 * 3600,
          userData: hash,
        },
      ],
      async (tx, r) => {
        if (r[0]?.code !== 'OK') return;
        const inserted = await tx.query(
          `INSERT INTO payments (payment_hash, account, destination, bolt11, amount_msat, max_fee_msat, state, created_at_s, updated_at_s)
           VALUES ($1,$2,$3,$4,$5,$6,'pending',$7,$7) ON CONFLICT (payment_hash) DO NOTHING RETURNING payment_hash`,
          [hash, account, row.destination, row.bolt11, row.amount_msat, maxFeeMsat, now],
        );
        if (inserted.rows.length !== 1)
          throw new FedAiError('IDEMPOTENCY_CONFLICT', 'A payment of this invoice is in progress.');
      },
    );
    const code = results[0]?.code;
    if (code === 'OK') return row;
    if (code === 'EXCEEDS_CREDITS' || code === 'DEBIT_ACCOUNT_NOT_FOUND')
      throw new FedAiError(
        'INSUFFICIENT_BALANCE',
        `The tab cannot cover ${row.amount_msat + maxFeeMsat} msat.`,
      );
    if (code === 'EXISTS' || code === 'EXISTS_WITH_DIFFERENT_FIELDS') {
      const winner = await this.paymentRow(hash);
      throw winner ? priorPaymentError(winner) : new FedAiError('IDEMPOTENCY_CONFLICT');
    }
    if (code === 'EXCEEDS_DEBITS')
      throw new FedAiError(
        'LEDGER_REJECTED',
        'refund: more than settlement holds on Lightning (EXCEEDS_DEBITS)',
      );
    throw new FedAiError('LEDGER_REJECTED', `refund: ${code}`);
  }

  /** Refund step 2: pay through the backend, then post or void the hold. */
  async payHeld(payment: PaymentRow): Promise<PaymentState> {
    const hash = payment.payment_hash;
    if (this.inFlight.has(hash)) return 'pending';
    this.inFlight.add(hash);
    try {
      let status: PaymentStatus;
      try {
        const paid = await this.lightning.payInvoice(payment.bolt11, { maxFeeMsat: payment.max_fee_msat });
        status = { state: 'succeeded', ...paid };
      } catch (error) {
        if (error instanceof LightningPaymentError && error.definite)
          status = { state: 'failed', paymentHash: hash, code: error.code };
        else {
          // Unknown outcome: ask; if the backend cannot say yet, the payment stays pending.
          status = await this.lightning
            .lookupPayment(hash)
            .catch((): PaymentStatus => ({ state: 'pending', paymentHash: hash }));
          if (status.state === 'unknown') status = { state: 'pending', paymentHash: hash };
        }
      }
      return await this.applyPaymentStatus(payment, status);
    } finally {
      this.inFlight.delete(hash);
    }
  }

  /** Refund step 3: post the hold (succeeded) or void it (failed); pending leaves it. Idempotent. */
  async applyPaymentStatus(payment: PaymentRow, status: PaymentOutcome): Promise<PaymentState> {
    const hash = payment.payment_hash;
    const now = this.nowS();
    if (status.state === 'pending' || status.state === 'unknown') return 'pending';
    if (status.state === 'failed') {
      const results = await this.ledger.createTransfers(
        [
          {
            id: REFUND_IDS.void(hash),
            kind: 'void',
            pendingId: REFUND_IDS.hold(hash),
            debitAccountId: payment.account,
            creditAccountId: payment.destination,
            amountMsat: 0,
            userData: hash,
          },
        ],
        async (tx, r) => {
          if (!released(r[0]?.code)) return;
          await tx.query(
            `UPDATE payments SET state = 'failed', failure_code = $2, updated_at_s = $3 WHERE payment_hash = $1 AND state = 'pending'`,
            [hash, status.code, now],
          );
          for (const hook of this.paymentHooks) await hook(tx, payment, { state: 'failed' });
        },
      );
      if (!released(results[0]?.code))
        throw new FedAiError('LEDGER_REJECTED', `refund void: ${results[0]?.code}`);
      return 'failed';
    }
    if (sha256Hex(status.preimage) !== hash)
      throw new Error(`backend returned a preimage that does not hash to ${hash}`);
    const own = payment.destination !== ACCOUNTS.lightning;
    // The fee is the backend's; it stays within what was held (the backend was told the maximum).
    const amountMsat = payment.amount_msat + Math.min(Math.max(status.feeMsat, 0), payment.max_fee_msat);
    const post: TransferInput = {
      id: own ? REFUND_IDS.postTopup(hash) : REFUND_IDS.post(hash),
      kind: 'post',
      pendingId: REFUND_IDS.hold(hash),
      debitAccountId: payment.account,
      creditAccountId: payment.destination,
      amountMsat,
      userData: hash,
    };
    const record = async (tx: Queryable) => {
      await tx.query(
        `UPDATE payments SET state = 'succeeded', preimage = $2, fee_msat = $3, updated_at_s = $4 WHERE payment_hash = $1 AND state = 'pending'`,
        [hash, status.preimage, amountMsat - payment.amount_msat, now],
      );
      if (own)
        await tx.query(
          'UPDATE topups SET settled_at_s = COALESCE(settled_at_s, $2), preimage = COALESCE(preimage, $3), paid_by = $4 WHERE payment_hash = $1',
          [hash, now, status.preimage, payment.account],
        );
      const outcome = {
        state: 'succeeded' as const,
        preimage: status.preimage,
        feeMsat: amountMsat - payment.amount_msat,
      };
      for (const hook of this.paymentHooks) await hook(tx, payment, outcome);
    };
    let results = await this.ledger.createTransfers([post], async (tx, r) => {
      if (ok(r[0]!)) await record(tx);
    });
    if (results[0]?.code === 'PENDING_TRANSFER_EXPIRED') {
      // The money left, but the hold outlived its timeout: charge the tab directly if it still can.
      results = await this.ledger.createTransfers(
        [{ ...post, kind: 'single', pendingId: undefined }],
        async (tx, r) => {
          if (ok(r[0]!)) await record(tx);
        },
      );
    }
    if (!results[0] || !ok(results[0]))
      throw new FedAiError(
        'LEDGER_REJECTED',
        `refund post: ${results[0]?.code} (payment ${hash} stays pending)`,
      );
    return 'succeeded';
  }

  /**
   * Resolves payments left pending (a crash between the hold and the post/void, or a backend that
   * could not answer): asks the backend and posts or voids. A payment the backend never saw is
   * voided: nothing else will send it — unless it is younger than `voidUnseenOlderThanS`, when
   * another process (a replica) may be between its hold and its send. Skips payments in flight in
   * this process; `olderThanS` keeps a periodic sweep away from payments another call is still making.
   */
  async resolvePendingPayments(
    options: { olderThanS?: number; limit?: number; voidUnseenOlderThanS?: number } = {},
  ): Promise<number> {
    const rows = await this.db.query<PaymentRow>(
      `SELECT * FROM payments WHERE state = 'pending' AND created_at_s <= $1 ORDER BY created_at_s LIMIT $2`,
      [this.nowS() - (options.olderThanS ?? 0), Math.min(Math.max(options.limit ?? 100, 1), 1000)],
    );
    let resolved = 0;
    for (const payment of rows.rows) {
      if (this.inFlight.has(payment.payment_hash)) continue;
      // A backend that cannot answer now leaves the payment pending for the next sweep.
      let status: PaymentOutcome = await this.lightning
        .lookupPayment(payment.payment_hash)
        .catch((): PaymentStatus => ({ state: 'pending', paymentHash: payment.payment_hash }));
      if (status.state === 'unknown') {
        // Another process (a replica) may hold a young payment between its hold and its send.
        const ageS = this.nowS() - Number(payment.created_at_s);
        if (ageS < (options.voidUnseenOlderThanS ?? 0)) continue;
        status = { state: 'failed', paymentHash: payment.payment_hash, code: 'NOT_SENT' };
      }
      if ((await this.applyPaymentStatus(payment, status)) !== 'pending') resolved += 1;
    }
    return resolved;
  }

  /** Holds `amountMsat` of the payer's tab for one request until captured, released or expired. */
  async reserve(
    opId: string,
    payer: string,
    amountMsat: number,
    timeoutS: number,
  ): Promise<{ balanceMsat: number }> {
    const account = ACCOUNTS.tab(payer);
    const noTab = () =>
      new FedAiError('INSUFFICIENT_BALANCE', 'No tab yet: top up with POST /v1/tabs/topup.');
    if (amountMsat === 0) {
      const [tab] = await this.ledger.lookupAccounts([account]);
      if (!tab) throw noTab();
      return { balanceMsat: availableMsat(tab) };
    }
    // One transaction: the rules refuse a missing tab or too little in it, and the locked tab's
    // final state gives the balance.
    const { results, accounts } = await this.requestOps.submit({
      transfers: [
        {
          id: `res:${opId}`,
          kind: 'pending',
          debitAccountId: account,
          creditAccountId: ACCOUNTS.escrow,
          amountMsat,
          timeoutS,
          userData: opId,
        },
      ],
    });
    return holdOutcome(results[0], accounts.get(account), amountMsat, 'reserve');
  }

  /**
   * Opens a spending lease for `router`: moves `amountMsat` of the payer's tab into the lease's
   * own account, which that router's captures draw from (`capture` with the lease id) and which
   * can never go below zero, so the lease's requests together never spend more than it holds.
   * The lease closes when the router says so or, at the latest, `timeoutS` from now.
   */
  async openLease(
    leaseId: string,
    payer: string,
    amountMsat: number,
    timeoutS: number,
    router: string,
  ): Promise<{ balanceMsat: number }> {
    const tab = ACCOUNTS.tab(payer);
    const account = ACCOUNTS.lease(leaseId);
    await this.ledger.createAccounts([{ id: account, flags: ACCOUNT_FLAGS.debitsMustNotExceedCredits }]);
    const { results, accounts } = await this.requestOps.submit({
      transfers: [
        {
          id: LEASE_IDS.open(leaseId),
          kind: 'single',
          debitAccountId: tab,
          creditAccountId: account,
          amountMsat,
          userData: leaseId,
        },
      ],
      lease: { leaseId, account: tab, router, amountMsat, expiresAtS: this.nowS() + timeoutS },
    });
    return holdOutcome(results[0], accounts.get(tab), amountMsat, 'open lease');
  }

  /**
   * Closes a lease (`router` null: settlement itself, at its expiry): what it still holds goes
   * back to the tab, in one transaction with the lease's row. Idempotent; a capture arriving
   * later is charged from the tab directly.
   */
  async closeLease(leaseId: string, router: string | null): Promise<void> {
    await this.db.transaction(async (tx) => {
      const found = await tx.query<LeaseRow>(
        'SELECT lease_id, account, router, amount_msat, expires_at_s, closed_at_s FROM leases WHERE lease_id = $1 FOR UPDATE',
        [leaseId],
      );
      const lease = found.rows[0];
      if (!lease || (router !== null && lease.router !== router))
        throw new FedAiError('NOT_FOUND', 'No such lease.');
      if (lease.closed_at_s !== null) return;
      const [held] = await this.ledger.lookupAccountsIn(tx, [ACCOUNTS.lease(leaseId)]);
      const leftMsat = held ? availableMsat(held) : 0;
      if (leftMsat > 0) {
        const [result] = await this.ledger.createTransfersIn(tx, [
          {
            id: LEASE_IDS.close(leaseId),
            kind: 'single',
            debitAccountId: ACCOUNTS.lease(leaseId),
            creditAccountId: lease.account,
            amountMsat: leftMsat,
            userData: leaseId,
          },
        ]);
        if (!result || !ok(result)) throw new FedAiError('LEDGER_REJECTED', `close lease: ${result?.code}`);
      }
      await tx.query('UPDATE leases SET closed_at_s = $2 WHERE lease_id = $1', [leaseId, this.nowS()]);
    });
  }

  /** Closes leases past their expiry (the sweep); returns how many. */
  async closeExpiredLeases(limit = 200): Promise<number> {
    const due = await this.db.query<{ lease_id: string }>(
      'SELECT lease_id FROM leases WHERE closed_at_s IS NULL AND expires_at_s <= $1 ORDER BY expires_at_s LIMIT $2',
      [this.nowS(), limit],
    );
    for (const { lease_id } of due.rows) await this.closeLease(lease_id, null);
    return due.rows.length;
  }

  /**
   * Charges exactly the cost in the node-signed metering record: settlement recomputes it from the
   * verified record (price x tokens) and never takes the router's word. Posts that much of the
   * reservation (the rest is released) and splits it into node earnings and router fee, in one
   * linked batch with the charge record. A reservation that expired while the capture was on its
   * way is charged directly from the tab, if the tab still covers it.
   */
  async capture(
    opId: string,
    node: string,
    metering: unknown,
    routerPubkey: string,
    leaseId?: string,
  ): Promise<{ chargedMsat: number }> {
    if (leaseId !== undefined) return this.captureFromLease(opId, leaseId, node, metering, routerPubkey);
    const pending = await this.reservationOf(opId);
    if (pending?.kind !== 'pending') throw new FedAiError('NOT_FOUND', 'No reservation for this request.');
    const record = await verifiedRecord(metering, {
      node,
      opId,
      routerPubkey,
      reservedMsat: pending.amountMsat,
    });
    const charge = record.cost_msat;
    if (charge === 0) {
      await this.release(opId);
      return { chargedMsat: 0 };
    }
    await this.ensureEarnings(node);
    await this.commitCharge(opId, reservationSource(pending), charge, this.nodeAndFee(opId, node, charge), {
      node,
      metering,
    });
    return { chargedMsat: charge };
  }

  /**
   * A capture whose bound was drawn from a lease: the charge comes out of the lease's account;
   * once the lease is closed or spent (the account refuses to go below zero), straight from the
   * tab, as for a reservation that expired on the way. At most one of the two ever happens for
   * an op id: both write its `pay:` transfer.
   */
  private async captureFromLease(
    opId: string,
    leaseId: string,
    node: string,
    metering: unknown,
    routerPubkey: string,
  ): Promise<{ chargedMsat: number }> {
    const lease = await this.leaseReads.submit(leaseId);
    if (!lease || lease.router !== routerPubkey)
      throw new FedAiError('NOT_FOUND', 'No lease for this request.');
    const record = await verifiedRecord(metering, {
      node,
      opId,
      routerPubkey,
      reservedMsat: Number(lease.amount_msat),
    });
    const charge = record.cost_msat;
    if (charge === 0) return { chargedMsat: 0 };
    await this.ensureEarnings(node);
    const parts = this.nodeAndFee(opId, node, charge);
    const source: ChargeSource = { kind: 'lease', account: ACCOUNTS.lease(leaseId), tab: lease.account };
    // A retry of a capture already charged (from the lease or the tab) finds its charge row: EXISTS.
    const fromLease = await this.tryCharge(opId, source, charge, parts, { node, metering });
    if (!fromLease) return { chargedMsat: charge };
    if (fromLease.code !== 'EXCEEDS_CREDITS') throw chargeError(fromLease);
    await this.commitCharge(opId, { kind: 'tab', tab: lease.account }, charge, parts, { node, metering });
    return { chargedMsat: charge };
  }

  /** A charge's split: the node's earnings and the router fee, ids from the op id. */
  private nodeAndFee(opId: string, node: string, charge: number): ChargePart[] {
    const { nodeMsat, routerMsat } = splitCharge(charge, this.options.routerFeeBps);
    return [
      { id: `pay:${opId}`, account: ACCOUNTS.earnings(node), amountMsat: nodeMsat },
      { id: `fee:${opId}`, account: ACCOUNTS.routerFees, amountMsat: routerMsat },
    ];
  }

  /**
   * Charges a request a peer router served (federation offload): the peer's cost, recomputed from
   * the node-signed record inside the peer's signed receipt, plus this network's offload fee. The
   * peer's part goes to the offloading router's own account (`tab:svc:<router>`), which paid the
   * peer ahead (a prepaid tab there, funded by a paid Lightning invoice); the fee to router fees.
   */
  async captureOffload(
    opId: string,
    peer: string,
    result: unknown,
    routerPubkey: string,
  ): Promise<{ chargedMsat: number; peerCostMsat: number; feeMsat: number }> {
    const pending = await this.reservationOf(opId);
    if (pending?.kind !== 'pending') throw new FedAiError('NOT_FOUND', 'No reservation for this request.');
    const served = await verifiedOffloadResult(result, { peer, opId, routerPubkey });
    const peerCostMsat = served.record.cost_msat;
    const feeMsat = offloadFeeMsat(peerCostMsat, this.options.offloadFeeBps ?? 0);
    const charge = peerCostMsat + feeMsat;
    if (charge > pending.amountMsat)
      throw new FedAiError('BAD_METERING', 'offload result: cost plus fee is over the reservation', {
        problems: ['METERING_OVER_RESERVED'],
      });
    if (charge === 0) {
      await this.release(opId);
      return { chargedMsat: 0, peerCostMsat, feeMsat };
    }
    const float = await this.ensureTab(`svc:${routerPubkey}`);
    await this.commitCharge(
      opId,
      reservationSource(pending),
      charge,
      [
        { id: `pay:${opId}`, account: float, amountMsat: peerCostMsat },
        { id: `fee:${opId}`, account: ACCOUNTS.routerFees, amountMsat: feeMsat },
      ],
      { node: peer, metering: result },
    );
    return { chargedMsat: charge, peerCostMsat, feeMsat };
  }

  /**
   * Charges `charge` from its source (see ChargeSource) and moves it out to `parts`, in one
   * linked batch with the charge record; throws the refusal.
   */
  private async commitCharge(
    opId: string,
    source: ChargeSource,
    charge: number,
    parts: ChargePart[],
    record: { node: string; metering: unknown },
  ): Promise<void> {
    const failed = await this.tryCharge(opId, source, charge, parts, record);
    if (failed) throw chargeError(failed);
  }

  /** As commitCharge, but answers the refusal (the first transfer that failed) instead of throwing. */
  private async tryCharge(
    opId: string,
    source: ChargeSource,
    charge: number,
    parts: ChargePart[],
    record: { node: string; metering: unknown },
  ): Promise<TransferResult | null> {
    const [first, second] = parts;
    const row: ChargeRow = {
      opId,
      account: source.tab,
      node: record.node,
      amountMsat: charge,
      nodeMsat: first?.amountMsat ?? 0,
      routerMsat: second?.amountMsat ?? 0,
      // The record's text as it came (the router sends it as text), else the parsed record's.
      metering: typeof record.metering === 'string' ? record.metering : JSON.stringify(record.metering),
    };
    const { results } = await this.requestOps.submit(
      source.kind === 'lease'
        ? {
            transfers: [],
            charge: row,
            fromLease: {
              opId,
              leaseAccount: source.account,
              tab: source.tab,
              node: record.node,
              amountMsat: charge,
              parts,
            },
          }
        : { transfers: chargeTransfers(opId, source, charge, parts), charge: row },
    );
    if (results.every(ok)) return null;
    return results.find((r) => !ok(r) && r.code !== 'LINKED_EVENT_FAILED') ?? results[0] ?? null;
  }

  /**
   * One ledger transaction for many requests' operations: their transfers in order (each capture's
   * chain linked within itself only, so one op's failure leaves the others alone), the captures
   * from leases as one chain per lease (lease-charges.ts), and the charge rows of the captures that
   * went through. Run again whole if it lost a race with another writer.
   */
  private async writeRequestOps(ops: RequestOp[]): Promise<ItemOutcome<RequestOpResult>[]> {
    this.options.onRequestBatch?.(ops.length);
    const results = await this.ledger.transact((tx) => this.applyRequestOps(tx, ops));
    return results.map((value) => ({ ok: true, value }));
  }

  private async applyRequestOps(tx: Queryable, ops: RequestOp[]): Promise<RequestOpResult[]> {
    const charging = ops.flatMap((op) => (op.charge ? [op.charge.opId] : []));
    const existing = charging.length > 0 ? await chargesOf(tx, charging) : new Map<string, ExistingCharge>();
    // A capture whose op id already has a charge row is done (a retry) or refused (another
    // charge), whichever path it takes: nothing of it is tried, so a row can only meet another
    // row in a race between writers (see below).
    const done = ops.map((op) => {
      const row = op.charge ? existing.get(op.charge.opId) : undefined;
      return row ? sameCharge({ ...op.charge!, tab: op.charge!.account }, row) : null;
    });
    const leaseOps = ops.flatMap((op, i) => (op.fromLease && done[i] === null ? [i] : []));
    const plan = planLeaseCharges(
      randomUUID(),
      leaseOps.map((i) => ops[i]!.fromLease!),
    );
    const tried = ops.map((op, i) => (done[i] === null ? op.transfers : []));
    const own = tried.flat();
    const first = await this.ledger.applyIn(tx, [...own, ...plan.transfers]);
    const perOp = splitResults(
      tried.map((t) => t.length),
      first.results,
    );
    done.forEach((same, i) => {
      if (same !== null) perOp[i] = [rowResult(ops[i]!, same ? 'EXISTS' : 'EXISTS_WITH_DIFFERENT_FIELDS')];
    });
    const leaseResults = await this.resolveLeaseCaptures(
      tx,
      ops,
      leaseOps,
      plan,
      first.results.slice(own.length),
    );
    for (const [i, results] of leaseResults.perOp) perOp[i] = results;
    // A charge row is written by the transaction that moved its money (every result OK), and is
    // then the request's proof of payment: a second path to the same op id (another replica's
    // batch, a lease capture beside a chain) fails on it and runs again instead of charging twice.
    // A retry (EXISTS) writes none: its row is there.
    const rows = ops.filter((op, i) => op.charge && perOp[i]!.every((r) => r.code === 'OK'));
    if (rows.length > 0)
      await insertCharges(
        tx,
        rows.map((op) => op.charge!),
      );
    const leases = ops.filter((op, i) => op.lease && perOp[i]!.every(ok)).map((op) => op.lease!);
    if (leases.length > 0) await insertLeases(tx, leases);
    const accounts = new Map([...first.accounts, ...leaseResults.accounts]);
    return perOp.map((results) => ({ results, accounts }));
  }

  /**
   * What each capture from a lease got, from its lease chain's results (`chainResults`, in the
   * plan's order): paid by the chain; or, where the lease could not pay it (spent, closed), by its
   * own chain from the lease (as many as it covers; the rest report EXCEEDS_CREDITS, then the
   * tab); or what its first occurrence in the batch got.
   */
  private async resolveLeaseCaptures(
    tx: Queryable,
    ops: RequestOp[],
    leaseOps: number[],
    plan: LeaseChargePlan,
    chainResults: TransferResult[],
  ): Promise<{ perOp: Map<number, TransferResult[]>; accounts: ReadonlyMap<string, Account> }> {
    const perOp = new Map<number, TransferResult[]>();
    const unpaid: number[] = [];
    for (const g of plan.groups) {
      const went = chainResults.slice(g.from, g.to).every(ok);
      for (const c of g.captures) {
        if (went) perOp.set(leaseOps[c]!, [rowResult(ops[leaseOps[c]!]!, 'OK')]);
        else unpaid.push(leaseOps[c]!);
      }
    }
    const chains = unpaid.map((i) => leaseCaptureChain(ops[i]!.fromLease!));
    const second = chains.length > 0 ? await this.ledger.applyIn(tx, chains.flat()) : undefined;
    if (second)
      splitResults(
        chains.map((c) => c.length),
        second.results,
      ).forEach((r, k) => {
        perOp.set(unpaid[k]!, r);
      });
    // Duplicates after the rest: a repeat of the same charge gets what its first occurrence got.
    plan.fates.forEach((fate, c) => {
      if (fate.kind !== 'duplicate') return;
      const i = leaseOps[c]!;
      const firstGot = perOp.get(leaseOps[fate.of]!)!;
      if (!fate.same) perOp.set(i, [rowResult(ops[i]!, 'EXISTS_WITH_DIFFERENT_FIELDS')]);
      else perOp.set(i, firstGot.every(ok) ? [rowResult(ops[i]!, 'EXISTS')] : firstGot);
    });
    return { perOp, accounts: second?.accounts ?? new Map() };
  }

  /** A request's reservation transfer (`res:<op id>`), if there is one. */
  private reservationOf(opId: string): Promise<StoredTransfer | undefined> {
    return this.reservationReads.submit(`res:${opId}`);
  }

  /** Creates a node's earnings account once per process (accounts are never deleted). */
  private async ensureEarnings(node: string): Promise<void> {
    const id = ACCOUNTS.earnings(node);
    if (this.knownEarnings.has(id)) return;
    await this.ledger.createAccounts([{ id, flags: ACCOUNT_FLAGS.debitsMustNotExceedCredits }]);
    if (this.knownEarnings.size >= MAX_KNOWN_EARNINGS) this.knownEarnings.clear();
    this.knownEarnings.add(id);
  }

  /** Gives a reservation back (failure, cancellation). Idempotent; a no-op once captured. */
  async release(opId: string): Promise<void> {
    const pending = await this.reservationOf(opId);
    if (!pending || pending.resolution !== null) return;
    await this.ledger.createTransfers([
      {
        id: `void:${opId}`,
        kind: 'void',
        pendingId: `res:${opId}`,
        debitAccountId: pending.debitAccountId,
        creditAccountId: ACCOUNTS.escrow,
        amountMsat: 0,
        userData: opId,
      },
    ]);
  }

  async tab(
    payer: string,
    limit = 20,
  ): Promise<{ account: string; balance_msat: number; reserved_msat: number; charges: unknown[] }> {
    const account = ACCOUNTS.tab(payer);
    const [tab] = await this.ledger.lookupAccounts([account]);
    const leasedMsat = await this.leasedMsat(account);
    const charges = await this.db.query(
      'SELECT op_id AS request_id, node, amount_msat, node_msat, router_msat, metering AS receipt, created_at FROM charges WHERE account = $1 ORDER BY created_at DESC LIMIT $2',
      [account, Math.min(Math.max(limit, 1), 200)],
    );
    return {
      account,
      balance_msat: tab ? availableMsat(tab) : 0,
      reserved_msat: (tab?.debitsPending ?? 0) + leasedMsat,
      charges: charges.rows,
    };
  }

  /** What the tab's open leases still hold (shown as reserved, like its reservations). */
  private async leasedMsat(tab: string): Promise<number> {
    const { rows } = await this.db.query<{ leased: number }>(`SELECT ${leasedMsatSql('$1')} AS leased`, [
      tab,
    ]);
    return Number(rows[0]?.leased ?? 0);
  }
}

/**
 * One request's ledger operation: a reserve, a lease's opening, a capture chain with its charge
 * row, or a capture from a lease (`fromLease`, no transfers of its own: lease-charges.ts).
 */
interface RequestOp {
  transfers: TransferInput[];
  charge?: ChargeRow;
  lease?: NewLease;
  fromLease?: LeaseCapture;
}

interface NewLease {
  leaseId: string;
  account: string;
  router: string;
  amountMsat: number;
  expiresAtS: number;
}

interface LeaseRow {
  lease_id: string;
  account: string;
  router: string;
  amount_msat: number;
  expires_at_s: number;
  closed_at_s: number | null;
}

/**
 * Where a charge comes from: a request's own reservation (posted), the tab directly (the
 * reservation expired on the capture's way, or the lease was closed or spent), or a lease's
 * account (the parts are paid from it, no escrow leg).
 */
type ChargeSource =
  | { kind: 'reservation'; tab: string }
  | { kind: 'tab'; tab: string }
  | { kind: 'lease'; account: string; tab: string };

function reservationSource(pending: StoredTransfer): ChargeSource {
  const tab = pending.debitAccountId;
  return pending.resolution === 'expired' ? { kind: 'tab', tab } : { kind: 'reservation', tab };
}

/** Consecutive slices of `results`, one per op, of the sizes given. */
function splitResults(sizes: number[], results: TransferResult[]): TransferResult[][] {
  let at = 0;
  return sizes.map((n) => {
    at += n;
    return results.slice(at - n, at);
  });
}

/** What a capture's charge row says (a lease capture has no transfer of its own to report). */
function rowResult(op: RequestOp, code: TransferResult['code']): TransferResult {
  return { id: `charge:${op.charge?.opId ?? ''}`, code };
}

/** A lease capture's own chain (its parts from the lease's account), as before batching. */
function leaseCaptureChain(capture: LeaseCapture): TransferInput[] {
  const source: ChargeSource = { kind: 'lease', account: capture.leaseAccount, tab: capture.tab };
  return chargeTransfers(capture.opId, source, capture.amountMsat, capture.parts);
}

/** A charge's linked chain: the source's leg (none from a lease), then each non-zero part. */
function chargeTransfers(
  opId: string,
  source: ChargeSource,
  charge: number,
  parts: readonly ChargePart[],
): TransferInput[] {
  const batch: TransferInput[] = [];
  if (source.kind === 'reservation')
    batch.push({
      id: `post:${opId}`,
      kind: 'post',
      pendingId: `res:${opId}`,
      debitAccountId: source.tab,
      creditAccountId: ACCOUNTS.escrow,
      amountMsat: charge,
      userData: opId,
    });
  if (source.kind === 'tab')
    batch.push({
      id: `chg:${opId}`,
      kind: 'single',
      debitAccountId: source.tab,
      creditAccountId: ACCOUNTS.escrow,
      amountMsat: charge,
      userData: opId,
    });
  const from = source.kind === 'lease' ? source.account : ACCOUNTS.escrow;
  for (const part of parts)
    if (part.amountMsat > 0)
      batch.push({
        id: part.id,
        kind: 'single',
        debitAccountId: from,
        creditAccountId: part.account,
        amountMsat: part.amountMsat,
        userData: opId,
      });
  for (let i = 0; i < batch.length - 1; i++) batch[i]!.linked = true;
  return batch;
}

function chargeError(failed: TransferResult): FedAiError {
  return new FedAiError(
    failed.code === 'EXCEEDS_CREDITS' ? 'INSUFFICIENT_BALANCE' : 'LEDGER_REJECTED',
    `capture: ${failed.code}`,
  );
}

/** A hold's answer (a reservation, a lease): the tab's available balance after it, or the refusal. */
function holdOutcome(
  result: TransferResult | undefined,
  tab: Account | undefined,
  amountMsat: number,
  what: string,
): { balanceMsat: number } {
  if (result?.code === 'DEBIT_ACCOUNT_NOT_FOUND')
    throw new FedAiError('INSUFFICIENT_BALANCE', 'No tab yet: top up with POST /v1/tabs/topup.');
  if (result?.code === 'EXCEEDS_CREDITS')
    throw new FedAiError(
      'INSUFFICIENT_BALANCE',
      `The tab holds ${tab ? availableMsat(tab) : 0} msat; this request may cost up to ${amountMsat} msat.`,
    );
  if (result?.code === 'EXISTS_WITH_DIFFERENT_FIELDS') throw new FedAiError('IDEMPOTENCY_CONFLICT');
  if (!result || !ok(result)) throw new FedAiError('LEDGER_REJECTED', `${what}: ${result?.code}`);
  return { balanceMsat: tab ? availableMsat(tab) : 0 };
}

interface RequestOpResult {
  results: TransferResult[];
  /** Every account the batch locked, as the batch left it. */
  accounts: ReadonlyMap<string, Account>;
}

interface ChargeRow {
  opId: string;
  account: string;
  node: string;
  amountMsat: number;
  nodeMsat: number;
  routerMsat: number;
  metering: string;
}

async function insertLeases(tx: Queryable, rows: NewLease[]): Promise<void> {
  await tx.query(
    `INSERT INTO leases (lease_id, account, router, amount_msat, expires_at_s)
     SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
     ON CONFLICT (lease_id) DO NOTHING`,
    [
      rows.map((r) => r.leaseId),
      rows.map((r) => r.account),
      rows.map((r) => r.router),
      rows.map((r) => r.amountMsat),
      rows.map((r) => r.expiresAtS),
    ],
  );
}

/**
 * Joins the charge rows' records into one parameter, split again by PostgreSQL: a text[] of ~1 kB
 * JSON records costs an escape of every quote and backslash on both sides (issue 15: 17 us of CPU
 * per capture on PGlite). U+0001 never occurs in JSON text: raw control characters are not
 * allowed in it, inside strings or out, and every record here has been parsed as JSON. Were one
 * there, the split would yield more records than op ids and the extra one's NULL op id would fail
 * the statement: nothing is written wrong.
 */
const RECORD_SEPARATOR = '\x01';

/**
 * Writes charge rows. One already there fails the statement (23505, unique), the transaction rolls
 * back and the ledger runs it again, which then finds the row (a lease capture's only guard).
 */
async function insertCharges(tx: Queryable, rows: ChargeRow[]): Promise<void> {
  await tx.query(
    `INSERT INTO charges (op_id, account, node, amount_msat, node_msat, router_msat, metering)
     SELECT op_id, account, node, amount_msat, node_msat, router_msat, metering::jsonb
     FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[], $6::bigint[],
       string_to_array($7, E'\\x01'))
       AS v (op_id, account, node, amount_msat, node_msat, router_msat, metering)`,
    [
      rows.map((r) => r.opId),
      rows.map((r) => r.account),
      rows.map((r) => r.node),
      rows.map((r) => r.amountMsat),
      rows.map((r) => r.nodeMsat),
      rows.map((r) => r.routerMsat),
      rows.map((r) => r.metering).join(RECORD_SEPARATOR),
    ],
  );
}

/** The charge rows already written for these op ids (one primary-key probe each, as TRANSFERS_BY_ID). */
async function chargesOf(tx: Queryable, opIds: string[]): Promise<Map<string, ExistingCharge>> {
  const found = await tx.query<{ op_id: string; account: string; node: string; amount_msat: number }>(
    `SELECT c.op_id, c.account, c.node, c.amount_msat FROM unnest($1::text[]) AS v (op_id)
     CROSS JOIN LATERAL (SELECT * FROM charges WHERE op_id = v.op_id LIMIT 1) AS c`,
    [[...new Set(opIds)]],
  );
  return new Map(
    found.rows.map((r) => [r.op_id, { account: r.account, node: r.node, amountMsat: Number(r.amount_msat) }]),
  );
}

/**
 * The node-signed record a capture rests on: signed by `node`, addressed to the router that asks,
 * for this request, with a cost that is price x tokens and within the reservation.
 */
async function verifiedRecord(
  metering: unknown,
  expect: { node: string; opId: string; routerPubkey: string; reservedMsat: number },
): Promise<MeteringRecord> {
  // A receipt stays evidence after the fact: its own created_at is the reference time.
  const verified = await verifyEnvelope(metering, {
    me: expect.routerPubkey,
    kinds: [KIND.meteringRecord],
    asOfCreation: true,
  });
  if (!verified.ok) throw new FedAiError('BAD_METERING', `metering record: ${verified.code}`);
  const check = checkMeteringRecord(verified.payload, verified.envelope.pubkey, {
    signer: expect.node,
    requestId: expect.opId,
    router: expect.routerPubkey,
    reservedMsat: expect.reservedMsat,
  });
  if (!check.ok)
    throw new FedAiError('BAD_METERING', `metering record: ${check.problems.join(', ')}`, {
      problems: check.problems,
    });
  return verified.payload;
}

/**
 * The peer's signed offload result for this request, and the node-signed record inside it:
 * both signatures, the binding to this request, and the cost recomputed from price x tokens.
 */
async function verifiedOffloadResult(
  result: unknown,
  expect: { peer: string; opId: string; routerPubkey: string },
): Promise<{ record: MeteringRecord }> {
  const verified = await verifyEnvelope(result, {
    me: expect.routerPubkey,
    kinds: [KIND.offloadResult],
    asOfCreation: true,
  });
  if (!verified.ok) throw new FedAiError('BAD_METERING', `offload result: ${verified.code}`);
  if (verified.envelope.pubkey !== expect.peer)
    throw new FedAiError('BAD_METERING', 'offload result: not signed by the peer');
  const served = verified.payload;
  if (served.job_id !== expect.opId) throw new FedAiError('BAD_METERING', 'offload result: another request');
  const record = await verifyEnvelope(served.metering, {
    me: expect.peer,
    kinds: [KIND.meteringRecord],
    asOfCreation: true,
  });
  if (!record.ok) throw new FedAiError('BAD_METERING', `offload metering: ${record.code}`);
  const check = checkMeteringRecord(record.payload, record.envelope.pubkey, {
    signer: served.node,
    router: expect.peer,
    model: served.model,
  });
  if (!check.ok || record.payload.cost_msat !== served.cost_msat)
    throw new FedAiError('BAD_METERING', 'offload metering: does not match the receipt', {
      problems: check.ok ? ['METERING_COST'] : check.problems,
    });
  return { record: record.payload };
}

function decodeOrRefuse(bolt11: string, network: BitcoinNetwork): ReturnType<typeof decodeInvoice> {
  let decoded: ReturnType<typeof decodeInvoice>;
  try {
    decoded = decodeInvoice(bolt11);
  } catch (error) {
    throw new FedAiError('INVALID_REQUEST', `not a BOLT11 invoice: ${(error as Error).message}`);
  }
  const on = invoiceNetwork(bolt11);
  if (on !== network)
    throw new FedAiError(
      'INVOICE_WRONG_NETWORK',
      `The invoice is for ${on ?? 'an unknown network'}; this settlement pays on ${network}.`,
    );
  return decoded;
}

/** Why a second refund of an invoice is refused: each invoice is paid at most once. */
function priorPaymentError(prior: PaymentRow): FedAiError {
  if (prior.state === 'succeeded')
    return new FedAiError('IDEMPOTENCY_CONFLICT', 'The invoice is already paid.');
  if (prior.state === 'pending')
    return new FedAiError('IDEMPOTENCY_CONFLICT', 'A payment of this invoice is in progress.');
  return failureError(prior.failure_code, 'A payment of this invoice failed before; ask for a new invoice');
}

/** A void (or the expiry it met) released the hold. */
const released = (code: string | undefined) =>
  code === 'OK' ||
  code === 'EXISTS' ||
  code === 'PENDING_TRANSFER_EXPIRED' ||
  code === 'PENDING_TRANSFER_ALREADY_VOIDED';
