// The run's report as plain data (JSON-ready, deterministic for a seed): totals, money, invariants,
// per-group market shares, top nodes, routers and a timeline. Floats are rounded where reported.
import type { Invariants } from './collector';
import type { Simulation } from './engine';
import type { RefusalCounts } from './federation';
import { gini, lorenz, round } from './stats';
import type { NodeState } from './world';

interface GroupReport {
  group: string;
  nodes: number;
  models: number;
  /** Median listed prices at the end of the run (msat per 1k tokens). */
  inputMsatPer1k: number;
  outputMsatPer1k: number;
  served: number;
  trafficShare: number;
  trafficSharePerNode: number;
  utilisation: number;
  failed: number;
  refused: number;
  earningsMsat: number;
  earningsPerNodeMsat: number;
  unpaidWorkMsat: number;
}

interface NodeReport {
  id: string;
  group: string;
  outputMsatPer1k: number;
  served: number;
  trafficShare: number;
  utilisation: number;
  earningsMsat: number;
  failed: number;
  refused: number;
}

interface TimelinePoint {
  tS: number;
  arrivals: number;
  ok: number;
  failed: number;
  failovers: number;
  clientRetries: number;
  routerFeeMsat: number;
  latencyMs: { p50: number; p90: number; p99: number };
  paidOutputMsatPer1k: { p50: number; p90: number };
  listedOutputMsatPer1k: { p10: number; p50: number; p90: number };
  utilisation: number;
}

export interface VariantReport {
  variant: string;
  payment: 'before' | 'after';
  routers: number;
  heartbeatIntervalMs: number;
  durationS: number;
  events: number;
  totals: {
    requests: number;
    ok: number;
    failed: number;
    successRate: number;
    attempts: number;
    failovers: number;
    clientRetries: number;
    outcomes: Record<string, number>;
  };
  latencyMs: { p50: number; p90: number; p99: number };
  ttftMs: { p50: number; p90: number; p99: number };
  costMsat: { p50: number; p90: number; p99: number };
  money: {
    clientPaidMsat: number;
    nodeEarnedMsat: number;
    routerFeeMsat: number;
    /** Client paid = node earnings + router fees, exactly, and every payer's own sum agrees. */
    conserved: boolean;
    unpaidWorkMsat: number;
    unpaidAnswers: number;
    reservedMsat: number;
    /** Pay-before: what went back to tabs after each try: reserved - charged (every hold ends). */
    refundedMsat: number;
  };
  invariants: Invariants;
  earnings: { gini: number; lorenz: { x: number; y: number }[] };
  groups: GroupReport[];
  /** Every node when there are at most 200, else the 20 with the most traffic. */
  nodes: NodeReport[];
  /** Utilisation of every node, highest first (at most 200 points, evenly sampled). */
  utilisationCurve: number[];
  routerStats: { index: number; requests: number; failovers: number; feeMsat: number }[];
  timeline: TimelinePoint[];
  /** Only with a federation section (absent keys keep other reports byte-identical). */
  federation?: FederationReport | undefined;
}

interface FederationRouterReport {
  index: number;
  nodes: number;
  requests: number;
  auctions: number;
  won: number;
  noBids: number;
  allRefused: number;
  offloadsOut: number;
  offloadsIn: number;
  servedByPeers: number;
  servedForPeers: number;
  offloadFeeMsat: number;
  peerWorkFeeMsat: number;
}

export interface FederationReport {
  offloadFeeBps: number;
  auctionWindowMs: number;
  peers: 'all' | number;
  auctions: number;
  outcomes: { won: number; noBids: number; allRefused: number; noPeerAnnounces: number };
  bids: { sent: number; accepted: number; refused: RefusalCounts; late: number; peersWithoutTerms: number };
  offloadAttempts: number;
  offloadsServed: number;
  /** Offloaded answers / all answers. */
  offloadedShare: number;
  peerFailures: number;
  bidMismatches: number;
  offloadFeeMsat: number;
  auctionMs: { p50: number; p90: number; p99: number };
  latencyMs: {
    local: { p50: number; p90: number; p99: number };
    offloaded: { p50: number; p90: number; p99: number };
  };
  invariants: { reoffloads: number; offloadOverBid: number };
  routers: FederationRouterReport[];
  offloadedPerBucket: number[];
}

const q3 = (h: { quantile(q: number): number }) => ({
  p50: round(h.quantile(0.5), 1),
  p90: round(h.quantile(0.9), 1),
  p99: round(h.quantile(0.99), 1),
});

