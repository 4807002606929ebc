// The router's durable outbox of money operations owed to settlement. A capture is written here
// once its answer went out, then sent; a release after a reserve whose outcome is unknown is
// written here too. A loop retries due rows with backoff until settlement confirms, so a
// settlement outage or a router restart loses no charge: operations are idempotent by op id.
import type { Db, Migration } from '@fed-ai/kit';
import { beating, GroupCommit, type JobHeartbeats, migrate } from '@fed-ai/kit';
import { FedAiError } from '@fed-ai/protocol';
import type { Logger } from 'pino';
import { type JournalRow, journalKey, OutboxJournal } from './outbox-journal';

const OUTBOX_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'settlement_outbox',
    sql: `CREATE TABLE IF NOT EXISTS settlement_outbox (
      op_id TEXT NOT NULL,
      op TEXT NOT NULL CHECK (op IN ('capture', 'release')),
      payload JSONB NOT NULL,
      attempts INTEGER NOT NULL DEFAULT 0,
      next_attempt_ms BIGINT NOT NULL,
      repeat_until_ms BIGINT NOT NULL DEFAULT 0,
      last_error TEXT,
      created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      PRIMARY KEY (op_id, op)
    );
    CREATE INDEX IF NOT EXISTS settlement_outbox_due ON settlement_outbox (next_attempt_ms);`,
  },
];

export async function migrateOutbox(db: Db): Promise<void> {
  await migrate(db, 'router-outbox', OUTBOX_MIGRATIONS);
}

export type OutboxOp = 'capture' | 'release';

export interface OutboxRow {
  op_id: string;
  op: OutboxOp;
  payload: Record<string, unknown>;
  attempts: number;
  repeat_until_ms: number;
}

/** What sending one row did: done (delete it), retry later, or refused for good (delete, log). */
export type SendOutcome = 'done' | 'retry' | 'refused';

export interface OutboxOptions {
  db: Db;
  logger: Logger;
  send: (row: OutboxRow) => Promise<SendOutcome>;
  /**
   * Keep the rows in this append-only file instead of the database table (a router whose data
   * directory is its own: outbox-journal.ts); rows a previous version left in the table move
   * into it at start().
   */
  journalPath?: string;
  baseDelayMs?: number;
  maxDelayMs?: number;
  batch?: number;
  now?: () => number;
  /** The drain loop's heartbeat (job `router_settlement_outbox`). */
  jobs?: JobHeartbeats;
}

/** Next delay: doubling from base, capped. Pure. */
function outboxDelayMs(attempts: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempts, 20));
}

interface NewRow {
  opId: string;
  op: OutboxOp;
  payload: string;
  nextAttemptMs: number;
  repeatUntilMs: number;
}

type OutboxKey = { opId: string; op: OutboxOp };

/** Where the rows live: the database table, or the journal file. */
interface OutboxStore {
  /** Durable when it resolves; a row already there is left as it is. */
  insert(rows: NewRow[]): Promise<void>;
  delete(keys: OutboxKey[]): Promise<void>;
  /** Rows due at `cutoffMs`, soonest first. */
  due(cutoffMs: number, limit: number): Promise<OutboxRow[]>;
  /** Sets when a row is due next; `tried` counts one more attempt. */
  schedule(key: OutboxKey, nextAttemptMs: number, tried: boolean): Promise<void>;
  count(): Promise<number>;
  /** Which of these op ids have a row. */
  holding(opIds: string[]): Promise<Set<string>>;
  close(): Promise<void>;
}

class TableStore implements OutboxStore {
  constructor(private readonly db: Db) {}

  async insert(rows: NewRow[]): Promise<void> {
    await this.db.query(
      `INSERT INTO settlement_outbox (op_id, op, payload, next_attempt_ms, repeat_until_ms)
       SELECT op_id, op, payload::jsonb, next_ms, until_ms
       FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::bigint[])
         AS v (op_id, op, payload, next_ms, until_ms)
       ON CONFLICT (op_id, op) DO NOTHING`,
      [
        rows.map((r) => r.opId),
        rows.map((r) => r.op),
        rows.map((r) => r.payload),
        rows.map((r) => r.nextAttemptMs),
        rows.map((r) => r.repeatUntilMs),
      ],
    );
  }

