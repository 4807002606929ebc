// Replay protection: every signed message id is accepted once. Entries only need to live as long
// as a message could still pass the created_at window, so the store is bounded by time and size.

export interface ReplayStore {
  /**
   * Records `id` until `expiresAtS`. Returns true if it was new, false if it was seen before.
   * Must be atomic: two concurrent calls with the same id return true at most once.
   * `createdAtS` is the signed message's own created_at, when the id names one.
   */
  checkAndRecord(id: string, expiresAtS: number, createdAtS?: number): Promise<boolean>;
}

/** In-process replay store with a hard size cap. When full, it refuses new ids (fails closed). */
export class MemoryReplayStore implements ReplayStore {
  private readonly expiryById = new Map<string, number>();
  private lastSweepS = 0;

  constructor(
    private readonly maxEntries = 100_000,
    private readonly nowS: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  async checkAndRecord(id: string, expiresAtS: number): Promise<boolean> {
    const now = this.nowS();
    const known = this.expiryById.get(id);
    if (known !== undefined && known > now) return false;
    if (this.expiryById.size >= this.maxEntries && now !== this.lastSweepS) this.sweep(now);
    if (this.expiryById.size >= this.maxEntries) {
      throw new Error('replay store full: refusing new messages until entries expire');
    }
    this.expiryById.set(id, expiresAtS);
    return true;
  }

  get size(): number {
    return this.expiryById.size;
  }

  get isFull(): boolean {
    return this.expiryById.size >= this.maxEntries;
  }

  /** Whether `id` is recorded and not yet expired. */
  has(id: string, nowS: number = this.nowS()): boolean {
    const known = this.expiryById.get(id);
    return known !== undefined && known > nowS;
  }

  /** Forgets one id (its recording failed elsewhere). */
  forget(id: string): void {
    this.expiryById.delete(id);
  }

  /** Forgets every expired id. */
  sweepExpired(nowS: number = this.nowS()): void {
    this.sweep(nowS);
  }

  private sweep(now: number): void {
    this.lastSweepS = now;
    for (const [id, expiry] of this.expiryById) if (expiry <= now) this.expiryById.delete(id);
  }
}
