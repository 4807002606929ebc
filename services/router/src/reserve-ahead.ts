// Reservations made ahead for well-funded payers, so a paid request does not wait for settlement
// before it is dispatched. Each slot is an ordinary settlement reservation (`res:<slot id>`, the
// same timeout as any request's), made before any request needs it; a request takes one whose
// amount covers its upper bound and uses the slot id as its dispatch id, so capture, release,
// expiry and the ledger are exactly as for a reservation made on the spot.
//
// - No overspend: every slot is held at settlement before it is handed out, and each is handed
//   to one request only (taken synchronously from memory).
// - Only for payers whose last known available balance covers `balanceMultiple` times the slots
//   held for them: a small tab is never locked up by slots (it reserves per request, as before).
// - Bounded: `slotsPerBucket` slots per (payer, amount bucket) to start with, doubled up to
//   `maxSlotsPerBucket` each time a request finds the bucket empty while it is in use (a payer
//   sending many requests at once); `maxPayers` payers. Slots not taken within `idleMs` are
//   released (and the bucket starts small again), all of them on close(). Slot ids are recorded
//   before they are reserved, so a router that crashed has its slots released by the next
//   process or a live replica (held-reservations.ts), not left to settlement's timeout.
import { randomUUID } from 'node:crypto';

export interface Slot {
  opId: string;
  amountMsat: number;
  createdAtMs: number;
}

export interface ReserveAheadOptions {
  /** Holds one reservation at settlement; resolves with the payer's available balance after it. */
  reserve: (opId: string, payer: string, amountMsat: number) => Promise<{ balanceMsat: number | undefined }>;
  /** Releases one reservation (idempotent). */
  release: (opId: string) => Promise<void>;
  /** Writes slot ids down before they are reserved (held-reservations.ts); a throw holds none. */
  record?: (opIds: readonly string[]) => Promise<void>;
  slotsPerBucket?: number;
  /** Most slots per bucket when a payer's concurrency asks for more (default 8 × slotsPerBucket, ≤ 64). */
  maxSlotsPerBucket?: number;
  balanceMultiple?: number;
  idleMs?: number;
  maxPayers?: number;
  now?: () => number;
  onError?: (error: unknown) => void;
}

/** The smallest power of two at least `amountMsat`: one bucket serves requests of similar cost. */
export function bucketOf(amountMsat: number): number {
  let bucket = 1;
  while (bucket < amountMsat) bucket *= 2;
  return bucket;
}

/** Whether a payer with this available balance may have `slots` slots of `bucketMsat` held for it. */
export function mayHoldAhead(
  balanceMsat: number | undefined,
  slots: number,
  bucketMsat: number,
  balanceMultiple: number,
): boolean {
  return balanceMsat !== undefined && balanceMsat >= balanceMultiple * slots * bucketMsat;
}

