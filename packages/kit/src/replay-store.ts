// Replay stores. `DbReplayStore`: persistent, shared by every replica through the database, bounded
// by time (entries are deleted once they can no longer pass the created_at window).
// `LocalReplayStore`: for a database one process owns alone (embedded PGlite) — the request path
// records ids in memory, with a restart epoch instead of a write per message (see below).
import { MemoryReplayStore, type ReplayStore } from '@fed-ai/protocol';
import { Gauge, type Registry } from 'prom-client';
import type { Db, Migration } from './db';

export const REPLAY_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'replay_ids',
    sql: `CREATE TABLE IF NOT EXISTS replay_ids (
      id TEXT PRIMARY KEY,
      expires_at_s BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS replay_ids_expiry ON replay_ids (expires_at_s);`,
  },
  {
    version: 2,
    name: 'replay_clock',
    // The last wall-clock second a LocalReplayStore was known to be running (its restart epoch).
    sql: `CREATE TABLE IF NOT EXISTS replay_clock (
      id INTEGER PRIMARY KEY CHECK (id = 1),
      high_water_s BIGINT NOT NULL
    );`,
  },
];

export class DbReplayStore implements ReplayStore {
  private lastSweepS = 0;

  constructor(
    private readonly db: Db,
    private readonly sweepEveryS = 30,
    private readonly nowS: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  async checkAndRecord(id: string, expiresAtS: number): Promise<boolean> {
    const now = this.nowS();
    if (now - this.lastSweepS >= this.sweepEveryS) {
      this.lastSweepS = now;
      await this.db.query('DELETE FROM replay_ids WHERE expires_at_s <= $1', [now]);
    }
    // Atomic: the primary key decides between concurrent callers. An expired row may be reused.
    const result = await this.db.query(
      `INSERT INTO replay_ids (id, expires_at_s) VALUES ($1, $2)
       ON CONFLICT (id) DO UPDATE SET expires_at_s = EXCLUDED.expires_at_s WHERE replay_ids.expires_at_s <= $3
       RETURNING id`,
      [id, expiresAtS, now],
    );
    return result.rows.length === 1;
  }
}

export interface LocalReplayStoreOptions {
  /** Most ids held in memory; past that every id goes through the database. */
  maxEntries?: number;
  nowS?: () => number;
  /** How often the running clock is written (the restart epoch's guard against a clock stepped back). */
  highWaterEveryMs?: number;
  onError?: (error: unknown) => void;
}

const HIGH_WATER_EVERY_MS = 1_000;
const SWEEP_EVERY_S = 10;

/**
 * Replay protection without a database write per message, for a process that owns its database.
 *
 * - A message created at or before this second (`createdAtS <= now`) is recorded in memory only.
 * - What memory cannot vouch for goes through the database (DbReplayStore, persistent): ids with no
 *   created_at (e.g. a paid invoice's hash), messages dated in the future, and everything once
 *   memory is full.
 * - After a restart, the previous process's memory is gone, but every message it recorded only
 *   in memory had createdAtS <= its clock <= this start. `open()` therefore sets the epoch to the
 *   start second (or the last recorded clock + 1, if the clock was stepped back) and waits for the
 *   next second: messages created at or before the epoch are refused, later ones cannot have been
 *   seen. The database's unexpired ids are loaded into memory, so a message first seen in the
 *   future is still refused once its time comes. A database with no clock row has had no
 *   previous process: no epoch, no wait.
 */
export class LocalReplayStore implements ReplayStore {
  private readonly memory: MemoryReplayStore;
  private readonly durable: DbReplayStore;
  private readonly nowS: () => number;
  private readonly maxEntries: number;
  private epochS = 0;
  /** Set when the database held more ids than memory can take: every check is durable. */
  private durableOnly = false;
  private opened = false;
  private timer: NodeJS.Timeout | null = null;
  private lastSweepS = 0;

  constructor(
    private readonly db: Db,
    private readonly options: LocalReplayStoreOptions = {},
  ) {
    this.nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
    this.maxEntries = options.maxEntries ?? 200_000;
    this.memory = new MemoryReplayStore(this.maxEntries, this.nowS);
    this.durable = new DbReplayStore(db, 30, this.nowS);
  }

