// Per-key limits for a router that owns its database alone (embedded PGlite: one process per data
// directory, so no other replica can admit for the same keys). The same pure `decideAdmission` as
// the shared limiter, with the windows and parallel slots in memory: no database round trip on the
// request path.
//
// - Parallel slots live only in memory: a crash ends their requests too.
// - Windows are written behind, at most every flushEveryMs, into the same `key_windows` table, and
//   read back at start, so a restart forgets at most the last flush interval's requests.
// - Bounded: at most MAX_PAYERS payers with a current window; past that, new payers are refused
//   (fail closed) until old windows age out.
import { beating, type Db, type JobHeartbeats } from '@fed-ai/kit';
import {
  decideAdmission,
  type KeyLimiter,
  type KeyLimits,
  type LimitResult,
  WINDOW_MS,
  type WindowUse,
  windowStartOf,
} from './key-limits';

const MAX_PAYERS = 100_000;
const FLUSH_EVERY_MS = 1_000;
/** Windows per upsert (a bounded statement). */
const FLUSH_BATCH = 1_000;

export interface LocalKeyLimiterOptions {
  now?: () => number;
  flushEveryMs?: number;
  onError?: (error: unknown) => void;
  /** The write-behind's heartbeat (job `router_key_limits_flush`). */
  jobs?: JobHeartbeats;
}

export class LocalKeyLimiter implements KeyLimiter {
  private readonly windows = new Map<string, WindowUse>();
  private readonly parallel = new Map<string, number>();
  /** Payers whose window changed since the last flush. */
  private readonly dirty = new Set<string>();
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private loaded: Promise<void> | null = null;

  constructor(
    private readonly db: Db,
    private readonly options: LocalKeyLimiterOptions = {},
  ) {
    this.now = options.now ?? Date.now;
  }

  /** Loads the current windows (a restart keeps counting) and starts the write-behind. */
  start(): void {
    this.loaded ??= this.load().catch((error: unknown) => this.options.onError?.(error));
    if (this.timer) return;
    let running = false;
    const intervalMs = this.options.flushEveryMs ?? FLUSH_EVERY_MS;
    const job = this.options.jobs?.job('router_key_limits_flush', { intervalMs });
    this.timer = setInterval(() => {
      if (running) return;
      running = true;
      void beating(job, () => this.writeWindows())
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

  async admit(limits: KeyLimits, estimatedTokens: number): Promise<LimitResult> {
    await this.loaded;
    const nowMs = this.now();
    const parallelInUse = this.parallel.get(limits.id) ?? 0;
    const decided = this.decide(limits, { estimatedTokens, parallelInUse }, nowMs);
    if (!decided.ok) return decided;
    this.parallel.set(limits.id, parallelInUse + 1);
    let released = false;
    return {
      ok: true,
      release: (tokens: number) => {
        if (released) return;
        released = true;
        const left = (this.parallel.get(limits.id) ?? 1) - 1;
        if (left > 0) this.parallel.set(limits.id, left);
        else this.parallel.delete(limits.id);
        this.addTokens(limits.id, Math.max(0, Math.floor(tokens)));
      },
    };
  }

  async admitRequest(
    limits: Pick<KeyLimits, 'id' | 'requests_per_min'>,
  ): Promise<{ ok: true } | { ok: false; retryAfterS: number; detail: string }> {
    await this.loaded;
    const full = { tokens_per_min: Number.MAX_SAFE_INTEGER, max_parallel: Number.MAX_SAFE_INTEGER };
    const decided = this.decide(
      { ...limits, ...full },
      { estimatedTokens: 0, parallelInUse: null },
      this.now(),
    );
    return decided.ok ? { ok: true } : decided;
  }

  /** Writes the changed windows (one upsert per FLUSH_BATCH) and drops windows that ended. */
  async flush(): Promise<void> {
    await this.writeWindows().catch((error: unknown) => this.options.onError?.(error));
  }

  /** flush's work; throws when the database did not take it (those windows stay dirty). */
  private async writeWindows(): Promise<void> {
    const nowMs = this.now();
    for (const [id, use] of this.windows)
      if (use.windowStartMs < windowStartOf(nowMs) && !this.parallel.has(id)) this.windows.delete(id);
    const ids = [...this.dirty];
    this.dirty.clear();
    try {
      for (let i = 0; i < ids.length; i += FLUSH_BATCH) {
        const rows = ids.slice(i, i + FLUSH_BATCH).flatMap((id) => {
          const use = this.windows.get(id);
          return use ? [{ id, ...use }] : [];
        });
        if (rows.length === 0) continue;
        await this.db.query(
          `INSERT INTO key_windows AS w (key_id, window_start_ms, requests, tokens)
           SELECT * FROM unnest($1::text[], $2::bigint[], $3::int[], $4::bigint[])
           ON CONFLICT (key_id) DO UPDATE SET window_start_ms = EXCLUDED.window_start_ms,
             requests = EXCLUDED.requests, tokens = EXCLUDED.tokens`,
          [
            rows.map((r) => r.id),
            rows.map((r) => r.windowStartMs),
            rows.map((r) => r.requests),
            rows.map((r) => r.tokens),
          ],
        );
      }
      await this.db.query('DELETE FROM key_windows WHERE window_start_ms < $1', [
        windowStartOf(nowMs) - WINDOW_MS,
      ]);
    } catch (error) {
      for (const id of ids) this.dirty.add(id); // written at the next flush
      throw error;
    }
  }

  private decide(
    limits: KeyLimits,
    request: { estimatedTokens: number; parallelInUse: number | null },
    nowMs: number,
  ): { ok: true } | { ok: false; retryAfterS: number; detail: string } {
    const stored = this.windows.get(limits.id) ?? null;
    if (!stored && this.windows.size >= MAX_PAYERS)
      return { ok: false, retryAfterS: 1, detail: 'too many payers at once on this router' };
    const decided = decideAdmission(stored, limits, request, nowMs);
    if (!decided.ok) return decided;
    this.windows.set(limits.id, decided.use);
    this.dirty.add(limits.id);
    return { ok: true };
  }

  /** Tokens count in the window where the request ended (as the shared limiter does). */
  private addTokens(id: string, tokens: number): void {
    const startMs = windowStartOf(this.now());
    const use = this.windows.get(id);
    if (use && use.windowStartMs >= startMs) use.tokens += tokens;
    else this.windows.set(id, { windowStartMs: startMs, requests: 0, tokens });
    this.dirty.add(id);
  }

  private async load(): Promise<void> {
    const rows = await this.db.query<{
      key_id: string;
      window_start_ms: number;
      requests: number;
      tokens: number;
    }>(
      'SELECT key_id, window_start_ms, requests, tokens FROM key_windows WHERE window_start_ms >= $1 LIMIT $2',
      [windowStartOf(this.now()), MAX_PAYERS],
    );
    for (const r of rows.rows)
      this.windows.set(r.key_id, {
        windowStartMs: Number(r.window_start_ms),
        requests: Number(r.requests),
        tokens: Number(r.tokens),
      });
  }
}
