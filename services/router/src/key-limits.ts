// Per-key request limits (requests and tokens per minute, parallel requests), enforced cluster-wide
// in the router's database so that N replicas on one PostgreSQL grant what one would.
//
// - Windows are fixed UTC minutes. Each payer id (API key, L402 payer, Nostr payer) has ONE row in
//   `key_windows`; an admission locks it (an upsert), decides with the pure `decideAdmission` and
//   writes the new counts in the same transaction. Requests per minute: exact (at most the limit is
//   admitted per window). Tokens: counted when a request ends, so a window can go over by the
//   tokens of requests still running when the limit is reached (at most max_parallel of them).
// - Parallel slots are rows in `key_slots` with an expiry, counted under the same row lock. The
//   replica that holds a slot renews it every leaseMs / 3; a crashed replica's slots come back
//   within leaseMs. A slot is freed with one write after its request ends.
// - The window row is monotone (GREATEST): replica clocks that differ by ε shift a window's edges
//   by at most ε but never open a second window for the same minute.
import { randomUUID } from 'node:crypto';
import { beating, type Db, type JobHeartbeats, type Queryable } from '@fed-ai/kit';

export const WINDOW_MS = 60_000;

/** The limits of one payer, in ApiKeyRecord's shape. */
export interface KeyLimits {
  id: string;
  requests_per_min: number;
  tokens_per_min: number;
  max_parallel: number;
}

/** One payer's use of its current window. */
export interface WindowUse {
  windowStartMs: number;
  requests: number;
  tokens: number;
}

export type Decision = { ok: true; use: WindowUse } | { ok: false; retryAfterS: number; detail: string };

export function windowStartOf(nowMs: number): number {
  return Math.floor(nowMs / WINDOW_MS) * WINDOW_MS;
}

/** The stored window if it is current (or ahead, from a replica whose clock runs fast), else a new one. */
export function currentWindow(stored: WindowUse | null, nowMs: number): WindowUse {
  const start = windowStartOf(nowMs);
  if (stored && stored.windowStartMs >= start) return stored;
  return { windowStartMs: start, requests: 0, tokens: 0 };
}

/**
 * Whether one more request fits: parallel slots first (when `parallelInUse` is given), then
 * requests, then tokens (a request is refused on tokens only once the window counted some, so one
 * large request can always run). Pure.
 */
export function decideAdmission(
  stored: WindowUse | null,
  limits: Pick<KeyLimits, 'requests_per_min' | 'tokens_per_min' | 'max_parallel'>,
  request: { estimatedTokens: number; parallelInUse: number | null },
  nowMs: number,
): Decision {
  const use = currentWindow(stored, nowMs);
  const retryAfterS = Math.max(1, Math.ceil((use.windowStartMs + WINDOW_MS - nowMs) / 1000));
  if (request.parallelInUse !== null && request.parallelInUse >= limits.max_parallel)
    return { ok: false, retryAfterS: 1, detail: `at most ${limits.max_parallel} parallel requests` };
  if (use.requests >= limits.requests_per_min)
    return { ok: false, retryAfterS, detail: `at most ${limits.requests_per_min} requests per minute` };
  if (use.tokens > 0 && use.tokens + request.estimatedTokens > limits.tokens_per_min)
    return { ok: false, retryAfterS, detail: `at most ${limits.tokens_per_min} tokens per minute` };
  return { ok: true, use: { ...use, requests: use.requests + 1 } };
}

export type LimitResult =
  | { ok: true; release: (tokens: number) => void }
  | { ok: false; retryAfterS: number; detail: string };

/** Admits requests against a payer's limits: shared in PostgreSQL, or local to one process. */
export interface KeyLimiter {
  start(): void;
  stop(): void;
  /** Admits one request with a parallel slot; `release` frees the slot and counts its tokens. */
  admit(limits: KeyLimits, estimatedTokens: number): Promise<LimitResult>;
  /** Requests per minute only (no slot, no tokens): tab and dispute calls, Nostr payers. */
  admitRequest(
    limits: Pick<KeyLimits, 'id' | 'requests_per_min'>,
  ): Promise<{ ok: true } | { ok: false; retryAfterS: number; detail: string }>;
}

export interface KeyLimiterOptions {
  /** How long a parallel slot lives without renewal (what a crashed replica's slots cost). */
  slotLeaseMs: number;
  now?: () => number;
  /** Called when a background write (slot release, renewal, sweep) fails; the lease bounds the harm. */
  onError?: (error: unknown) => void;
  /** The maintenance pass's heartbeat (job `router_key_limits_maintain`). */
  jobs?: JobHeartbeats;
}

/** Most stale rows one sweep deletes (each sweep's cost is bounded; the next one takes the rest). */
const SWEEP_BATCH = 1_000;