  /** Sets the restart epoch and loads the stored ids; resolves once the epoch has passed. */
  async open(): Promise<void> {
    const startS = this.nowS();
    const clock = await this.db.query<{ high_water_s: number }>(
      'SELECT high_water_s FROM replay_clock WHERE id = 1',
    );
    const highWaterS = clock.rows[0] ? Number(clock.rows[0].high_water_s) : null;
    if (highWaterS !== null) this.epochS = Math.max(startS, highWaterS + 1);
    // Written before anything is accepted: a crash from here on leaves a clock row behind.
    await this.writeClock(Math.max(startS, this.epochS));
    const limit = Math.floor(this.maxEntries / 2);
    const stored = await this.db.query<{ id: string; expires_at_s: number }>(
      'SELECT id, expires_at_s FROM replay_ids WHERE expires_at_s > $1 LIMIT $2',
      [startS, limit + 1],
    );
    if (stored.rows.length > limit) this.durableOnly = true;
    else for (const r of stored.rows) await this.memory.checkAndRecord(r.id, Number(r.expires_at_s));
    while (this.nowS() <= this.epochS) await new Promise((done) => setTimeout(done, 50));
    this.opened = true;
    this.timer = setInterval(() => {
      this.writeClock(this.nowS()).catch((error: unknown) => this.options.onError?.(error));
    }, this.options.highWaterEveryMs ?? HIGH_WATER_EVERY_MS);
    this.timer.unref();
  }

  /** Ids held in memory (a gauge on /metrics). */
  get entries(): number {
    return this.memory.size;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  async checkAndRecord(id: string, expiresAtS: number, createdAtS?: number): Promise<boolean> {
    if (!this.opened) throw new Error('replay store not open');
    const now = this.nowS();
    if (now - this.lastSweepS >= SWEEP_EVERY_S) {
      this.lastSweepS = now;
      this.memory.sweepExpired(now);
    }
    if (this.memory.has(id, now)) return false;
    if (createdAtS !== undefined && createdAtS <= this.epochS) return false; // may have been seen before the restart
    const inMemory =
      createdAtS !== undefined && createdAtS <= now && !this.durableOnly && !this.memory.isFull;
    if (inMemory) return this.memory.checkAndRecord(id, expiresAtS);
    if (this.memory.isFull) {
      this.durableOnly = true; // from now on memory cannot vouch for what only the database holds
      return this.durable.checkAndRecord(id, expiresAtS);
    }
    // Held in memory first (so a concurrent check of the same id sees it), then made durable.
    if (!(await this.memory.checkAndRecord(id, expiresAtS))) return false;
    try {
      return await this.durable.checkAndRecord(id, expiresAtS);
    } catch (error) {
      this.memory.forget(id);
      throw error;
    }
  }

  private async writeClock(nowS: number): Promise<void> {
    await this.db.query(
      `INSERT INTO replay_clock (id, high_water_s) VALUES (1, $1)
       ON CONFLICT (id) DO UPDATE SET high_water_s = GREATEST(replay_clock.high_water_s, EXCLUDED.high_water_s)`,
      [nowS],
    );
  }
}

/** The replay store for a service's database: local for embedded PGlite, shared on PostgreSQL. */
export async function openReplayStore(
  db: Db,
  options: LocalReplayStoreOptions = {},
): Promise<ReplayStore & { close(): void }> {
  if (db.kind === 'postgres') return Object.assign(new DbReplayStore(db), { close() {} });
  const store = new LocalReplayStore(db, options);
  await store.open();
  return store;
}

/** `fedai_replay_ids_in_memory`: what a LocalReplayStore holds (0 for the database store). */
export function addReplayStoreMetrics(registry: Registry, store: ReplayStore): void {
  new Gauge({
    name: 'fedai_replay_ids_in_memory',
    help: 'Signed-message ids the replay store holds in memory',
    registers: [registry],
    collect() {
      this.set(store instanceof LocalReplayStore ? store.entries : 0);
    },
  });
}
