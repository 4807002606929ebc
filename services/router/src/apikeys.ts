// API keys: created by the operator, shown once, stored as sha256. Each key has limits on
// requests/min, tokens/min and parallel requests and optional spend budgets (msat per UTC day /
// month), all enforced in the database so replicas on one PostgreSQL share them (key-limits.ts,
// spend-budget.ts). Records are cached per replica for cacheTtlMs: the bound within which a
// revocation or a changed limit reaches every replica.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Db, JobHeartbeats } from '@fed-ai/kit';
import { FedAiError } from '@fed-ai/protocol';
import { z } from 'zod';
import { type KeyLimiter, type LimitResult, SharedKeyLimiter } from './key-limits';
import { LocalKeyLimiter } from './key-limits-local';
import { SpendBudgets, type SpendHold } from './spend-budget';

const budgetMsat = z.number().int().min(1).max(Number.MAX_SAFE_INTEGER);

export const apiKeyCreateSchema = z.object({
  name: z.string().min(1).max(64),
  requests_per_min: z.number().int().min(1).max(1_000_000).default(600),
  tokens_per_min: z.number().int().min(1).max(100_000_000).default(1_000_000),
  max_parallel: z.number().int().min(1).max(10_000).default(16),
  budget_msat_per_day: budgetMsat.nullable().default(null),
  budget_msat_per_month: budgetMsat.nullable().default(null),
});
/** A change of a key's spend budgets: a number sets it, null removes it, absent keeps it. */
export const apiKeyBudgetSchema = z
  .object({ budget_msat_per_day: budgetMsat.nullable(), budget_msat_per_month: budgetMsat.nullable() })
  .partial()
  .strict();
export type ApiKeyCreate = z.input<typeof apiKeyCreateSchema>;

export interface ApiKeyRecord {
  id: string;
  name: string;
  requests_per_min: number;
  tokens_per_min: number;
  max_parallel: number;
  budget_msat_per_day: number | null;
  budget_msat_per_month: number | null;
  revoked: boolean;
}

const COLUMNS =
  'id, name, requests_per_min, tokens_per_min, max_parallel, budget_msat_per_day, budget_msat_per_month';

/** BIGINT columns arrive as strings from pg: money is a safe integer here. */
function withBudgets<T extends { budget_msat_per_day: unknown; budget_msat_per_month: unknown }>(
  row: T,
): T & { budget_msat_per_day: number | null; budget_msat_per_month: number | null } {
  const toMsat = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    ...row,
    budget_msat_per_day: toMsat(row.budget_msat_per_day),
    budget_msat_per_month: toMsat(row.budget_msat_per_month),
  };
}

const KEY_PREFIX = 'fedai_sk_';
const MAX_CACHED = 10_000;

const hash = (key: string) => createHash('sha256').update(key).digest('hex');

export interface ApiKeysOptions {
  /** How long a replica trusts a cached key record (0: read through on every request). */
  cacheTtlMs?: number;
  /** Lifetime of a parallel slot without renewal (key-limits.ts). */
  slotLeaseMs?: number;
  onError?: (error: unknown) => void;
  /** Heartbeats of the limiter's background writes (job-heartbeat.ts). */
  jobs?: JobHeartbeats;
}

export class ApiKeys {
  private readonly cache = new Map<string, { record: ApiKeyRecord | null; atMs: number }>();
  private readonly budgets: SpendBudgets;
  private readonly limiter: KeyLimiter;
  private readonly cacheTtlMs: number;

  constructor(
    private readonly db: Db,
    options: ApiKeysOptions = {},
  ) {
    this.budgets = new SpendBudgets(db);
    this.cacheTtlMs = options.cacheTtlMs ?? 10_000;
    const onError = {
      ...(options.onError ? { onError: options.onError } : {}),
      ...(options.jobs ? { jobs: options.jobs } : {}),
    };
    // Embedded PGlite belongs to this process alone: its limits can live in memory. On PostgreSQL
    // other replicas may share the keys, so the limits live in the database.
    this.limiter =
      db.kind === 'pglite'
        ? new LocalKeyLimiter(db, onError)
        : new SharedKeyLimiter(db, { slotLeaseMs: options.slotLeaseMs ?? 30_000, ...onError });
    this.limiter.start();
  }

  /** Stops renewing slots and sweeping (slots still held expire within their lease). */
  close(): void {
    this.limiter.stop();
  }

