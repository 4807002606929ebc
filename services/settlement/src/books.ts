// The network's books on top of the ledger: account layout, tab top-ups through Lightning
// invoices, reservations before dispatch, captures split into node earnings and router fee, and
// releases. Every operation has a deterministic transfer id derived from its request, so a retry
// (after a timeout or a crash) can never move money twice.
import type { Db, Migration } from '@fed-ai/kit';
import {
  checkMeteringRecord,
  FedAiError,
  KIND,
  type MeteringRecord,
  splitCharge,
  verifyEnvelope,
} from '@fed-ai/protocol';
import {
  ACCOUNT_FLAGS,
  availableMsat,
  type Ledger,
  type TransferInput,
  type TransferResult,
} from './ledger/index';
import type { Invoice, LightningBackend } from './lightning/backend';

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
];

const ok = (r: TransferResult) => r.code === 'OK' || r.code === 'EXISTS';

export interface BooksOptions {
  routerFeeBps: number;
  topupExpiryS?: number;
  faucetEnabled?: boolean;
  maxTopupMsat?: number;
}

export class Books {
  constructor(
    private readonly db: Db,
    private readonly ledger: Ledger,
    private readonly lightning: LightningBackend,
    private readonly options: BooksOptions,
  ) {}

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

  /** A BOLT11 invoice that credits `payer`'s tab exactly once when paid. */
  async openTopup(payer: string, amountMsat: number): Promise<Invoice> {
    const max = this.options.maxTopupMsat ?? 100_000_000_000;
    if (!Number.isSafeInteger(amountMsat) || amountMsat < 1000 || amountMsat > max) {
      throw new FedAiError('INVALID_REQUEST', `amount_msat must be 1000..${max}`);
    }
    const account = await this.ensureTab(payer);
    const invoice = await this.lightning.createInvoice({
      amountMsat,
      description: `fed-ai tab top-up ${account}`,
      expirySeconds: this.options.topupExpiryS ?? 3600,
    });
    await this.db.query('INSERT INTO topups (payment_hash, account, amount_msat) VALUES ($1, $2, $3)', [
      invoice.paymentHash,
      account,
      amountMsat,
    ]);
    return invoice;
  }

  /** Devnet faucet: pays one of our top-up invoices from the faucet account. */
  async faucetPay(bolt11: string): Promise<{ paymentHash: string; creditedMsat: number }> {
    if (!this.options.faucetEnabled) throw new FedAiError('FORBIDDEN', 'The faucet is off (devnet only).');
    const topup = await this.topupFor(bolt11);
    await this.db.query('UPDATE topups SET paid_by = $2 WHERE payment_hash = $1 AND paid_by IS NULL', [
      topup.payment_hash,
      ACCOUNTS.faucet,
    ]);
    let alreadyPaid = false;
    try {
      await this.lightning.payInvoice(bolt11, { maxFeeMsat: 0 });
    } catch (error) {
      if ((error as { code?: string }).code !== 'IDEMPOTENCY_CONFLICT') throw error;
      alreadyPaid = true; // paid before (faucet, refund or Lightning): the credit below is idempotent
    }
    await this.creditSettledTopups();
    if (alreadyPaid)
      throw new FedAiError('ALREADY_PAID', 'This invoice was already paid; nothing more was credited.');
    return { paymentHash: topup.payment_hash, creditedMsat: topup.amount_msat };
  }

  private async topupFor(
    bolt11: string,
  ): Promise<{ payment_hash: string; account: string; amount_msat: number }> {
    const { decodeInvoice } = await import('./lightning/bolt11');
    let hash: string;
    try {
      hash = decodeInvoice(bolt11).paymentHash;
    } catch (error) {
      throw new FedAiError('INVALID_REQUEST', `not a BOLT11 invoice: ${(error as Error).message}`);
    }
    const rows = await this.db.query<{ payment_hash: string; account: string; amount_msat: number }>(
      'SELECT payment_hash, account, amount_msat FROM topups WHERE payment_hash = $1',
      [hash],
    );
    if (!rows.rows[0]) throw new FedAiError('INVOICE_NOT_FOUND');
    return rows.rows[0];
  }

