// Router persistence: registered nodes, API keys, and the shared replay store.
import { type Db, type Migration, migrate, REPLAY_MIGRATIONS } from '@fed-ai/kit';

const ROUTER_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'nodes_and_api_keys',
    sql: `CREATE TABLE IF NOT EXISTS nodes (
      id TEXT PRIMARY KEY,
      endpoint TEXT NOT NULL,
      registration JSONB NOT NULL,
      registered_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      banned BOOLEAN NOT NULL DEFAULT false
    );
    CREATE UNIQUE INDEX IF NOT EXISTS nodes_endpoint ON nodes (endpoint);
    CREATE TABLE IF NOT EXISTS api_keys (
      id TEXT PRIMARY KEY,
      key_sha256 TEXT NOT NULL UNIQUE,
      name TEXT NOT NULL,
      requests_per_min INTEGER NOT NULL,
      tokens_per_min INTEGER NOT NULL,
      max_parallel INTEGER NOT NULL,
      created_at TIMESTAMPTZ NOT NULL DEFAULT now(),
      revoked_at TIMESTAMPTZ
    );`,
  },
  {
    version: 2,
    name: 'api_key_spend_budgets',
    sql: `ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS budget_msat_per_day BIGINT CHECK (budget_msat_per_day > 0);
    ALTER TABLE api_keys ADD COLUMN IF NOT EXISTS budget_msat_per_month BIGINT CHECK (budget_msat_per_month > 0);
    CREATE TABLE IF NOT EXISTS api_key_spend (
      key_id TEXT NOT NULL,
      period TEXT NOT NULL,
      spent_msat BIGINT NOT NULL DEFAULT 0 CHECK (spent_msat >= 0),
      held_msat BIGINT NOT NULL DEFAULT 0 CHECK (held_msat >= 0),
      PRIMARY KEY (key_id, period)
    );`,
  },
  {
    version: 3,
    name: 'key_limit_windows_and_slots',
    // One row per payer id (its lock row and current minute), parallel slots as expiring leases.
    sql: `CREATE TABLE IF NOT EXISTS key_windows (
      key_id TEXT PRIMARY KEY,
      window_start_ms BIGINT NOT NULL,
      requests INTEGER NOT NULL DEFAULT 0 CHECK (requests >= 0),
      tokens BIGINT NOT NULL DEFAULT 0 CHECK (tokens >= 0)
    );
    CREATE INDEX IF NOT EXISTS key_windows_start ON key_windows (window_start_ms);
    CREATE TABLE IF NOT EXISTS key_slots (
      slot_id TEXT PRIMARY KEY,
      key_id TEXT NOT NULL,
      replica_id TEXT NOT NULL,
      expires_at_ms BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS key_slots_key ON key_slots (key_id, expires_at_ms);
    CREATE INDEX IF NOT EXISTS key_slots_expiry ON key_slots (expires_at_ms);`,
  },
];

export async function migrateRouter(db: Db): Promise<void> {
  await migrate(db, 'router', ROUTER_MIGRATIONS);
  await migrate(db, 'router-replay', REPLAY_MIGRATIONS);
}
