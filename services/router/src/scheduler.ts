// The scheduler: a pure function from (request, node views, weights, rng) to ranked candidates.
// Hard filters are never violated; soft terms are normalised to 0..1 over the eligible set and
// weighted; the leader is drawn at random among near-equal top scores so load spreads instead of
// herding onto one node. O(n) per request: no full sort, only a bounded top-k.
// Nodes on probation (new, unproven) never crowd out established ones: when both are eligible, a
// probation node leads only when a draw falls under `probationShare`, and then only one of them,
// ahead of the established candidates; otherwise they rank behind every established candidate.
import { maxCostMsat, type SortMode } from '@fed-ai/protocol';
import type {
  FilterReason,
  NodeView,
  RankedCandidate,
  ScheduleRequest,
  ScheduleResult,
  ScoreTerms,
  Weights,
} from './scheduler-types';

export const DEFAULT_WEIGHTS: Weights = {
  price: 0.35,
  latency: 0.2,
  throughput: 0.15,
  load: 0.15,
  trust: 0.15,
};

/** Weights for OpenRouter-style `provider.sort`: the named term dominates. */
export function weightsFor(sort: SortMode | undefined, base: Weights = DEFAULT_WEIGHTS): Weights {
  switch (sort) {
    case 'price':
      return { price: 1, latency: 0.05, throughput: 0.05, load: 0.05, trust: 0.05 };
    case 'latency':
      return { price: 0.05, latency: 1, throughput: 0.05, load: 0.1, trust: 0.05 };
    case 'throughput':
      return { price: 0.05, latency: 0.05, throughput: 1, load: 0.1, trust: 0.05 };
    default:
      return base;
  }
}

export interface ScheduleOptions {
  weights: Weights;
  rng: () => number;
  /** Candidates within this score of the best are treated as equal. */
  tieMargin?: number;
  maxCandidates?: number;
  /** Share of requests (0..1) whose leader may be a probation node when established ones are eligible. */
  probationShare?: number;
}

export const DEFAULT_PROBATION_SHARE = 0.1;

interface Eligible {
  node: NodeView;
  costMsat: number;
}

/** Applies the hard filters; returns the eligible nodes and how many each filter removed. */
export function filterNodes(
  req: ScheduleRequest,
  nodes: readonly NodeView[],
): { eligible: Eligible[]; filtered: Partial<Record<FilterReason, number>> } {
  const filtered: Partial<Record<FilterReason, number>> = {};
  const drop = (reason: FilterReason) => {
    filtered[reason] = (filtered[reason] ?? 0) + 1;
  };
  const p = req.provider;
  const only = p?.only?.length ? new Set(p.only) : null;
  const ignore = p?.ignore?.length ? new Set(p.ignore) : null;
  const eligible: Eligible[] = [];
  for (const node of nodes) {
    const offer = node.offer;
    if (offer.id !== req.model) drop('MODEL');
    else if (req.promptTokens + Math.min(req.maxTokens, offer.max_output_tokens) > offer.context_window)
      drop('CONTEXT_WINDOW');
    else if (
      (p?.max_price?.input_msat_per_1k !== undefined &&
        offer.price.input_msat_per_1k > p.max_price.input_msat_per_1k) ||
      (p?.max_price?.output_msat_per_1k !== undefined &&
        offer.price.output_msat_per_1k > p.max_price.output_msat_per_1k)
    )
      drop('MAX_PRICE');
    else if (only && !only.has(node.id)) drop('NOT_IN_ONLY');
    else if (ignore?.has(node.id)) drop('IGNORED');
    else if (p?.region && node.region !== p.region) drop('REGION');
    else if (p?.min_trust !== undefined && node.trust < p.min_trust) drop('MIN_TRUST');
    else if (node.freeSlots <= 0) drop('NO_FREE_SLOT');
    else
      eligible.push({
        node,
        costMsat: maxCostMsat(req.promptTokens, req.maxTokens, offer.price, offer.max_output_tokens),
      });
  }
  return { eligible, filtered };
}

/** Maps a value into 0..1 where `best` -> 1 and `worst` -> 0; a flat range scores 1. */
function normalise(value: number, best: number, worst: number): number {
  if (best === worst) return 1;
  return Math.min(1, Math.max(0, (value - worst) / (best - worst)));
}

const NEUTRAL = 0.5;