  /**
   * Credits every settled, not yet credited top-up (idempotent: transfer id `topup:<hash>`). Runs
   * after each payment and on a timer, so a crash between "invoice paid" and "tab credited" heals.
   */
  async creditSettledTopups(limit = 200): Promise<number> {
    const rows = await this.db.query<{
      payment_hash: string;
      account: string;
      amount_msat: number;
      paid_by: string | null;
    }>(
      `SELECT t.payment_hash, t.account, t.amount_msat, t.paid_by FROM topups t
       JOIN invoices i ON i.payment_hash = t.payment_hash
       WHERE i.settled_at_s IS NOT NULL
         AND NOT EXISTS (SELECT 1 FROM ledger_transfers x WHERE x.id = 'topup:' || t.payment_hash)
       LIMIT $1`,
      [limit],
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

  /**
   * Refunds unused balance by paying an invoice the client gives. With the internal backend the
   * invoice must be one of this system's (as LNbits internal payments): the tab debit, the other
   * account's credit and the invoice settlement commit in ONE database transaction, so a crash can
   * neither pay without debiting nor debit without paying. The transfer id `topup:<hash>` is the
   * same one the top-up crediting uses, so the receiving account is credited exactly once.
   */
  async refund(
    payer: string,
    bolt11: string,
  ): Promise<{ paymentHash: string; amountMsat: number; balanceMsat: number }> {
    const topup = await this.topupFor(bolt11).catch((error: unknown) => {
      if (error instanceof FedAiError && error.code === 'INVOICE_NOT_FOUND') {
        throw new FedAiError(
          'INVOICE_NOT_FOUND',
          'The internal Lightning backend can only pay invoices of this system; external invoices need an LND, CLN or LNbits backend.',
        );
      }
      throw error;
    });
    const account = ACCOUNTS.tab(payer);
    if (topup.account === account)
      throw new FedAiError('INVALID_REQUEST', 'That invoice would pay your own tab.');
    const now = Math.floor(Date.now() / 1000);
    const results = await this.ledger.createTransfers(
      [
        {
          id: `topup:${topup.payment_hash}`,
          kind: 'single',
          debitAccountId: account,
          creditAccountId: topup.account,
          amountMsat: topup.amount_msat,
          userData: `refund:${payer}`,
        },
      ],
      async (tx, r) => {
        if (r[0]?.code !== 'OK') return;
        const settled = await tx.query(
          'UPDATE invoices SET settled_at_s = $2 WHERE payment_hash = $1 AND settled_at_s IS NULL AND expires_at_s > $2 RETURNING payment_hash',
          [topup.payment_hash, now],
        );
        if (settled.rows.length !== 1)
          throw new FedAiError('INVOICE_EXPIRED', 'The invoice is expired or already paid.');
        await tx.query('UPDATE topups SET paid_by = $2 WHERE payment_hash = $1', [
          topup.payment_hash,
          account,
        ]);
      },
    );
    const code = results[0]?.code;
    if (code === 'EXCEEDS_CREDITS' || code === 'ACCOUNT_NOT_FOUND') {
      throw new FedAiError('INSUFFICIENT_BALANCE', `The tab cannot cover ${topup.amount_msat} msat.`);
    }
    if (code === 'EXISTS' || code === 'EXISTS_WITH_DIFFERENT_FIELDS')
      throw new FedAiError('IDEMPOTENCY_CONFLICT', 'The invoice is already paid.');
    if (code !== 'OK') throw new FedAiError('LEDGER_REJECTED', `refund: ${code}`);
    const [after] = await this.ledger.lookupAccounts([account]);
    return {
      paymentHash: topup.payment_hash,
      amountMsat: topup.amount_msat,
      balanceMsat: after ? availableMsat(after) : 0,
    };
  }

  /** Holds `amountMsat` of the payer's tab for one request until captured, released or expired. */
  async reserve(
    opId: string,
    payer: string,
    amountMsat: number,
    timeoutS: number,
  ): Promise<{ balanceMsat: number }> {
    const account = ACCOUNTS.tab(payer);
    const [tab] = await this.ledger.lookupAccounts([account]);
    if (!tab) throw new FedAiError('INSUFFICIENT_BALANCE', 'No tab yet: top up with POST /v1/tabs/topup.');
    if (amountMsat > 0) {
      const [result] = await this.ledger.createTransfers([
        {
          id: `res:${opId}`,
          kind: 'pending',
          debitAccountId: account,
          creditAccountId: ACCOUNTS.escrow,
          amountMsat,
          timeoutS,
          userData: opId,
        },
      ]);
      if (result?.code === 'EXCEEDS_CREDITS') {
        throw new FedAiError(
          'INSUFFICIENT_BALANCE',
          `The tab holds ${availableMsat(tab)} msat; this request may cost up to ${amountMsat} msat.`,
        );
      }
      if (result?.code === 'EXISTS_WITH_DIFFERENT_FIELDS') throw new FedAiError('IDEMPOTENCY_CONFLICT');
      if (!result || !ok(result)) throw new FedAiError('LEDGER_REJECTED', `reserve: ${result?.code}`);
    }
    const [after] = await this.ledger.lookupAccounts([account]);
    return { balanceMsat: after ? availableMsat(after) : 0 };
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
  ): Promise<{ chargedMsat: number }> {
    const [pending] = await this.ledger.lookupTransfers([`res:${opId}`]);
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
    await this.ledger.createAccounts([{ id: ACCOUNTS.earnings(node) }]);
    const { nodeMsat, routerMsat } = splitCharge(charge, this.options.routerFeeBps);
    const expired = pending.resolution === 'expired';
    const batch: TransferInput[] = [
      expired
        ? {
            id: `chg:${opId}`,
            kind: 'single',
            debitAccountId: pending.debitAccountId,
            creditAccountId: ACCOUNTS.escrow,
            amountMsat: charge,
            userData: opId,
          }
        : {
            id: `post:${opId}`,
            kind: 'post',
            pendingId: `res:${opId}`,
            debitAccountId: pending.debitAccountId,
            creditAccountId: ACCOUNTS.escrow,
            amountMsat: charge,
            userData: opId,
          },
    ];
    if (nodeMsat > 0)
      batch.push({
        id: `pay:${opId}`,
        kind: 'single',
        debitAccountId: ACCOUNTS.escrow,
        creditAccountId: ACCOUNTS.earnings(node),
        amountMsat: nodeMsat,
        userData: opId,
      });
    if (routerMsat > 0)
      batch.push({
        id: `fee:${opId}`,
        kind: 'single',
        debitAccountId: ACCOUNTS.escrow,
        creditAccountId: ACCOUNTS.routerFees,
        amountMsat: routerMsat,
        userData: opId,
      });
    for (let i = 0; i < batch.length - 1; i++) batch[i]!.linked = true;
    const results = await this.ledger.createTransfers(batch, async (tx, r) => {
      if (!r.every(ok)) return;
      await tx.query(
        `INSERT INTO charges (op_id, account, node, amount_msat, node_msat, router_msat, metering) VALUES ($1,$2,$3,$4,$5,$6,$7) ON CONFLICT (op_id) DO NOTHING`,
        [opId, pending.debitAccountId, node, charge, nodeMsat, routerMsat, JSON.stringify(metering)],
      );
    });
    if (!results.every(ok)) {
      const failed = results.find((r) => !ok(r) && r.code !== 'LINKED_EVENT_FAILED') ?? results[0];
      throw new FedAiError(
        failed?.code === 'EXCEEDS_CREDITS' ? 'INSUFFICIENT_BALANCE' : 'LEDGER_REJECTED',
        `capture: ${failed?.code}`,
      );
    }
    return { chargedMsat: charge };
  }

  /** Gives a reservation back (failure, cancellation). Idempotent; a no-op once captured. */
  async release(opId: string): Promise<void> {
    const [pending] = await this.ledger.lookupTransfers([`res:${opId}`]);
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
    const charges = await this.db.query(
      'SELECT op_id AS request_id, node, amount_msat, node_msat, router_msat, metering AS receipt, created_at FROM charges WHERE account = $1 ORDER BY created_at DESC LIMIT $2',
      [account, Math.min(Math.max(limit, 1), 200)],
    );
    return {
      account,
      balance_msat: tab ? availableMsat(tab) : 0,
      reserved_msat: tab?.debitsPending ?? 0,
      charges: charges.rows,
    };
  }
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
  const createdAtS = (metering as { created_at?: unknown } | null)?.created_at;
  const verified = await verifyEnvelope(metering, {
    me: expect.routerPubkey,
    kinds: [KIND.meteringRecord],
    ...(typeof createdAtS === 'number' ? { nowS: createdAtS } : {}),
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
