// API keys: created by the operator, shown once, stored as sha256. Each key has limits on
// requests/min, tokens/min and parallel requests, enforced in memory per router replica.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import type { Db } from '@fed-ai/kit';
import { z } from 'zod';

export const apiKeyCreateSchema = z.object({
  name: z.string().min(1).max(64),
  requests_per_min: z.number().int().min(1).max(1_000_000).default(600),
  tokens_per_min: z.number().int().min(1).max(100_000_000).default(1_000_000),
  max_parallel: z.number().int().min(1).max(10_000).default(16),
});
export type ApiKeyCreate = z.input<typeof apiKeyCreateSchema>;

export interface ApiKeyRecord {
  id: string;
  name: string;
  requests_per_min: number;
  tokens_per_min: number;
  max_parallel: number;
  revoked: boolean;
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

  constructor(private readonly db: Db) {}

  async create(input: ApiKeyCreate): Promise<{ id: string; key: string } & ApiKeyRecord> {
    const options = apiKeyCreateSchema.parse(input);
    const key = `${KEY_PREFIX}${randomBytes(24).toString('base64url')}`;
    const id = `key_${randomUUID().slice(0, 8)}`;
    await this.db.query(
      `INSERT INTO api_keys (id, key_sha256, name, requests_per_min, tokens_per_min, max_parallel) VALUES ($1,$2,$3,$4,$5,$6)`,
      [id, hash(key), options.name, options.requests_per_min, options.tokens_per_min, options.max_parallel],
    );
    return { id, key, ...options, revoked: false };
  }

  async list(): Promise<(ApiKeyRecord & { created_at: string })[]> {
    const rows = await this.db.query<ApiKeyRecord & { created_at: string; revoked_at: string | null }>(
      'SELECT id, name, requests_per_min, tokens_per_min, max_parallel, created_at, revoked_at FROM api_keys ORDER BY created_at',
    );
    return rows.rows.map(({ revoked_at, ...r }) => ({ ...r, revoked: revoked_at !== null }));
  }

  async revoke(id: string): Promise<boolean> {
    const result = await this.db.query(
      'UPDATE api_keys SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL',
      [id],
    );
    this.cache.clear(); // this replica forgets at once; others within CACHE_TTL_MS
    return result.rowCount > 0;
  }

  /** The key's record, or null for unknown and revoked keys. */
  async authenticate(key: string | undefined, nowMs = Date.now()): Promise<ApiKeyRecord | null> {
    if (!key?.startsWith(KEY_PREFIX) || key.length > 200) return null;
    const digest = hash(key);
    const cached = this.cache.get(digest);
    if (cached && nowMs - cached.atMs < CACHE_TTL_MS) return cached.record;
    const rows = await this.db.query<ApiKeyRecord & { revoked_at: string | null }>(
      'SELECT id, name, requests_per_min, tokens_per_min, max_parallel, revoked_at FROM api_keys WHERE key_sha256 = $1',
      [digest],
    );
    const row = rows.rows[0];
    const record = row && row.revoked_at === null ? { ...row, revoked: false } : null;
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