  /** The key's spend-budget hold for a paid request, or undefined when it has no budget. */
  spendHolder(record: ApiKeyRecord): ((amountMsat: number) => Promise<SpendHold>) | undefined {
    if (record.budget_msat_per_day === null && record.budget_msat_per_month === null) return undefined;
    return (amountMsat) => this.budgets.hold(record.id, record, amountMsat);
  }

  /** The key's budgets with what is spent and held in the current periods. */
  spendUsage(record: ApiKeyRecord) {
    return this.budgets.usage(record.id, record);
  }

  async create(input: ApiKeyCreate): Promise<{ id: string; key: string } & ApiKeyRecord> {
    const options = apiKeyCreateSchema.parse(input);
    const key = `${KEY_PREFIX}${randomBytes(24).toString('base64url')}`;
    const id = `key_${randomUUID().slice(0, 8)}`;
    await this.db.query(
      `INSERT INTO api_keys (id, key_sha256, name, requests_per_min, tokens_per_min, max_parallel, budget_msat_per_day, budget_msat_per_month) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
      [
        id,
        hash(key),
        options.name,
        options.requests_per_min,
        options.tokens_per_min,
        options.max_parallel,
        options.budget_msat_per_day,
        options.budget_msat_per_month,
      ],
    );
    return { id, key, ...options, revoked: false };
  }

  async list(): Promise<(ApiKeyRecord & { created_at: string })[]> {
    const rows = await this.db.query<ApiKeyRecord & { created_at: string; revoked_at: string | null }>(
      `SELECT ${COLUMNS}, created_at, revoked_at FROM api_keys ORDER BY created_at`,
    );
    return rows.rows.map(({ revoked_at, ...r }) => ({ ...withBudgets(r), revoked: revoked_at !== null }));
  }

  async revoke(id: string): Promise<boolean> {
    const result = await this.db.query(
      'UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL',
      [id],
    );
    this.cache.clear(); // this replica forgets at once; others within cacheTtlMs
    return result.rowCount > 0;
  }

  /** Sets or removes a key's spend budgets; false when there is no active key of that id. */
  async setBudgets(id: string, input: unknown): Promise<ApiKeyRecord | null> {
    const change = apiKeyBudgetSchema.parse(input);
    const sets: string[] = [];
    const values: unknown[] = [id];
    for (const column of ['budget_msat_per_day', 'budget_msat_per_month'] as const) {
      if (!(column in change)) continue;
      values.push(change[column]);
      sets.push(`${column} = $${values.length}`);
    }
    if (sets.length === 0)
      throw new FedAiError('INVALID_REQUEST', 'Name budget_msat_per_day or budget_msat_per_month.');
    const rows = await this.db.query<ApiKeyRecord & { revoked_at: string | null }>(
      `UPDATE api_keys SET ${sets.join(', ')} WHERE id = $1 AND revoked_at IS NULL RETURNING ${COLUMNS}`,
      values,
    );
    this.cache.clear(); // this replica at once; others within cacheTtlMs
    const row = rows.rows[0];
    return row ? { ...withBudgets(row), revoked: false } : null;
  }

  /** The key's record, or null for unknown and revoked keys. */
  async authenticate(key: string | undefined, nowMs = Date.now()): Promise<ApiKeyRecord | null> {
    if (!key?.startsWith(KEY_PREFIX) || key.length > 200) return null;
    const digest = hash(key);
    const cached = this.cache.get(digest);
    if (cached && nowMs - cached.atMs < this.cacheTtlMs) return cached.record;
    const rows = await this.db.query<ApiKeyRecord & { revoked_at: string | null }>(
      `SELECT ${COLUMNS}, revoked_at FROM api_keys WHERE key_sha256 = $1`,
      [digest],
    );
    const row = rows.rows[0];
    const record = row && row.revoked_at === null ? { ...withBudgets(row), revoked: false } : null;
    if (this.cache.size >= MAX_CACHED) this.cache.clear();
    this.cache.set(digest, { record, atMs: nowMs });
    return record;
  }

  /** Admits one request against the key's limits, cluster-wide; `release` reports its tokens when done. */
  admit(record: ApiKeyRecord, estimatedTokens: number): Promise<LimitResult> {
    return this.limiter.admit(record, estimatedTokens);
  }

  /**
   * Requests per minute only (routes without token use, e.g. tab calls). Also counts payers that
   * are not API keys (a Nostr pubkey), under an id of their own.
   */
  admitRequest(
    record: Pick<ApiKeyRecord, 'id' | 'requests_per_min'>,
  ): Promise<{ ok: true } | { ok: false; retryAfterS: number; detail: string }> {
    return this.limiter.admitRequest(record);
  }
}