export class SharedKeyLimiter implements KeyLimiter {
  private readonly replicaId = randomUUID();
  /** Slots this replica holds (renewed until released). Bounded by its requests in flight. */
  private readonly held = new Set<string>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly db: Db,
    private readonly options: KeyLimiterOptions,
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Renews held slots and deletes stale windows and slots every leaseMs / 3. */
  start(): void {
    if (this.timer) return;
    let running = false; // a slow pass is not stacked on by the next tick
    const intervalMs = Math.max(100, Math.floor(this.options.slotLeaseMs / 3));
    const job = this.options.jobs?.job('router_key_limits_maintain', { intervalMs });
    this.timer = setInterval(() => {
      if (running) return;
      running = true;
      void beating(job, () => this.maintainOrThrow())
        .catch((error: unknown) => this.options.onError?.(error))
        .finally(() => {
          running = false;
        });
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Admits one request with a parallel slot; `release` frees the slot and counts its tokens. */
  async admit(limits: KeyLimits, estimatedTokens: number): Promise<LimitResult> {
    const nowMs = this.now();
    const slotId = randomUUID();
    const decision = await this.db.transaction(async (tx) => {
      const stored = await lockWindow(tx, limits.id, windowStartOf(nowMs));
      const slots = await tx.query<{ n: number }>(
        'SELECT COUNT(*)::int AS n FROM key_slots WHERE key_id = $1 AND expires_at_ms > $2',
        [limits.id, nowMs],
      );
      const parallelInUse = Number(slots.rows[0]?.n ?? 0);
      const decided = decideAdmission(stored, limits, { estimatedTokens, parallelInUse }, nowMs);
      if (!decided.ok) return decided;
      await writeWindow(tx, limits.id, decided.use);
      await tx.query(
        'INSERT INTO key_slots (slot_id, key_id, replica_id, expires_at_ms) VALUES ($1, $2, $3, $4)',
        [slotId, limits.id, this.replicaId, nowMs + this.options.slotLeaseMs],
      );
      return decided;
    });
    if (!decision.ok) return decision;
    this.held.add(slotId);
    let released = false;
    return {
      ok: true,
      release: (tokens: number) => {
        if (released) return;
        released = true;
        this.held.delete(slotId); // no longer renewed: expires within the lease even if the write fails
        this.release(limits.id, slotId, tokens).catch((error: unknown) => this.options.onError?.(error));
      },
    };
  }

  /** Requests per minute only (no slot, no tokens): tab and dispute calls, Nostr payers. */
  async admitRequest(
    limits: Pick<KeyLimits, 'id' | 'requests_per_min'>,
  ): Promise<{ ok: true } | { ok: false; retryAfterS: number; detail: string }> {
    const nowMs = this.now();
    const full = {
      ...limits,
      tokens_per_min: Number.MAX_SAFE_INTEGER,
      max_parallel: Number.MAX_SAFE_INTEGER,
    };
    return this.db.transaction(async (tx) => {
      const stored = await lockWindow(tx, limits.id, windowStartOf(nowMs));
      const decided = decideAdmission(stored, full, { estimatedTokens: 0, parallelInUse: null }, nowMs);
      if (!decided.ok) return decided;
      await writeWindow(tx, limits.id, decided.use);
      return { ok: true as const };
    });
  }

  /** Frees the slot and adds the tokens to the key's current window (where the request ended). */
  private async release(keyId: string, slotId: string, tokens: number): Promise<void> {
    const startMs = windowStartOf(this.now());
    // An upsert: the row may have been swept while a long request ran.
    await this.db.query(
      `WITH freed AS (DELETE FROM key_slots WHERE slot_id = $2)
       INSERT INTO key_windows AS w (key_id, window_start_ms, tokens) VALUES ($1, $3, $4)
       ON CONFLICT (key_id) DO UPDATE SET
         tokens = CASE WHEN w.window_start_ms >= $3 THEN w.tokens + $4 ELSE $4 END,
         requests = CASE WHEN w.window_start_ms >= $3 THEN w.requests ELSE 0 END,
         window_start_ms = GREATEST(w.window_start_ms, $3)`,
      [keyId, slotId, startMs, Math.max(0, Math.floor(tokens))],
    );
  }

  /** One maintenance pass: renew this replica's slots, delete expired slots and old windows. */
  async maintain(): Promise<void> {
    await this.maintainOrThrow().catch((error: unknown) => this.options.onError?.(error));
  }

  private async maintainOrThrow(): Promise<void> {
    const nowMs = this.now();
    if (this.held.size > 0)
      await this.db.query('UPDATE key_slots SET expires_at_ms = $1 WHERE slot_id = ANY($2)', [
        nowMs + this.options.slotLeaseMs,
        [...this.held],
      ]);
    await this.db.query(
      `DELETE FROM key_slots WHERE slot_id IN
         (SELECT slot_id FROM key_slots WHERE expires_at_ms <= $1 LIMIT ${SWEEP_BATCH})`,
      [nowMs],
    );
    // A window older than the current one counts as empty, so its row may go.
    await this.db.query(
      `DELETE FROM key_windows WHERE key_id IN
         (SELECT key_id FROM key_windows WHERE window_start_ms < $1 LIMIT ${SWEEP_BATCH})
       AND window_start_ms < $1`,
      [windowStartOf(nowMs) - WINDOW_MS],
    );
  }
}

/** Takes the payer's row lock (creating the row if needed) and returns what it holds. */
async function lockWindow(tx: Queryable, keyId: string, startMs: number): Promise<WindowUse> {
  const rows = await tx.query<{ window_start_ms: number; requests: number; tokens: number }>(
    `INSERT INTO key_windows (key_id, window_start_ms) VALUES ($1, $2)
     ON CONFLICT (key_id) DO UPDATE SET requests = key_windows.requests
     RETURNING window_start_ms, requests, tokens`,
    [keyId, startMs],
  );
  const row = rows.rows[0]!;
  return {
    windowStartMs: Number(row.window_start_ms),
    requests: Number(row.requests),
    tokens: Number(row.tokens),
  };
}

async function writeWindow(tx: Queryable, keyId: string, use: WindowUse): Promise<void> {
  await tx.query(
    'UPDATE key_windows SET window_start_ms = $2, requests = $3, tokens = $4 WHERE key_id = $1',
    [keyId, use.windowStartMs, use.requests, use.tokens],
  );
}