export class ReserveAhead {
  /** payer -> bucket -> slots ready to be taken. */
  private readonly pools = new Map<string, Map<number, Slot[]>>();
  /** Refills in flight, by `payer|bucket` (one at a time per bucket). */
  private readonly refilling = new Set<string>();
  /** Slots wanted per `payer|bucket` where it grew past slotsPerBucket. */
  private readonly targets = new Map<string, number>();
  /** Each payer's available balance, as settlement last answered it (bounded by maxPayers). */
  private readonly balances = new Map<string, number>();
  private readonly slotsPerBucket: number;
  private readonly maxSlotsPerBucket: number;
  private readonly balanceMultiple: number;
  private readonly idleMs: number;
  private readonly maxPayers: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: ReserveAheadOptions) {
    this.slotsPerBucket = options.slotsPerBucket ?? 8;
    this.maxSlotsPerBucket = Math.max(
      this.slotsPerBucket,
      options.maxSlotsPerBucket ?? Math.min(64, 8 * this.slotsPerBucket),
    );
    this.balanceMultiple = options.balanceMultiple ?? 10;
    this.idleMs = options.idleMs ?? 2_000;
    this.maxPayers = options.maxPayers ?? 1_000;
    this.now = options.now ?? Date.now;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.releaseIdle(), Math.max(100, Math.floor(this.idleMs / 2)));
    this.timer.unref();
  }

  /** A held slot covering `amountMsat` for this payer, or null (reserve on the spot). Synchronous. */
  take(payer: string, amountMsat: number): Slot | null {
    const bucket = bucketOf(amountMsat);
    const pool = this.pools.get(payer)?.get(bucket);
    const slot = pool?.shift() ?? null; // oldest first
    const key = `${payer}|${bucket}`;
    // Empty while in use: more requests at once than slots, so hold more next time.
    if (!slot && (pool !== undefined || this.refilling.has(key))) this.grow(key);
    if (slot) this.maybeRefill(payer, bucket);
    return slot;
  }

  private grow(key: string): void {
    const target = Math.min(this.maxSlotsPerBucket, 2 * (this.targets.get(key) ?? this.slotsPerBucket));
    if (!this.targets.has(key) && this.targets.size >= this.maxPayers) return;
    this.targets.set(key, target);
  }

  /**
   * After a reservation for this payer was answered with its available balance: tops the
   * bucket's slots up in the background when the balance allows it (also after each take).
   */
  noteBalance(payer: string, amountMsat: number, balanceMsat: number | undefined): void {
    this.setBalance(payer, balanceMsat);
    this.maybeRefill(payer, bucketOf(amountMsat));
  }

  private setBalance(payer: string, balanceMsat: number | undefined): void {
    if (balanceMsat === undefined) return;
    this.balances.delete(payer); // re-inserted last: the map's order is least recently answered first
    this.balances.set(payer, balanceMsat);
    if (this.balances.size > this.maxPayers) this.balances.delete(this.balances.keys().next().value!);
  }

  private maybeRefill(payer: string, bucket: number): void {
    if (this.closed) return;
    const key = `${payer}|${bucket}`;
    if (this.refilling.has(key)) return;
    const have = this.pools.get(payer)?.get(bucket)?.length ?? 0;
    const want = this.slotsAllowed(key, this.balances.get(payer), bucket);
    if (want === 0 || have > want / 2) return;
    if (!this.pools.has(payer) && this.pools.size >= this.maxPayers) return;
    this.refilling.add(key);
    const count = want - have;
    void this.refill(payer, bucket, count).then((added) => {
      this.refilling.delete(key);
      // Taken from or grown meanwhile: top up again (not after a refusal, which would only repeat).
      if (added === count) this.maybeRefill(payer, bucket);
    });
  }

  /** The bucket's target, halved until the balance covers it; 0 when not even slotsPerBucket is. */
  private slotsAllowed(key: string, balanceMsat: number | undefined, bucket: number): number {
    let want = this.targets.get(key) ?? this.slotsPerBucket;
    while (want > this.slotsPerBucket && !mayHoldAhead(balanceMsat, want, bucket, this.balanceMultiple))
      want = Math.max(this.slotsPerBucket, Math.floor(want / 2));
    return mayHoldAhead(balanceMsat, want, bucket, this.balanceMultiple) ? want : 0;
  }

  /** Releases slots not taken within idleMs (or all of one payer's, e.g. before its tab is shown). */
  async releaseIdle(payer?: string): Promise<void> {
    const cutoff = payer === undefined ? this.now() - this.idleMs : Number.POSITIVE_INFINITY;
    const idle: Slot[] = [];
    for (const [who, buckets] of this.pools) {
      if (payer !== undefined && who !== payer) continue;
      for (const [bucket, slots] of buckets) {
        const keep = slots.filter((s) => s.createdAtMs > cutoff);
        idle.push(...slots.filter((s) => s.createdAtMs <= cutoff));
        if (keep.length > 0) buckets.set(bucket, keep);
        else {
          buckets.delete(bucket);
          this.targets.delete(`${who}|${bucket}`);
        }
      }
      if (buckets.size === 0) this.pools.delete(who);
    }
    await Promise.all(
      idle.map((s) => this.options.release(s.opId).catch((error: unknown) => this.options.onError?.(error))),
    );
  }

  /** Stops refilling and releases every slot still held. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    for (const payer of [...this.pools.keys()]) await this.releaseIdle(payer);
  }

  /** Slots held right now (a gauge). */
  get held(): number {
    let n = 0;
    for (const buckets of this.pools.values()) for (const slots of buckets.values()) n += slots.length;
    return n;
  }

  /** Holds `count` more slots; resolves with how many were added (never rejects). */
  private async refill(payer: string, bucket: number, count: number): Promise<number> {
    let added = 0;
    const opIds = Array.from({ length: count }, () => `rq-${randomUUID()}`);
    try {
      await this.options.record?.(opIds);
    } catch (error) {
      this.options.onError?.(error);
      return 0;
    }
    // Concurrent reserves: they travel in one batch envelope and one settlement transaction.
    await Promise.all(
      opIds.map(async (opId) => {
        try {
          const { balanceMsat } = await this.options.reserve(opId, payer, bucket);
          this.setBalance(payer, balanceMsat);
        } catch (error) {
          // Refused (the balance moved) or unknown: the reservation, if it was made, is released.
          await this.options.release(opId).catch(() => {});
          if (!(error instanceof Error && 'code' in error && error.code === 'INSUFFICIENT_BALANCE'))
            this.options.onError?.(error);
          return;
        }
        if (this.closed) {
          await this.options.release(opId).catch(() => {});
          return;
        }
        const buckets = this.pools.get(payer) ?? new Map<number, Slot[]>();
        this.pools.set(payer, buckets);
        const slots = buckets.get(bucket) ?? [];
        buckets.set(bucket, slots);
        slots.push({ opId, amountMsat: bucket, createdAtMs: this.now() });
        added += 1;
      }),
    );
    return added;
  }
}
