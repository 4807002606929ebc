// The router's reservations and spending leases at settlement, written down so a router that dies
// does not leave them locking its payers' balances until settlement's timeout. A lease
// (spending-leases.ts) is recorded before it is opened (off any request's path) and closed instead
// of released by the sweep; a reservation made on the spot for one request is recorded while its reserve
// is on its way to settlement (concurrent records share one INSERT), so it adds no wait. Each is
// forgotten once its fate is durable: released, or its capture in the outbox. Every replica beats
// in `router_replicas`; the slots of a replica that stopped beating (with PGlite: any other, since
// only one process can own the data directory) are released by whoever sweeps, except those whose
// capture or release is in the outbox (that row settles them). A release is idempotent at
// settlement and does nothing to a reservation already captured, so a row forgotten late is
// harmless. A reserve that lands at settlement just before a crash, while its record was still
// on its way, is left to the timeout.
import { randomUUID } from 'node:crypto';
import type { Db, Migration } from '@fed-ai/kit';
import { beating, GroupCommit, type JobHeartbeat, type JobHeartbeats, migrate } from '@fed-ai/kit';

const HELD_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'held_reservations_and_replica_beats',
    sql: `CREATE TABLE IF NOT EXISTS held_reservations (
      op_id TEXT PRIMARY KEY,
      replica_id TEXT NOT NULL,
      held_at_ms BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS held_reservations_replica ON held_reservations (replica_id);
    CREATE TABLE IF NOT EXISTS router_replicas (
      replica_id TEXT PRIMARY KEY,
      beat_at_ms BIGINT NOT NULL
    );`,
  },
];

export async function migrateHeld(db: Db): Promise<void> {
  await migrate(db, 'router-held', HELD_MIGRATIONS);
}

export interface HeldReservationsOptions {
  db: Db;
  /** Releases one orphaned reservation durably (through the outbox when settlement is down). */
  release: (opId: string) => Promise<void>;
  /** Which of these op ids the outbox still settles (SettlementOutbox.holding): never released here. */
  outboxHolds: (opIds: string[]) => Promise<Set<string>>;
  /** How often this replica beats and sweeps (default 5 s). */
  beatMs?: number;
  /** A replica whose last beat is older than this is dead (default 6 beats). */
  deadAfterMs?: number;
  now?: () => number;
  onSwept?: (released: number) => void;
  onError?: (error: unknown) => void;
  /** The beat-and-sweep loop's heartbeat (job `router_held_reservations`). */
  jobs?: JobHeartbeats;
}

/** Forgotten ids wait for one DELETE; at most this many before it runs at once. */
const MAX_FORGOTTEN = 4_096;
/** Rows one sweep looks at: a long-dead replica's backlog is released over several sweeps. */
const SWEEP_LIMIT = 1_000;

export class HeldReservations {
  readonly replicaId = randomUUID();
  private readonly forgotten = new Set<string>();
  private readonly spotRecords = new GroupCommit<string, void>(async (ids) => {
    await this.record(ids);
    return ids.map(() => ({ ok: true as const, value: undefined }));
  });
  private readonly beatMs: number;
  private readonly deadAfterMs: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private job: JobHeartbeat | undefined;
  private sweeping: Promise<number> | null = null;

  constructor(private readonly options: HeldReservationsOptions) {
    this.beatMs = options.beatMs ?? 5_000;
    this.deadAfterMs = options.deadAfterMs ?? 6 * this.beatMs;
    this.now = options.now ?? Date.now;
  }

  /** Beats once, sweeps once (a previous process's slots go at start), then on every beat. */
  async start(): Promise<void> {
    await this.beat();
    await this.sweep();
    this.job = this.options.jobs?.job('router_held_reservations', { intervalMs: this.beatMs });
    this.timer = setInterval(() => void this.tick(), this.beatMs);
    this.timer.unref();
  }

  private async tick(): Promise<void> {
    try {
      await beating(this.job, async () => {
        await this.beat();
        await this.flush();
        await this.sweep();
      });
    } catch (error) {
      this.options.onError?.(error);
    }
  }

