// API keys: created by the operator, shown once, stored as sha256. Each key has limits on
// requests/min, tokens/min and parallel requests, enforced in memory per router replica, and
// optional spend budgets (msat per UTC day / month), enforced in the database (spend-budget.ts).
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Db } from '@fed-ai/kit';
import { FedAiError } from '@fed-ai/protocol';
import { z } from 'zod';
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
const CACHE_TTL_MS = 30_000;
const MAX_CACHED = 10_000;

const hash = (key: string) => createHash('sha256').update(key).digest('hex');

/** One key's use in its current one-minute window. Parallel requests are counted apart. */
interface Usage {
  windowStartMs: number;
  requests: number;
  tokens: number;
}

export type LimitResult =
  | { ok: true; release: (tokens: number) => void }
  | { ok: false; retryAfterS: number; detail: string };

export class ApiKeys {
  private readonly cache = new Map<string, { record: ApiKeyRecord | null; atMs: number }>();
  private readonly usage = new Map<string, Usage>();
  /** Requests in flight per key: not tied to a window, so a window change cannot leak a slot. */
  private readonly inFlight = new Map<string, number>();

  private readonly budgets: SpendBudgets;

  constructor(private readonly db: Db) {
    this.budgets = new SpendBudgets(db);
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
    this.cache.clear(); // this replica forgets at once; others within CACHE_TTL_MS
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
    this.cache.clear(); // this replica at once; others within CACHE_TTL_MS
    const row = rows.rows[0];
    return row ? { ...withBudgets(row), revoked: false } : null;
  }

  /** The key's record, or null for unknown and revoked keys. */
  async authenticate(key: string | undefined, nowMs = Date.now()): Promise<ApiKeyRecord | null> {
    if (!key?.startsWith(KEY_PREFIX) || key.length > 200) return null;
    const digest = hash(key);
    const cached = this.cache.get(digest);
    if (cached && nowMs - cached.atMs < CACHE_TTL_MS) return cached.record;
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

  /** Admits one request against the key's limits; `release` reports its tokens when done. */
  admit(record: ApiKeyRecord, estimatedTokens: number, nowMs = Date.now()): LimitResult {
    const u = this.window(record.id, nowMs);
    const retryAfterS = Math.max(1, Math.ceil((u.windowStartMs + 60_000 - nowMs) / 1000));
    const parallel = this.inFlight.get(record.id) ?? 0;
    if (parallel >= record.max_parallel)
      return { ok: false, retryAfterS: 1, detail: `at most ${record.max_parallel} parallel requests` };
    if (u.requests >= record.requests_per_min)
      return { ok: false, retryAfterS, detail: `at most ${record.requests_per_min} requests per minute` };
    if (u.tokens + estimatedTokens > record.tokens_per_min && u.tokens > 0) {
      return { ok: false, retryAfterS, detail: `at most ${record.tokens_per_min} tokens per minute` };
    }
    u.requests += 1;
    this.inFlight.set(record.id, parallel + 1);
    let released = false;
    return {
      ok: true,
      release: (tokens: number) => {
        if (released) return;
        released = true;
        const left = (this.inFlight.get(record.id) ?? 1) - 1;
        if (left > 0) this.inFlight.set(record.id, left);
        else this.inFlight.delete(record.id);
        // Tokens count in the key's current window (the one where the request ends).
        const current = this.usage.get(record.id);
        if (current) current.tokens += tokens;
      },
    };
  }

  /**
   * Requests per minute only (routes without token use, e.g. tab calls). Also counts payers that
   * are not API keys (a Nostr pubkey), under an id of their own.
   */
  admitRequest(
    record: Pick<ApiKeyRecord, 'id' | 'requests_per_min'>,
    nowMs = Date.now(),
  ): { ok: true } | { ok: false; retryAfterS: number; detail: string } {
    const u = this.window(record.id, nowMs);
    if (u.requests >= record.requests_per_min)
      return {
        ok: false,
        retryAfterS: Math.max(1, Math.ceil((u.windowStartMs + 60_000 - nowMs) / 1000)),
        detail: `at most ${record.requests_per_min} requests per minute`,
      };
    u.requests += 1;
    return { ok: true };
  }

  /** The key's current window, started anew once a minute has passed. Bounded map. */
  private window(id: string, nowMs: number): Usage {
    let u = this.usage.get(id);
    if (!u || nowMs - u.windowStartMs >= 60_000) {
      if (!u && this.usage.size >= MAX_CACHED) this.usage.clear();
      u = { windowStartMs: nowMs, requests: 0, tokens: 0 };
      this.usage.set(id, u);
    }
    return u;
  }
}
