// Spending leases for well-funded payers, so a paid request neither waits for settlement before
// it is dispatched nor costs settlement a reservation of its own. A lease is one hold at
// settlement (`open_lease`: part of the payer's tab moved into the lease's own account); each
// request draws its upper bound from it in memory, and its capture names the lease, so settlement
// charges the signed cost out of the lease's account (which cannot go below zero).
//
// - No overspend: a draw is taken only while the lease's amount covers every bound drawn and not
//   yet settled plus every cost already captured (`remainingMsat`, synchronous, in memory), and
//   settlement refuses to take more out of a lease than it holds; a capture it cannot charge
//   from the lease (closed, spent) it charges from the tab, once.
// - Only for payers whose last known available balance covers `balanceMultiple` times the lease:
//   a small tab is never locked up (it reserves per request, as before).
// - Bounded: one lease accepting draws per payer, `maxPayers` payers; a lease holds
//   `leaseRequests` bounds of the request's bucket to start with, doubled up to
//   `maxLeaseRequests` when draws find it short while in use. A lease stops taking draws when it
//   has been idle `idleMs`, is half spent or half its life is gone (a new one is opened when the
//   balance allows), and is closed once its last draw is settled and its captures confirmed
//   (what it still holds goes back to the tab); all of them on close(). Lease ids are recorded
//   before they are opened, so a router that crashed has its leases closed by the next process or
//   a live replica (held-reservations.ts), not left to settlement's expiry.
import { randomUUID } from 'node:crypto';

/** A request's bound drawn from a lease. */
export interface Draw {
  leaseId: string;
  amountMsat: number;
}

interface Lease {
  leaseId: string;
  payer: string;
  amountMsat: number;
  /** Bounds of draws not settled yet. */
  drawnMsat: number;
  /** Costs captured from it (confirmed or on their way). */
  spentMsat: number;
  /** Draws not settled yet, and captures not confirmed yet. */
  draws: number;
  unconfirmed: number;
  openedAtMs: number;
  lastDrawAtMs: number;
  /** Takes no more draws; closed once drained. */
  retired: boolean;
  /** The close, once started. */
  closing: Promise<void> | null;
  /** Waiting for the last unconfirmed capture. */
  waiters: (() => void)[];
}

export interface SpendingLeasesOptions {
  /** Opens one lease at settlement; resolves with the payer's available balance after it. */
  open: (leaseId: string, payer: string, amountMsat: number) => Promise<{ balanceMsat: number | undefined }>;
  /** Closes one lease (idempotent). */
  close: (leaseId: string) => Promise<void>;
  /** Writes lease ids down before they are opened (held-reservations.ts); a throw opens none. */
  record?: (leaseIds: readonly string[]) => Promise<void>;
  /** The lease's close is durable: its record may go. */
  forget?: (leaseId: string) => void;
  /** Bounds of the request's bucket a new lease holds (default 16). */
  leaseRequests?: number;
  maxLeaseRequests?: number;
  balanceMultiple?: number;
  idleMs?: number;
  /** How long a lease takes draws at most: half of settlement's expiry, so captures land in time. */
  maxDrawAgeMs: number;
  maxPayers?: number;
  now?: () => number;
  onError?: (error: unknown) => void;
}

/** Lease ids, told apart from request ids (held-reservations.ts closes them instead of releasing). */
const LEASE_ID_PREFIX = 'ls-';
export const isLeaseId = (id: string): boolean => id.startsWith(LEASE_ID_PREFIX);

/** The smallest power of two at least `amountMsat`: leases are sized in these. */
export function bucketOf(amountMsat: number): number {
  let bucket = 1;
  while (bucket < amountMsat) bucket *= 2;
  return bucket;
}

/** Whether a payer with this available balance may have a lease of `amountMsat` opened. */
export function mayLease(
  balanceMsat: number | undefined,
  amountMsat: number,
  balanceMultiple: number,
): boolean {
  return balanceMsat !== undefined && balanceMsat >= balanceMultiple * amountMsat;
}

/** What a lease can still hand out: its amount less what is drawn and what is spent. */
function remainingMsat(lease: Pick<Lease, 'amountMsat' | 'drawnMsat' | 'spentMsat'>): number {
  return lease.amountMsat - lease.drawnMsat - lease.spentMsat;
}

export class SpendingLeases {
  /** The lease taking draws, per payer. */
  private readonly current = new Map<string, Lease>();
  /** Every lease not closed yet (current and retired), by id. */
  private readonly open = new Map<string, Lease>();
  /** Payers with an open_lease on its way (one at a time each). */
  private readonly opening = new Set<string>();
  /** Openings and closes on their way: close() returns only once they have ended. */
  private readonly inFlight = new Set<Promise<void>>();
  /** Bounds per lease wanted by a payer whose leases ran short while in use. */
  private readonly targets = new Map<string, number>();
  /** Each payer's available balance, as settlement last answered it (bounded by maxPayers). */
  private readonly balances = new Map<string, number>();
  private readonly leaseRequests: number;
  private readonly maxLeaseRequests: number;
  private readonly balanceMultiple: number;
  private readonly idleMs: number;
  private readonly maxPayers: number;
  private readonly now: () => number;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;

