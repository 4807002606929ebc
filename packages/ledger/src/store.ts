// The ledger's shell: loads the rows a batch touches (accounts locked FOR UPDATE in id order, so
// concurrent batches cannot overspend or deadlock), runs the pure posting rules, and writes the
// outcome in the same transaction. Balances change only here.
import { type Db, type Migration, migrate, type Queryable } from '@fed-ai/kit';
import {
  type Account,
  accountInvariantProblems,
  applyBatch,
  expireTransfers,
  type InvariantProblem,
  type LedgerWrites,
  type StoredTransfer,
  type TransferInput,
  type TransferResult,
} from './rules';

/**
 * Thrown inside the transaction when an account would break an invariant after a batch (a negative
 * balance, a flag that no longer holds): the whole batch rolls back. It means the stored state was
 * changed outside the rules (or a rule is wrong); nothing is written until an operator looks.
 */
export class LedgerInvariantError extends Error {
  readonly code = 'LEDGER_INVARIANT_VIOLATED';
  constructor(readonly problems: InvariantProblem[]) {
    super(`ledger invariant violated: ${problems.map((p) => `${p.code} ${p.detail}`).join('; ')}`);
    this.name = 'LedgerInvariantError';
  }
}

/**
 * Transfers by id (unique ids in $1): one primary-key probe per id, whatever the table's size.
 * `id = ANY($1)` (and the OR of two arrays it replaced) let the planner's default costs pick a
 * scan of the whole table for a batch's ~70 ids until ~100,000 rows: 2.0-2.2 ms per batch at
 * 13,000 rows on PGlite against 0.7 for this, flat from 2,000 to 100,000 (issue 15). The LIMIT
 * keeps the subquery from being flattened into a hash join. Exported for the plan's test.
 */
export const TRANSFERS_BY_ID = `SELECT t.* FROM unnest($1::text[]) AS v (id)
  CROSS JOIN LATERAL (SELECT * FROM ledger_transfers WHERE id = v.id LIMIT 1) AS t`;

export const LEDGER_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'ledger',
    sql: `CREATE TABLE IF NOT EXISTS ledger_accounts (
      id TEXT PRIMARY KEY,
      flags INTEGER NOT NULL DEFAULT 0,
      debits_pending BIGINT NOT NULL DEFAULT 0 CHECK (debits_pending >= 0),
      debits_posted BIGINT NOT NULL DEFAULT 0 CHECK (debits_posted >= 0),
      credits_pending BIGINT NOT NULL DEFAULT 0 CHECK (credits_pending >= 0),
      credits_posted BIGINT NOT NULL DEFAULT 0 CHECK (credits_posted >= 0),
      created_at TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE IF NOT EXISTS ledger_transfers (
      id TEXT PRIMARY KEY,
      kind TEXT NOT NULL CHECK (kind IN ('single', 'pending', 'post', 'void')),
      debit_account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
      credit_account_id TEXT NOT NULL REFERENCES ledger_accounts (id),
      amount_msat BIGINT NOT NULL CHECK (amount_msat >= 0),
      pending_id TEXT,
      timeout_s INTEGER,
      user_data TEXT,
      created_at_s BIGINT NOT NULL,
      expires_at_s BIGINT,
      resolution TEXT CHECK (resolution IN ('posted', 'voided', 'expired'))
    );
    CREATE INDEX IF NOT EXISTS ledger_transfers_open_pending ON ledger_transfers (expires_at_s) WHERE kind = 'pending' AND resolution IS NULL;
    CREATE INDEX IF NOT EXISTS ledger_transfers_user_data ON ledger_transfers (user_data);`,
  },
  {
    // No query reads transfers by user_data (a request's transfers have ids built from its op
    // id), and every transfer row paid for this index: 4-5 rows per paid request.
    version: 2,
    name: 'drop_user_data_index',
    sql: 'DROP INDEX IF EXISTS ledger_transfers_user_data;',
  },
];

export interface NewAccount {
  id: string;
  flags?: number;
}

const RETRYABLE_PG = new Set(['23505', '40001', '40P01']);
const MAX_RETRIES = 5;

interface AccountRow {
  id: string;
  flags: number;
  debits_pending: number;
  debits_posted: number;
  credits_pending: number;
  credits_posted: number;
}

interface TransferRow {
  id: string;
  kind: StoredTransfer['kind'];
  debit_account_id: string;
  credit_account_id: string;
  amount_msat: number;
  pending_id: string | null;
  timeout_s: number | null;
  user_data: string | null;
  created_at_s: number;
  expires_at_s: number | null;
  resolution: StoredTransfer['resolution'];
}

const toAccount = (r: AccountRow): Account => ({
  id: r.id,
  flags: r.flags,
  debitsPending: r.debits_pending,
  debitsPosted: r.debits_posted,
  creditsPending: r.credits_pending,
  creditsPosted: r.credits_posted,
});

