// The wallet fleet's tables. Money itself lives only in the ledger (packages/ledger, same database);
// these rows hold who owns what, the policy in force, NWC connections, payment and invoice state,
// approvals and the NWC request dedupe. Switch rows (fleet, group) exist so that a payment can lock
// them FOR SHARE while a kill locks them FOR UPDATE: a kill and a payment start never interleave.
import { type Db, type Migration, migrate } from '@fed-ai/kit';

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'wallet_fleet',
    sql: `CREATE TABLE IF NOT EXISTS wf_switches (
      scope TEXT PRIMARY KEY,
      status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'killed')),
      updated_at_s BIGINT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS wf_wallets (
      id TEXT PRIMARY KEY,
      owner TEXT NOT NULL,
      group_id TEXT,
      name TEXT NOT NULL,
      policy JSONB NOT NULL,
      policy_hash TEXT NOT NULL,
      policy_version INTEGER NOT NULL DEFAULT 1,
      status TEXT NOT NULL DEFAULT 'active' CHECK (status IN ('active', 'paused', 'killed')),
      created_at_s BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS wf_wallets_owner ON wf_wallets (owner);
    CREATE TABLE IF NOT EXISTS wf_connections (
      client_pubkey TEXT PRIMARY KEY,
      wallet_id TEXT NOT NULL REFERENCES wf_wallets (id),
      name TEXT NOT NULL,
      created_at_s BIGINT NOT NULL,
      expires_at_s BIGINT,
      revoked_at_s BIGINT
    );
    CREATE TABLE IF NOT EXISTS wf_payments (
      payment_hash TEXT PRIMARY KEY,
      wallet_id TEXT NOT NULL REFERENCES wf_wallets (id),
      bolt11 TEXT NOT NULL,
      amount_msat BIGINT NOT NULL CHECK (amount_msat > 0),
      max_fee_msat BIGINT NOT NULL DEFAULT 0,
      fee_msat BIGINT,
      payee TEXT,
      description TEXT,
      state TEXT NOT NULL CHECK (state IN ('sending', 'succeeded', 'failed')),
      budget_ids JSONB NOT NULL,
      preimage TEXT,
      failure TEXT,
      created_at_s BIGINT NOT NULL,
      settled_at_s BIGINT
    );
    CREATE INDEX IF NOT EXISTS wf_payments_wallet ON wf_payments (wallet_id, created_at_s);
    CREATE TABLE IF NOT EXISTS wf_invoices (
      payment_hash TEXT PRIMARY KEY,
      wallet_id TEXT,
      owner TEXT NOT NULL,
      bolt11 TEXT NOT NULL,
      amount_msat BIGINT NOT NULL CHECK (amount_msat > 0),
      description TEXT NOT NULL,
      created_at_s BIGINT NOT NULL,
      expires_at_s BIGINT NOT NULL,
      settled_at_s BIGINT,
      preimage TEXT
    );
    CREATE INDEX IF NOT EXISTS wf_invoices_open ON wf_invoices (expires_at_s) WHERE settled_at_s IS NULL;
    CREATE TABLE IF NOT EXISTS wf_approvals (
      id TEXT PRIMARY KEY,
      wallet_id TEXT NOT NULL REFERENCES wf_wallets (id),
      payment_hash TEXT NOT NULL,
      amount_msat BIGINT NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'used', 'cancelled')),
      created_at_s BIGINT NOT NULL,
      expires_at_s BIGINT NOT NULL
    );
    CREATE INDEX IF NOT EXISTS wf_approvals_lookup ON wf_approvals (wallet_id, payment_hash);
    CREATE TABLE IF NOT EXISTS wf_nwc_requests (
      event_id TEXT PRIMARY KEY,
      client_pubkey TEXT NOT NULL,
      method TEXT,
      received_at_s BIGINT NOT NULL,
      response TEXT
    );`,
  },
  {
    version: 2,
    name: 'funding_requests_and_topups',
    sql: `CREATE TABLE IF NOT EXISTS wf_funding_requests (
      id TEXT PRIMARY KEY,
      wallet_id TEXT NOT NULL REFERENCES wf_wallets (id),
      client_pubkey TEXT NOT NULL,
      amount_msat BIGINT NOT NULL CHECK (amount_msat > 0),
      reason TEXT NOT NULL,
      state TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied')),
      created_at_s BIGINT NOT NULL,
      decided_at_s BIGINT
    );
    CREATE INDEX IF NOT EXISTS wf_funding_requests_wallet ON wf_funding_requests (wallet_id, state);
    ALTER TABLE wf_wallets ADD COLUMN IF NOT EXISTS topup_low_msat BIGINT;
    ALTER TABLE wf_wallets ADD COLUMN IF NOT EXISTS topup_high_msat BIGINT;
    ALTER TABLE wf_wallets ADD COLUMN IF NOT EXISTS topup_budget_msat_per_day BIGINT;
    CREATE TABLE IF NOT EXISTS wf_topups (
      wallet_id TEXT NOT NULL REFERENCES wf_wallets (id),
      day TEXT NOT NULL,
      seq INTEGER NOT NULL,
      amount_msat BIGINT NOT NULL CHECK (amount_msat > 0),
      created_at_s BIGINT NOT NULL,
      PRIMARY KEY (wallet_id, day, seq)
    );`,
  },
  {
    version: 3,
    name: 'nwc_request_recovery',
    // The request event itself, so a request a crashed process had taken can be run again (once
    // its claim is stale); attempts bound how often.
    sql: `ALTER TABLE wf_nwc_requests ADD COLUMN IF NOT EXISTS event TEXT;
    ALTER TABLE wf_nwc_requests ADD COLUMN IF NOT EXISTS attempts INTEGER NOT NULL DEFAULT 1;
    CREATE INDEX IF NOT EXISTS wf_nwc_requests_unanswered ON wf_nwc_requests (received_at_s) WHERE response IS NULL;`,
  },
];

export async function migrateWalletFleet(db: Db): Promise<void> {
  await migrate(db, 'wallet-fleet', MIGRATIONS);
}