function utilisationOf(node: NodeState, durationMs: number): number {
  return node.busyInRunSlotMs / (durationMs * node.group.spec.capacity.maxConcurrency);
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)] ?? 0;
}

export function buildVariantReport(sim: Simulation, variant: string, events: number): VariantReport {
  const c = sim.collector;
  const s = sim.scenario;
  const payerPaid = sim.clients.reduce((sum, cl) => sum + cl.payers.reduce((t, p) => t + p.paidMsat, 0), 0);
  const nodeSum = sim.nodes.reduce((sum, n) => sum + n.earningsMsat, 0);
  const routerSum = sim.routers.reduce((sum, r) => sum + r.feeMsat, 0);
  const conserved =
    c.clientPaidMsat === c.nodeEarnedMsat + c.routerFeeMsat + c.offloadFeeMsat &&
    payerPaid === c.clientPaidMsat &&
    (s.payment === 'after' || c.reservedMsat === c.releasedMsat) &&
    nodeSum === c.nodeEarnedMsat &&
    routerSum === c.routerFeeMsat &&
    sim.routers.reduce((sum, r) => sum + r.fed.offloadFeeMsat, 0) === c.offloadFeeMsat;
  return {
    variant,
    payment: s.payment,
    routers: s.routers.count,
    heartbeatIntervalMs: s.heartbeatIntervalMs,
    durationS: s.durationS,
    events,
    totals: {
      requests: c.arrivals,
      ok: c.ok,
      failed: c.failed,
      successRate: round(c.arrivals === 0 ? 0 : c.ok / c.arrivals, 4),
      attempts: c.attempts,
      failovers: c.failovers,
      clientRetries: c.clientRetries,
      outcomes: Object.fromEntries([...c.outcomes.entries()].sort(([a], [b]) => (a < b ? -1 : 1))),
    },
    latencyMs: q3(c.latencyMs),
    ttftMs: q3(c.ttftMs),
    costMsat: q3(c.costMsat),
    money: {
      clientPaidMsat: c.clientPaidMsat,
      nodeEarnedMsat: c.nodeEarnedMsat,
      routerFeeMsat: c.routerFeeMsat,
      conserved,
      unpaidWorkMsat: c.unpaidWorkMsat,
      unpaidAnswers: c.unpaidAnswers,
      reservedMsat: c.reservedMsat,
      refundedMsat: s.payment === 'before' ? c.releasedMsat - c.clientPaidMsat : 0,
    },
    invariants: { ...c.invariants, reservationMismatches: sim.reservations.mismatches },
    earnings: {
      gini: round(gini(sim.nodes.map((n) => n.earningsMsat)), 4),
      lorenz: lorenz(sim.nodes.map((n) => n.earningsMsat)).map((p) => ({
        x: round(p.x, 3),
        y: round(p.y, 4),
      })),
    },
    groups: groupReports(sim),
    nodes: nodeReports(sim),
    utilisationCurve: utilisationCurve(sim),
    routerStats: sim.routers.map((r) => ({
      index: r.index,
      requests: r.requests,
      failovers: r.failovers,
      feeMsat: r.feeMsat,
    })),
    timeline: timeline(sim),
    federation: federationReport(sim),
  };
}

function federationReport(sim: Simulation): FederationReport | undefined {
  const fed = sim.federation;
  if (!fed) return undefined;
  const f = fed.stats;
  const sum = (pick: (r: Simulation['routers'][number]) => number) =>
    sim.routers.reduce((s, r) => s + pick(r), 0);
  return {
    offloadFeeBps: fed.spec.offloadFeeBps,
    auctionWindowMs: fed.spec.auctionWindowMs,
    peers: fed.spec.peers === 'all' ? 'all' : fed.spec.peers.count,
    auctions: sum((r) => r.fed.auctions),
    outcomes: {
      won: sum((r) => r.fed.won),
      noBids: sum((r) => r.fed.noBids),
      allRefused: sum((r) => r.fed.allRefused),
      noPeerAnnounces: f.noPeerAnnounces,
    },
    bids: {
      sent: f.bidsSent,
      accepted: f.bidsAccepted,
      refused: Object.fromEntries(Object.entries(f.refusedBids).sort(([a], [b]) => (a < b ? -1 : 1))),
      late: f.lateBids,
      peersWithoutTerms: f.peersWithoutTerms,
    },
    offloadAttempts: f.offloadAttempts,
    offloadsServed: f.offloadsServed,
    offloadedShare: round(sim.collector.ok === 0 ? 0 : f.offloadsServed / sim.collector.ok, 4),
    peerFailures: f.peerFailures,
    bidMismatches: f.bidMismatches,
    offloadFeeMsat: f.offloadFeeMsat,
    auctionMs: q3(f.auctionMs),
    latencyMs: { local: q3(f.localLatencyMs), offloaded: q3(f.offloadedLatencyMs) },
    invariants: { reoffloads: f.reoffloads, offloadOverBid: f.offloadOverBid },
    routers: sim.routers.map((r) => ({
      index: r.index,
      nodes: r.nodeCount,
      requests: r.requests,
      ...r.fed,
    })),
    offloadedPerBucket: [...f.offloadedPerBucket],
  };
}