const toTransfer = (r: TransferRow): StoredTransfer => ({
  id: r.id,
  kind: r.kind,
  debitAccountId: r.debit_account_id,
  creditAccountId: r.credit_account_id,
  amountMsat: r.amount_msat,
  pendingId: r.pending_id ?? undefined,
  timeoutS: r.timeout_s ?? undefined,
  userData: r.user_data ?? undefined,
  createdAtS: r.created_at_s,
  expiresAtS: r.expires_at_s,
  resolution: r.resolution,
});

export class Ledger {
  private constructor(
    readonly db: Db,
    private readonly nowS: () => number,
  ) {}

  static async open(db: Db, nowS: () => number = () => Math.floor(Date.now() / 1000)): Promise<Ledger> {
    await migrate(db, 'ledger', LEDGER_MIGRATIONS);
    return new Ledger(db, nowS);
  }

  /** Creates accounts that do not exist yet (idempotent); never changes an existing one. */
  async createAccounts(accounts: readonly NewAccount[]): Promise<void> {
    for (const a of accounts) {
      await this.db.query(
        'INSERT INTO ledger_accounts (id, flags) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING',
        [a.id, a.flags ?? 0],
      );
    }
  }

  async lookupAccounts(ids: readonly string[]): Promise<Account[]> {
    const rows = await this.db.query<AccountRow>(
      'SELECT * FROM ledger_accounts WHERE id = ANY($1) ORDER BY id',
      [ids],
    );
    return rows.rows.map(toAccount);
  }

  /**
   * Reads accounts inside the caller's open transaction and locks them until it ends (in id
   * order, as every batch locks), so a balance read there stays true until the caller commits.
   */
  async lookupAccountsIn(tx: Queryable, ids: readonly string[]): Promise<Account[]> {
    const rows = await tx.query<AccountRow>(
      'SELECT * FROM ledger_accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE',
      [ids],
    );
    return rows.rows.map(toAccount);
  }

  async lookupTransfers(ids: readonly string[]): Promise<StoredTransfer[]> {
    const rows = await this.db.query<TransferRow>(TRANSFERS_BY_ID, [[...new Set(ids)]]);
    return rows.rows.map(toTransfer);
  }

  /**
   * Applies a batch atomically (one DB transaction); returns one result per transfer, in order.
   * `alsoInTx` runs in the same transaction after the batch (e.g. to record what a charge rests on),
   * so the ledger and that record commit or roll back together. It also sees the final state of
   * every account the batch locked (no second read for a balance).
   */
  async createTransfers(
    batch: readonly TransferInput[],
    alsoInTx?: (
      tx: Queryable,
      results: TransferResult[],
      accounts: ReadonlyMap<string, Account>,
    ) => Promise<void>,
  ): Promise<TransferResult[]> {
    return this.transact(async (tx) => {
      const { results, accounts } = await this.applyIn(tx, batch);
      if (alsoInTx) await alsoInTx(tx, results, accounts);
      return results;
    });
  }