  async delete(keys: OutboxKey[]): Promise<void> {
    await this.db.query(
      `DELETE FROM settlement_outbox WHERE (op_id, op) IN
         (SELECT * FROM unnest($1::text[], $2::text[]))`,
      [keys.map((k) => k.opId), keys.map((k) => k.op)],
    );
  }

  async due(cutoffMs: number, limit: number): Promise<OutboxRow[]> {
    const due = await this.db.query<OutboxRow & { payload: Record<string, unknown> | string }>(
      `SELECT op_id, op, payload, attempts, repeat_until_ms FROM settlement_outbox
       WHERE next_attempt_ms <= $1 ORDER BY next_attempt_ms LIMIT $2`,
      [cutoffMs, limit],
    );
    return due.rows.map((raw) => ({
      ...raw,
      attempts: Number(raw.attempts),
      repeat_until_ms: Number(raw.repeat_until_ms),
      payload: typeof raw.payload === 'string' ? JSON.parse(raw.payload) : raw.payload,
    }));
  }

  async schedule(key: OutboxKey, nextAttemptMs: number, tried: boolean): Promise<void> {
    await this.db.query(
      `UPDATE settlement_outbox SET attempts = attempts + $4, next_attempt_ms = $3
       WHERE op_id = $1 AND op = $2`,
      [key.opId, key.op, nextAttemptMs, tried ? 1 : 0],
    );
  }

  async count(): Promise<number> {
    const r = await this.db.query<{ n: number }>('SELECT count(*)::int AS n FROM settlement_outbox');
    return r.rows[0]?.n ?? 0;
  }

  async holding(opIds: string[]): Promise<Set<string>> {
    const r = await this.db.query<{ op_id: string }>(
      'SELECT DISTINCT op_id FROM settlement_outbox WHERE op_id = ANY($1::text[])',
      [opIds],
    );
    return new Set(r.rows.map((row) => row.op_id));
  }

  async close(): Promise<void> {}
}

/** At most this many rows in the journal's memory (~1.5 kB each); beyond, add() fails. */
const MAX_JOURNAL_ROWS = 200_000;

class JournalStore implements OutboxStore {
  /** Due times and attempts, in memory only (a restart sends every row at its first drain). */
  private readonly timing = new Map<string, { nextAttemptMs: number; attempts: number }>();

  constructor(private readonly journal: OutboxJournal) {
    for (const key of journal.rows.keys()) this.timing.set(key, { nextAttemptMs: 0, attempts: 0 });
  }

  async insert(rows: NewRow[]): Promise<void> {
    if (this.journal.rows.size + rows.length > MAX_JOURNAL_ROWS)
      throw new FedAiError('OVERLOADED', 'The outbox is full: settlement has not confirmed for a long time.');
    await this.journal.append(rows);
    for (const r of rows) {
      const key = journalKey(r.opId, r.op);
      if (!this.timing.has(key)) this.timing.set(key, { nextAttemptMs: r.nextAttemptMs, attempts: 0 });
    }
  }

  async delete(keys: OutboxKey[]): Promise<void> {
    for (const k of keys) this.timing.delete(journalKey(k.opId, k.op));
    await this.journal.remove(keys);
  }

  async due(cutoffMs: number, limit: number): Promise<OutboxRow[]> {
    const due: { row: JournalRow; at: number; attempts: number }[] = [];
    for (const [key, row] of this.journal.rows) {
      const t = this.timing.get(key) ?? { nextAttemptMs: 0, attempts: 0 };
      if (t.nextAttemptMs <= cutoffMs) due.push({ row, at: t.nextAttemptMs, attempts: t.attempts });
    }
    due.sort((a, b) => a.at - b.at);
    return due.slice(0, limit).map(({ row, attempts }) => ({
      op_id: row.opId,
      op: row.op,
      payload: JSON.parse(row.payload) as Record<string, unknown>,
      attempts,
      repeat_until_ms: row.repeatUntilMs,
    }));
  }