  constructor(private readonly options: SpendingLeasesOptions) {
    this.leaseRequests = options.leaseRequests ?? 16;
    this.maxLeaseRequests = Math.max(this.leaseRequests, options.maxLeaseRequests ?? 64);
    this.balanceMultiple = options.balanceMultiple ?? 10;
    this.idleMs = options.idleMs ?? 2_000;
    this.maxPayers = options.maxPayers ?? 1_000;
    this.now = options.now ?? Date.now;
  }

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => this.retireIdle(), Math.max(100, Math.floor(this.idleMs / 2)));
    this.timer.unref();
  }

  /** A draw of exactly `amountMsat` from the payer's lease, or null (reserve on the spot). Synchronous. */
  take(payer: string, amountMsat: number): Draw | null {
    const lease = this.current.get(payer);
    if (lease && this.takesDraws(lease) && remainingMsat(lease) >= amountMsat) {
      lease.drawnMsat += amountMsat;
      lease.draws += 1;
      lease.lastDrawAtMs = this.now();
      this.maybeRenew(payer, amountMsat);
      return { leaseId: lease.leaseId, amountMsat };
    }
    // Short while in use: more at once than the lease covers, so lease more next time.
    if (lease && lease.draws > 0) this.grow(payer);
    this.maybeRenew(payer, amountMsat);
    return null;
  }

  /**
   * The draw's request ended: `costMsat` was captured from the lease (0: nothing was, it failed
   * or was cancelled before a record). With `capturing`, confirmed() follows once the capture is
   * answered; the lease does not close before that.
   */
  settle(draw: Draw, costMsat: number, capturing: boolean): void {
    const lease = this.open.get(draw.leaseId);
    if (!lease) return;
    lease.drawnMsat -= draw.amountMsat;
    lease.spentMsat += costMsat;
    lease.draws -= 1;
    if (capturing) lease.unconfirmed += 1;
    this.closeIfDrained(lease);
  }

  /** A capture from the lease was answered (charged, or left to the outbox after a failure). */
  confirmed(draw: Draw): void {
    const lease = this.open.get(draw.leaseId);
    if (!lease) return;
    lease.unconfirmed -= 1;
    if (lease.unconfirmed === 0) for (const wake of lease.waiters.splice(0)) wake();
    this.closeIfDrained(lease);
  }

  /**
   * After a reservation for this payer was answered with its available balance: opens a lease in
   * the background when the balance allows it (also after each draw).
   */
  noteBalance(payer: string, amountMsat: number, balanceMsat: number | undefined): void {
    this.setBalance(payer, balanceMsat);
    this.maybeRenew(payer, amountMsat);
  }

  /** Money held in open leases right now (a gauge). */
  get heldMsat(): number {
    let held = 0;
    for (const lease of this.open.values()) held += lease.amountMsat - lease.spentMsat;
    return held;
  }

  /** Open leases right now (a gauge). */
  get leases(): number {
    return this.open.size;
  }

  /**
   * Retires the payer's leases (before its tab is shown or refunded) and closes those whose
   * requests have all ended; a lease with a request still running closes when it ends.
   */
  async releasePayer(payer: string): Promise<void> {
    // Taken before retiring: a retired, drained lease starts closing at once and leaves `open`.
    const idle = [...this.open.values()].filter((l) => l.payer === payer && l.draws === 0);
    const lease = this.current.get(payer);
    if (lease) this.retire(lease);
    // Its captures first (they linger a little), so they are charged from the lease.
    await Promise.all(idle.map(async (l) => this.closeLease(await this.whenConfirmed(l))));
  }

  /** Stops opening leases and closes every one (captures still on their way are charged from the tab). */
  async close(): Promise<void> {
    this.closed = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    const all = [...this.open.values()];
    for (const lease of all) lease.retired = true;
    this.current.clear();
    for (const lease of all) void this.closeLease(lease);
    // Every close is in flight now; an opening answered later closes its own lease (this.closed).
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** Keeps `work` (which never rejects) in `inFlight` until it ends. */
  private track(work: Promise<void>): Promise<void> {
    this.inFlight.add(work);
    void work.finally(() => this.inFlight.delete(work));
    return work;
  }

  private whenConfirmed(lease: Lease): Promise<Lease> {
    if (lease.unconfirmed === 0) return Promise.resolve(lease);
    return new Promise((done) => lease.waiters.push(() => done(lease)));
  }

  private takesDraws(lease: Lease): boolean {
    if (lease.retired) return false;
    if (this.now() - lease.openedAtMs >= this.options.maxDrawAgeMs) {
      this.retire(lease);
      return false;
    }
    return true;
  }

  private grow(payer: string): void {
    if (!this.targets.has(payer) && this.targets.size >= this.maxPayers) return;
    const target = Math.min(this.maxLeaseRequests, 2 * (this.targets.get(payer) ?? this.leaseRequests));
    this.targets.set(payer, target);
  }

  private setBalance(payer: string, balanceMsat: number | undefined): void {
    if (balanceMsat === undefined) return;
    this.balances.delete(payer); // re-inserted last: the map's order is least recently answered first
    this.balances.set(payer, balanceMsat);
    if (this.balances.size > this.maxPayers) this.balances.delete(this.balances.keys().next().value!);
  }

  /** Whether the payer's lease is missing, short, half spent or half through its draw age. */
  private wantsNew(payer: string, amountMsat: number): boolean {
    const lease = this.current.get(payer);
    if (!lease || lease.retired) return true;
    if (remainingMsat(lease) < Math.max(amountMsat, lease.amountMsat / 2)) return true;
    return this.now() - lease.openedAtMs >= this.options.maxDrawAgeMs / 2;
  }

  /** The lease size for this payer: its target bounds of the bucket, halved until the balance covers it. */
  private leaseSize(payer: string, amountMsat: number): number {
    const bucket = bucketOf(amountMsat);
    const balance = this.balances.get(payer);
    let requests = this.targets.get(payer) ?? this.leaseRequests;
    while (requests > this.leaseRequests && !mayLease(balance, requests * bucket, this.balanceMultiple))
      requests = Math.max(this.leaseRequests, Math.floor(requests / 2));
    return mayLease(balance, requests * bucket, this.balanceMultiple) ? requests * bucket : 0;
  }

  private maybeRenew(payer: string, amountMsat: number): void {
    if (this.closed || this.opening.has(payer) || !this.wantsNew(payer, amountMsat)) return;
    const size = this.leaseSize(payer, amountMsat);
    if (size === 0) return;
    if (!this.current.has(payer) && this.current.size >= this.maxPayers) return;
    this.opening.add(payer);
    this.track(this.openLease(payer, size).finally(() => this.opening.delete(payer)));
  }

  /** Opens a lease and makes it the payer's current one (the one before it retires); never rejects. */
  private async openLease(payer: string, amountMsat: number): Promise<void> {
    const leaseId = `${LEASE_ID_PREFIX}${randomUUID()}`;
    try {
      await this.options.record?.([leaseId]);
    } catch (error) {
      this.options.onError?.(error);
      return;
    }
    let balanceMsat: number | undefined;
    try {
      ({ balanceMsat } = await this.options.open(leaseId, payer, amountMsat));
    } catch (error) {
      // Refused (the balance moved) or unknown: the lease, if it was opened, is closed.
      await this.closeQuietly(leaseId);
      if (!(error instanceof Error && 'code' in error && error.code === 'INSUFFICIENT_BALANCE'))
        this.options.onError?.(error);
      return;
    }
    this.setBalance(payer, balanceMsat);
    if (this.closed) {
      await this.closeQuietly(leaseId);
      return;
    }
    const now = this.now();
    const lease: Lease = {
      leaseId,
      payer,
      amountMsat,
      drawnMsat: 0,
      spentMsat: 0,
      draws: 0,
      unconfirmed: 0,
      openedAtMs: now,
      lastDrawAtMs: now,
      retired: false,
      closing: null,
      waiters: [],
    };
    const before = this.current.get(payer);
    this.open.set(leaseId, lease);
    this.current.set(payer, lease);
    if (before) this.retire(before);
  }

  private retire(lease: Lease): void {
    lease.retired = true;
    if (this.current.get(lease.payer) === lease) this.current.delete(lease.payer);
    this.closeIfDrained(lease);
  }

  /** Retires leases nobody drew from for idleMs (the bucket target starts small again). */
  retireIdle(): void {
    const cutoff = this.now() - this.idleMs;
    for (const lease of [...this.current.values()])
      if (lease.draws === 0 && lease.lastDrawAtMs <= cutoff) {
        this.targets.delete(lease.payer);
        this.retire(lease);
      }
  }

  private closeIfDrained(lease: Lease): void {
    if (lease.retired && lease.draws === 0 && lease.unconfirmed === 0) void this.closeLease(lease);
  }

  /** Closes one lease once (a failed close is left to the held-lease sweep and settlement's expiry). */
  private closeLease(lease: Lease): Promise<void> {
    if (!lease.closing) {
      this.open.delete(lease.leaseId);
      lease.closing = this.track(this.closeQuietly(lease.leaseId));
    }
    return lease.closing;
  }

  private async closeQuietly(leaseId: string): Promise<void> {
    try {
      await this.options.close(leaseId);
      this.options.forget?.(leaseId);
    } catch (error) {
      this.options.onError?.(error);
    }
  }
}