export function schedule(
  req: ScheduleRequest,
  nodes: readonly NodeView[],
  options: ScheduleOptions,
): ScheduleResult {
  const { eligible, filtered } = filterNodes(req, nodes);
  if (eligible.length === 0) return { ranked: [], filtered };
  const tieMargin = options.tieMargin ?? 0.02;
  const maxCandidates = Math.max(1, options.maxCandidates ?? 8);
  const w = options.weights;
  const weightSum = w.price + w.latency + w.throughput + w.load + w.trust || 1;

  // Ranges over the eligible set (one pass).
  let costMin = Number.POSITIVE_INFINITY;
  let costMax = 0;
  let ttftMin = Number.POSITIVE_INFINITY;
  let ttftMax = 0;
  let tpsMin = Number.POSITIVE_INFINITY;
  let tpsMax = 0;
  for (const e of eligible) {
    costMin = Math.min(costMin, e.costMsat);
    costMax = Math.max(costMax, e.costMsat);
    const ttft = e.node.stats.ttftMs;
    if (ttft !== undefined) {
      ttftMin = Math.min(ttftMin, ttft);
      ttftMax = Math.max(ttftMax, ttft);
    }
    const tps = e.node.stats.tokensPerS;
    if (tps !== undefined) {
      tpsMin = Math.min(tpsMin, tps);
      tpsMax = Math.max(tpsMax, tps);
    }
  }

  const priceFirst = req.provider?.sort === 'price';
  const established = new TopK(maxCandidates, priceFirst);
  const probation = new TopK(maxCandidates, priceFirst);
  for (const e of eligible) {
    const s = e.node.stats;
    const terms: ScoreTerms = {
      price: normalise(e.costMsat, costMin, costMax),
      latency: s.ttftMs === undefined ? NEUTRAL : normalise(s.ttftMs, ttftMin, ttftMax),
      throughput: s.tokensPerS === undefined ? NEUTRAL : normalise(s.tokensPerS, tpsMax, tpsMin),
      load: e.node.maxConcurrency > 0 ? Math.min(1, e.node.freeSlots / e.node.maxConcurrency) : 0,
      trust: Math.min(1, Math.max(0, e.node.trust * s.successRate)),
    };
    const score =
      (w.price * terms.price +
        w.latency * terms.latency +
        w.throughput * terms.throughput +
        w.load * terms.load +
        w.trust * terms.trust) /
      weightSum;
    (e.node.probation ? probation : established).offer({
      node: e.node,
      score,
      terms,
      maxCostMsat: e.costMsat,
    });
  }

  const main = established.size > 0 ? established : probation;
  const ranked = main.sorted();
  // Anti-herding: draw the leader among candidates as good as the best (within the margin; under
  // sort=price only among the cheapest).
  const best = ranked[0]!;
  const near = ranked.filter((c) =>
    priceFirst
      ? c.maxCostMsat === best.maxCostMsat && best.score - c.score <= tieMargin
      : best.score - c.score <= tieMargin,
  );
  if (near.length > 1) {
    const pick = Math.min(near.length - 1, Math.floor(options.rng() * near.length));
    const chosen = near[pick]!;
    ranked.splice(ranked.indexOf(chosen), 1);
    ranked.unshift(chosen);
  }
  if (main === probation || probation.size === 0) return { ranked, filtered };
  // Both kinds eligible: probation nodes follow the established ones, except that one of them leads
  // a `probationShare` of requests so new nodes can earn a record (and failover still follows).
  const share = Math.min(1, Math.max(0, options.probationShare ?? DEFAULT_PROBATION_SHARE));
  const newcomers = probation.sorted();
  const merged =
    options.rng() < share ? [newcomers[0]!, ...ranked, ...newcomers.slice(1)] : [...ranked, ...newcomers];
  return { ranked: merged.slice(0, maxCandidates), filtered };
}

/** Keeps the k best candidates seen (price first when asked), in O(n log k). */
class TopK {
  private readonly heap: RankedCandidate[] = []; // worst at index 0

  constructor(
    private readonly k: number,
    private readonly priceFirst: boolean,
  ) {}

  /** Negative when a is worse than b. */
  private compare(a: RankedCandidate, b: RankedCandidate): number {
    if (this.priceFirst && a.maxCostMsat !== b.maxCostMsat) return b.maxCostMsat - a.maxCostMsat;
    if (a.score !== b.score) return a.score - b.score;
    return a.node.id < b.node.id ? 1 : a.node.id > b.node.id ? -1 : 0; // deterministic tie order
  }

  get size(): number {
    return this.heap.length;
  }

  offer(candidate: RankedCandidate): void {
    if (this.heap.length < this.k) {
      this.heap.push(candidate);
      this.up(this.heap.length - 1);
    } else if (this.compare(candidate, this.heap[0]!) > 0) {
      this.heap[0] = candidate;
      this.down(0);
    }
  }

  sorted(): RankedCandidate[] {
    return [...this.heap].sort((a, b) => this.compare(b, a));
  }

  private up(i: number): void {
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (this.compare(this.heap[i]!, this.heap[parent]!) >= 0) return;
      [this.heap[i], this.heap[parent]] = [this.heap[parent]!, this.heap[i]!];
      i = parent;
    }
  }

  private down(i: number): void {
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < this.heap.length && this.compare(this.heap[left]!, this.heap[smallest]!) < 0)
        smallest = left;
      if (right < this.heap.length && this.compare(this.heap[right]!, this.heap[smallest]!) < 0)
        smallest = right;
      if (smallest === i) return;
      [this.heap[i], this.heap[smallest]] = [this.heap[smallest]!, this.heap[i]!];
      i = smallest;
    }
  }
}