function groupReports(sim: Simulation): GroupReport[] {
  const totalServed = Math.max(
    1,
    sim.nodes.reduce((s, n) => s + n.served, 0),
  );
  return sim.groups.map((g) => {
    const served = g.nodes.reduce((s, n) => s + n.served, 0);
    const earnings = g.nodes.reduce((s, n) => s + n.earningsMsat, 0);
    const busy = g.nodes.reduce((s, n) => s + n.busyInRunSlotMs, 0);
    return {
      group: g.spec.group,
      nodes: g.nodes.length,
      models: new Set(g.nodes.map((n) => n.offer.id)).size,
      inputMsatPer1k: median(g.nodes.map((n) => n.offer.price.input_msat_per_1k)),
      outputMsatPer1k: median(g.nodes.map((n) => n.offer.price.output_msat_per_1k)),
      served,
      trafficShare: round(served / totalServed, 4),
      trafficSharePerNode: round(served / totalServed / g.nodes.length, 6),
      utilisation: round(busy / (sim.durationMs * g.spec.capacity.maxConcurrency * g.nodes.length), 4),
      failed: g.nodes.reduce((s, n) => s + n.failed, 0),
      refused: g.nodes.reduce((s, n) => s + n.refused, 0),
      earningsMsat: earnings,
      earningsPerNodeMsat: Math.floor(earnings / g.nodes.length),
      unpaidWorkMsat: g.nodes.reduce((s, n) => s + n.unpaidWorkMsat, 0),
    };
  });
}

function nodeReports(sim: Simulation): NodeReport[] {
  const totalServed = Math.max(
    1,
    sim.nodes.reduce((s, n) => s + n.served, 0),
  );
  const chosen =
    sim.nodes.length <= 200
      ? sim.nodes
      : [...sim.nodes].sort((a, b) => b.served - a.served || (a.id < b.id ? -1 : 1)).slice(0, 20);
  return chosen.map((n) => ({
    id: n.id,
    group: n.group.spec.group,
    outputMsatPer1k: n.offer.price.output_msat_per_1k,
    served: n.served,
    trafficShare: round(n.served / totalServed, 5),
    utilisation: round(utilisationOf(n, sim.durationMs), 4),
    earningsMsat: n.earningsMsat,
    failed: n.failed,
    refused: n.refused,
  }));
}

function utilisationCurve(sim: Simulation): number[] {
  const sorted = sim.nodes.map((n) => utilisationOf(n, sim.durationMs)).sort((a, b) => b - a);
  const points = Math.min(200, sorted.length);
  return Array.from({ length: points }, (_, i) =>
    round(sorted[Math.floor((i * sorted.length) / points)]!, 4),
  );
}

function timeline(sim: Simulation): TimelinePoint[] {
  const c = sim.collector;
  const slots = sim.nodes.reduce((s, n) => s + n.group.spec.capacity.maxConcurrency, 0);
  return c.buckets.map((b, i) => ({
    tS: round(((i + 1) * c.bucketMs) / 1000, 1),
    arrivals: b.arrivals,
    ok: b.ok,
    failed: b.failed,
    failovers: b.failovers,
    clientRetries: b.clientRetries,
    routerFeeMsat: b.routerFeeMsat,
    latencyMs: q3(b.latencyMs),
    paidOutputMsatPer1k: {
      p50: round(b.paidOutputPrice.quantile(0.5), 1),
      p90: round(b.paidOutputPrice.quantile(0.9), 1),
    },
    listedOutputMsatPer1k: b.listedOutputPrice,
    utilisation: round(b.busySlotMs / (slots * c.bucketMs), 4),
  }));
}