  /**
   * Runs `fn` in one transaction, run again whole when it lost a race (a duplicate key, a
   * serialization failure, a deadlock): the next run sees the winner's rows. For callers that
   * decide their batch from what they read in the transaction (then `applyIn`).
   */
  async transact<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.db.transaction(fn);
      } catch (error) {
        const code = (error as { code?: string }).code;
        // Two writers raced on the same transfer id or a lock cycle: retrying sees the winner's row.
        if (attempt < MAX_RETRIES && code && RETRYABLE_PG.has(code)) continue;
        throw error;
      }
    }
  }

  /**
   * Applies a batch inside the caller's open transaction, so the caller's own rows (a payment, a
   * decision) and the ledger commit together. The caller owns retries; lock order is the same.
   */
  async createTransfersIn(tx: Queryable, batch: readonly TransferInput[]): Promise<TransferResult[]> {
    return (await this.applyIn(tx, batch)).results;
  }

  /** As createTransfersIn, with the final state of every account the batch locked. */
  async applyIn(
    tx: Queryable,
    batch: readonly TransferInput[],
  ): Promise<{ results: TransferResult[]; accounts: Map<string, Account> }> {
    const ids = batch.map((t) => t.id);
    const pendingIds = batch.map((t) => t.pendingId).filter((id): id is string => Boolean(id));
    const existing = await tx.query<TransferRow>(TRANSFERS_BY_ID, [[...new Set([...ids, ...pendingIds])]]);
    const transfers = new Map(existing.rows.map((r) => [r.id, toTransfer(r)]));
    const accountIds = new Set<string>();
    for (const t of batch) {
      accountIds.add(t.debitAccountId);
      accountIds.add(t.creditAccountId);
    }
    for (const t of transfers.values()) {
      accountIds.add(t.debitAccountId);
      accountIds.add(t.creditAccountId);
    }
    const accounts = await this.lockAccounts(tx, accountIds);
    // Read the transfers again under the account locks: whoever resolved one of them (a post, a
    // void, the sweeper) held these locks and has committed, so this read is current. PGlite runs
    // one transaction at a time (its queries wait for it too), so the first read already was.
    if (transfers.size > 0 && this.db.kind !== 'pglite') {
      const current = await tx.query<TransferRow>(TRANSFERS_BY_ID, [[...transfers.keys()]]);
      for (const r of current.rows) transfers.set(r.id, toTransfer(r));
    }
    const outcome = applyBatch({ accounts, transfers }, batch, this.nowS());
    await this.write(tx, accounts, outcome);
    for (const [id, account] of outcome.changedAccounts) accounts.set(id, account);
    return { results: outcome.results, accounts };
  }

  /** Locks accounts FOR UPDATE in id order (no deadlocks between batches) and loads them. */
  private async lockAccounts(tx: Queryable, ids: Iterable<string>): Promise<Map<string, Account>> {
    const sorted = [...new Set(ids)].sort();
    const locked = await tx.query<AccountRow>(
      'SELECT * FROM ledger_accounts WHERE id = ANY($1) ORDER BY id FOR UPDATE',
      [sorted],
    );
    return new Map(locked.rows.map((r) => [r.id, toAccount(r)]));
  }

  /**
   * Writes an outcome, then asserts the invariants over every account the batch locked (their
   * final state: the rows are locked, so nothing else changed them). A breach throws, and the
   * transaction rolls back.
   */
  private async write(tx: Queryable, locked: Map<string, Account>, outcome: LedgerWrites): Promise<void> {
    const problems: InvariantProblem[] = [];
    for (const [id, a] of locked)
      problems.push(...accountInvariantProblems(outcome.changedAccounts.get(id) ?? a));
    if (problems.length > 0) throw new LedgerInvariantError(problems);
    // One statement per kind of write, whatever the batch size (unnest of parallel arrays).
    const created = outcome.created;
    if (created.length > 0)
      await tx.query(
        `INSERT INTO ledger_transfers (id, kind, debit_account_id, credit_account_id, amount_msat, pending_id, timeout_s, user_data, created_at_s, expires_at_s, resolution)
         SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[], $7::int[], $8::text[], $9::bigint[], $10::bigint[], $11::text[])`,
        [
          created.map((t) => t.id),
          created.map((t) => t.kind),
          created.map((t) => t.debitAccountId),
          created.map((t) => t.creditAccountId),
          created.map((t) => t.amountMsat),
          created.map((t) => t.pendingId ?? null),
          created.map((t) => t.timeoutS ?? null),
          created.map((t) => t.userData ?? null),
          created.map((t) => t.createdAtS),
          created.map((t) => t.expiresAtS),
          created.map((t) => t.resolution),
        ],
      );
    const resolved = [...outcome.resolved];
    if (resolved.length > 0)
      await tx.query(
        `UPDATE ledger_transfers AS t SET resolution = v.resolution
         FROM unnest($1::text[], $2::text[]) AS v (id, resolution) WHERE t.id = v.id`,
        [resolved.map(([id]) => id), resolved.map(([, resolution]) => resolution)],
      );
    const changed = [...outcome.changedAccounts.values()];
    if (changed.length > 0)
      await tx.query(
        `UPDATE ledger_accounts AS a SET debits_pending = v.dp, debits_posted = v.dpo, credits_pending = v.cp, credits_posted = v.cpo
         FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[]) AS v (id, dp, dpo, cp, cpo)
         WHERE a.id = v.id`,
        [
          changed.map((a) => a.id),
          changed.map((a) => a.debitsPending),
          changed.map((a) => a.debitsPosted),
          changed.map((a) => a.creditsPending),
          changed.map((a) => a.creditsPosted),
        ],
      );
  }

  /**
   * Expires every pending transfer past its deadline, releasing its amounts. Idempotent. What an
   * expiry posts is decided by the rules (`expireTransfers`); this only loads, locks and writes.
   */
  async expirePending(limit = 500): Promise<number> {
    const now = this.nowS();
    const due = await this.db.query<{ id: string }>(
      `SELECT id FROM ledger_transfers WHERE kind = 'pending' AND resolution IS NULL AND expires_at_s <= $1 ORDER BY expires_at_s LIMIT $2`,
      [now, Math.min(Math.max(limit, 1), 8190)],
    );
    let expired = 0;
    // One transaction per transfer: a sweep never holds many account locks at once.
    for (const row of due.rows) {
      expired += await this.db.transaction(async (tx) => {
        const fresh = await tx.query<TransferRow>('SELECT * FROM ledger_transfers WHERE id = $1 FOR UPDATE', [
          row.id,
        ]);
        if (!fresh.rows[0]) return 0;
        const t = toTransfer(fresh.rows[0]);
        const accounts = await this.lockAccounts(tx, [t.debitAccountId, t.creditAccountId]);
        const outcome = expireTransfers({ accounts, transfers: new Map([[t.id, t]]) }, [t.id], now);
        await this.write(tx, accounts, outcome);
        return outcome.results.filter((r) => r.code === 'EXPIRED').length;
      });
    }
    return expired;
  }
}
