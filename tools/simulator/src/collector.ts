// What a run measures, bounded: totals, per-code outcomes, histograms, and fixed time buckets.
import { addMsat, Histogram } from './stats';

export interface Bucket {
  arrivals: number;
  ok: number;
  failed: number;
  failovers: number;
  clientRetries: number;
  routerFeeMsat: number;
  latencyMs: Histogram;
  /** Output price (msat per 1k) of the node that served each request. */
  paidOutputPrice: Histogram;
  busySlotMs: number;
  listedOutputPrice: { p10: number; p50: number; p90: number };
}

export interface Invariants {
  /** A node ran more generations at once than its max_concurrency. */
  overCapacity: number;
  /** A node queued more than its queue_max. */
  overQueue: number;
  /** A request went to a node above the client's max price or not serving its model. */
  filterViolations: number;
  /** A charge did not split exactly into node earnings + router fee. */
  splitMismatches: number;
  /** Pay-before: a charge above the reservation. */
  chargeOverReservation: number;
  /** A payer's balance went below zero. */
  negativeBalances: number;
  /** Fast reservation math differed from candidateMaxCostMsat on a checked call. */
  reservationMismatches: number;
  /** Leases or node slots still held after the run drained. */
  leaks: number;
  /** Pay-before: money still held on a tab after the run drained (every hold must be released). */
  heldAfterDrainMsat: number;
  /** A payer's starting balance differs from its balance now plus what it paid. */
  balanceMismatches: number;
  /** Requests checked (every attempt and every charge is checked). */
  checkedRequests: number;
}

export class Collector {
  readonly buckets: Bucket[];
  readonly outcomes = new Map<string, number>();
  readonly latencyMs = new Histogram();
  readonly ttftMs = new Histogram();
  readonly costMsat = new Histogram();
  readonly invariants: Invariants = {
    overCapacity: 0,
    overQueue: 0,
    filterViolations: 0,
    splitMismatches: 0,
    chargeOverReservation: 0,
    negativeBalances: 0,
    reservationMismatches: 0,
    leaks: 0,
    heldAfterDrainMsat: 0,
    balanceMismatches: 0,
    checkedRequests: 0,
  };
  arrivals = 0;
  ok = 0;
  failed = 0;
  attempts = 0;
  failovers = 0;
  clientRetries = 0;
  clientPaidMsat = 0;
  nodeEarnedMsat = 0;
  routerFeeMsat = 0;
  /** Federation: origins' fees on peer costs (client paid = node earnings + router fees + these). */
  offloadFeeMsat = 0;
  unpaidWorkMsat = 0;
  unpaidAnswers = 0;
  reservedMsat = 0;
  /** Holds given back to tabs (a charge is then taken from the balance: the refund is the rest). */
  releasedMsat = 0;

  constructor(
    bucketCount: number,
    readonly bucketMs: number,
  ) {
    this.buckets = Array.from({ length: bucketCount }, () => ({
      arrivals: 0,
      ok: 0,
      failed: 0,
      failovers: 0,
      clientRetries: 0,
      routerFeeMsat: 0,
      latencyMs: new Histogram(),
      paidOutputPrice: new Histogram(),
      busySlotMs: 0,
      listedOutputPrice: { p10: 0, p50: 0, p90: 0 },
    }));
  }

  bucket(nowMs: number): Bucket {
    const index = Math.min(this.buckets.length - 1, Math.max(0, Math.floor(nowMs / this.bucketMs)));
    return this.buckets[index]!;
  }

  outcome(code: string): void {
    this.outcomes.set(code, (this.outcomes.get(code) ?? 0) + 1);
  }

  paid(nowMs: number, charge: { costMsat: number; nodeMsat: number; routerMsat: number }): void {
    this.clientPaidMsat = addMsat(this.clientPaidMsat, charge.costMsat);
    this.nodeEarnedMsat = addMsat(this.nodeEarnedMsat, charge.nodeMsat);
    this.routerFeeMsat = addMsat(this.routerFeeMsat, charge.routerMsat);
    const b = this.bucket(nowMs);
    b.routerFeeMsat = addMsat(b.routerFeeMsat, charge.routerMsat);
  }
}
