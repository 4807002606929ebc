// The persistent replay store: shared by every replica through the database, bounded by time
// (entries are deleted once they can no longer pass the created_at window).
import type { ReplayStore } from '@fed-ai/protocol';
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