  /** Records slot ids before they are reserved; throws when the database cannot (then hold none). */
  async record(opIds: readonly string[]): Promise<void> {
    if (opIds.length === 0) return;
    await this.options.db.query(
      `INSERT INTO held_reservations (op_id, replica_id, held_at_ms)
       SELECT id, $2, $3 FROM unnest($1::text[]) AS id ON CONFLICT (op_id) DO NOTHING`,
      [opIds, this.replicaId, this.now()],
    );
  }

  /** Records one spot reservation's id; concurrent calls share one INSERT. */
  recordOne(opId: string): Promise<void> {
    return this.spotRecords.submit(opId);
  }

  /** The slot's fate is durable (released, or its capture in the outbox): its row may go. */
  forget(opId: string): void {
    this.forgotten.add(opId);
    if (this.forgotten.size >= MAX_FORGOTTEN)
      void this.flush().catch((e: unknown) => this.options.onError?.(e));
  }

  private async flush(): Promise<void> {
    if (this.forgotten.size === 0) return;
    const ids = [...this.forgotten];
    this.forgotten.clear();
    await this.options.db.query('DELETE FROM held_reservations WHERE op_id = ANY($1::text[])', [ids]);
  }

  private async beat(): Promise<void> {
    await this.options.db.query(
      `INSERT INTO router_replicas (replica_id, beat_at_ms) VALUES ($1, $2)
       ON CONFLICT (replica_id) DO UPDATE SET beat_at_ms = EXCLUDED.beat_at_ms`,
      [this.replicaId, this.now()],
    );
  }

  /** Releases dead replicas' slots (one sweep at a time); resolves with how many it released. */
  sweep(): Promise<number> {
    this.sweeping ??= this.sweepOnce().finally(() => {
      this.sweeping = null;
    });
    return this.sweeping;
  }

  private async sweepOnce(): Promise<number> {
    const { db } = this.options;
    // PGlite: one process per data directory, so every other replica id is a previous process.
    const deadBefore = db.kind === 'pglite' ? Number.MAX_SAFE_INTEGER : this.now() - this.deadAfterMs;
    const dead = await db.query<{ replica_id: string }>(
      'SELECT replica_id FROM router_replicas WHERE replica_id <> $1 AND beat_at_ms < $2',
      [this.replicaId, deadBefore],
    );
    const deadIds = dead.rows.map((r) => r.replica_id);
    if (deadIds.length === 0) return 0;
    const rows = await db.query<{ op_id: string }>(
      'SELECT op_id FROM held_reservations WHERE replica_id = ANY($1::text[]) ORDER BY op_id LIMIT $2',
      [deadIds, SWEEP_LIMIT],
    );
    const looked = rows.rows.map((r) => r.op_id);
    const settledByOutbox = await this.options.outboxHolds(looked);
    const ids = looked.filter((id) => !settledByOutbox.has(id));
    // Released first, then forgotten: a sweep cut short is repeated by the next one. A release
    // settlement refuses is reported, not retried (its reservation expires with the timeout).
    const results = await Promise.allSettled(ids.map((id) => this.options.release(id)));
    for (const r of results) if (r.status === 'rejected') this.options.onError?.(r.reason);
    // Forgotten too: those the outbox settles (its row releases or captures them).
    if (looked.length > 0)
      await db.query('DELETE FROM held_reservations WHERE op_id = ANY($1::text[])', [looked]);
    if (looked.length < SWEEP_LIMIT) {
      // Rows left are settled by the outbox; the replica is gone for good.
      await db.query('DELETE FROM held_reservations WHERE replica_id = ANY($1::text[])', [deadIds]);
      await db.query('DELETE FROM router_replicas WHERE replica_id = ANY($1::text[])', [deadIds]);
    }
    const released = results.filter((r) => r.status === 'fulfilled').length;
    if (released > 0) this.options.onSwept?.(released);
    return released;
  }

  /** Stops beating and writes what was forgotten; rows left (a release that failed) go to a later sweep. */
  async close(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.sweeping;
    await this.flush();
  }
}