  async schedule(key: OutboxKey, nextAttemptMs: number, tried: boolean): Promise<void> {
    const t = this.timing.get(journalKey(key.opId, key.op));
    if (!t) return;
    t.nextAttemptMs = nextAttemptMs;
    if (tried) t.attempts += 1;
  }

  async count(): Promise<number> {
    return this.journal.rows.size;
  }

  async holding(opIds: string[]): Promise<Set<string>> {
    const wanted = new Set(opIds);
    const held = new Set<string>();
    for (const row of this.journal.rows.values()) if (wanted.has(row.opId)) held.add(row.opId);
    return held;
  }

  close(): Promise<void> {
    return this.journal.close();
  }
}

/** How long finished rows wait to be deleted together (deleting late is harmless: ops are idempotent). */
const REMOVE_LINGER_MS = 1_000;
/**
 * A row its sender is still working on is not due before this (longer than a send can take:
 * 5 s timeout, lanes, retries). A failed send makes it due at once (markDue); a restarted router's
 * first drain takes every row.
 */
const IN_FLIGHT_GRACE_MS = 15_000;
/**
 * Rows whose INSERT failed (the router's database down or restarting) are kept in memory and
 * written by the loop once it answers, so a capture whose answer went out is not lost with the
 * connection. Bounded: beyond this, add() throws as before.
 */
const MAX_UNWRITTEN = 10_000;

export class SettlementOutbox {
  private timer: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  /** The first drain of this process takes every row, in flight or backing off (a previous process's). */
  private drained = false;
  private store: OutboxStore;
  /** Rows added by concurrent requests are written together (no linger: a charge is durable at once). */
  private readonly adds = new GroupCommit<NewRow, void>(async (rows) => {
    await this.store.insert(rows);
    return rows.map(() => ({ ok: true, value: undefined }));
  });
  private readonly removes = new GroupCommit<OutboxKey, void>(
    async (keys) => {
      await this.store.delete(keys);
      return keys.map(() => ({ ok: true, value: undefined }));
    },
    { lingerMs: REMOVE_LINGER_MS },
  );

  /** Rows not written yet, by `op_id|op` (see MAX_UNWRITTEN). */
  private readonly unwritten = new Map<string, NewRow>();

  constructor(private readonly options: OutboxOptions) {
    this.store = new TableStore(options.db);
  }

  /**
   * Opens the journal, when there is one, and moves any rows left in the table into it (written
   * to the journal first, then deleted: a crash between only repeats the move). Before add().
   */
  async open(): Promise<void> {
    if (!this.options.journalPath) return;
    const table = this.store;
    const journal = new JournalStore(await OutboxJournal.open(this.options.journalPath));
    const left = await table.due(Number.MAX_SAFE_INTEGER, MAX_JOURNAL_ROWS);
    if (left.length > 0) {
      await journal.insert(
        left.map((r) => ({
          opId: r.op_id,
          op: r.op,
          payload: JSON.stringify(r.payload),
          nextAttemptMs: 0,
          repeatUntilMs: r.repeat_until_ms,
        })),
      );
      await table.delete(left.map((r) => ({ opId: r.op_id, op: r.op })));
      this.options.logger.info({ rows: left.length }, 'outbox rows moved from the table to the journal');
    }
    this.store = journal;
  }

  private now(): number {
    return this.options.now?.() ?? Date.now();
  }

  /**
   * Persists an operation; `repeatForMs` keeps re-sending a successful one for that long. With
   * `inFlight`, the caller sends it now itself: the loop leaves it alone unless the send fails.
   */
  async add(
    opId: string,
    op: OutboxOp,
    payload: Record<string, unknown>,
    options: { repeatForMs?: number; inFlight?: boolean } = {},
  ): Promise<void> {
    const now = this.now();
    const repeatForMs = options.repeatForMs ?? 0;
    const row: NewRow = {
      opId,
      op,
      payload: JSON.stringify(payload),
      nextAttemptMs: options.inFlight ? now + IN_FLIGHT_GRACE_MS : now,
      repeatUntilMs: repeatForMs > 0 ? now + repeatForMs : 0,
    };
    try {
      await this.adds.submit(row);
    } catch (error) {
      const key = `${opId}|${op}`;
      if (!this.unwritten.has(key) && this.unwritten.size >= MAX_UNWRITTEN) throw error;
      this.unwritten.set(key, row);
      this.options.logger.warn(
        { err: error, op_id: opId, op },
        'outbox row kept in memory until the database answers',
      );
    }
  }

  /** Writes the rows add() could not; throws (they stay) while the database does not answer. */
  private async writeUnwritten(): Promise<void> {
    if (this.unwritten.size === 0) return;
    const rows = [...this.unwritten.values()];
    await this.store.insert(rows);
    for (const r of rows) this.unwritten.delete(`${r.opId}|${r.op}`);
    this.options.logger.info({ rows: rows.length }, 'outbox rows kept in memory are written');
  }

  /** After a failed send: the loop retries the row at its next turn. */
  async markDue(opId: string, op: OutboxOp): Promise<void> {
    const kept = this.unwritten.get(`${opId}|${op}`);
    if (kept) kept.nextAttemptMs = this.now();
    await this.store.schedule({ opId, op }, this.now(), false);
  }

  /** Deletes a finished row, together with others finished within a second. */
  async remove(opId: string, op: OutboxOp): Promise<void> {
    this.unwritten.delete(`${opId}|${op}`);
    await this.removes.submit({ opId, op });
  }

  async pending(): Promise<number> {
    return (await this.store.count()) + this.unwritten.size;
  }

  /** Which of these op ids the outbox still settles (a capture or release waits for them). */
  async holding(opIds: string[]): Promise<Set<string>> {
    const held = await this.store.holding(opIds);
    const wanted = new Set(opIds);
    for (const r of this.unwritten.values()) if (wanted.has(r.opId)) held.add(r.opId);
    return held;
  }

  /** Sends every due row once. Returns how many were finished (done or refused). */
  async drain(): Promise<number> {
    await this.writeUnwritten();
    const now = this.now();
    const cutoff = this.drained ? now : Number.MAX_SAFE_INTEGER;
    this.drained = true;
    const due = await this.store.due(cutoff, this.options.batch ?? 100);
    let finished = 0;
    for (const row of due) {
      const outcome = await this.options.send(row).catch((error: unknown) => {
        this.options.logger.warn({ err: error, op_id: row.op_id, op: row.op }, 'outbox send failed');
        return 'retry' as const;
      });
      const keepRepeating = outcome === 'done' && this.now() < row.repeat_until_ms;
      if ((outcome === 'done' && !keepRepeating) || outcome === 'refused') {
        if (outcome === 'refused')
          this.options.logger.error(
            { op_id: row.op_id, op: row.op },
            'settlement refused an outbox operation',
          );
        await this.store.delete([{ opId: row.op_id, op: row.op }]);
        finished += 1;
        continue;
      }
      const delay = outboxDelayMs(
        row.attempts,
        this.options.baseDelayMs ?? 1_000,
        this.options.maxDelayMs ?? 60_000,
      );
      await this.store.schedule({ opId: row.op_id, op: row.op }, this.now() + delay, true);
    }
    return finished;
  }

  /** Drains every `intervalMs` (one drain at a time) until stop(). */
  start(intervalMs: number): void {
    if (this.timer) return;
    const job = this.options.jobs?.job('router_settlement_outbox', { intervalMs });
    this.timer = setInterval(() => {
      if (this.running) return;
      this.running = beating(job, () => this.drain())
        .then(() => undefined)
        .catch((error: unknown) => this.options.logger.warn({ err: error }, 'outbox drain failed'))
        .finally(() => {
          this.running = null;
        });
    }, intervalMs);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.running;
    await this.writeUnwritten().catch((error: unknown) =>
      this.options.logger.error(
        { err: error, op_ids: [...this.unwritten.values()].slice(0, 20).map((r) => r.opId) },
        'outbox rows lost at stop: the database did not answer (their reservations expire)',
      ),
    );
    await this.store.close();
  }
}
