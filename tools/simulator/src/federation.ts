// Federation on the virtual clock: a router that cannot serve a request locally (MODEL_NOT_FOUND,
// NO_ELIGIBLE_NODE, PRICE_TOO_HIGH) sends a request for bids to its peers, each peer bids from its
// own node views, the origin checks and ranks the bids, reserves, and offloads to the winners in
// turn; the winner serves through its own router state (leases, breaker, in-flight). The decisions
// are the router's real auction core (rfbFor, bidTermsFor, checkBid, rankBids, withinPrice); what
// is restated is only the transport (relay and HTTP latency) and the bid's id, endpoint and expiry
// (bidder.ts' bidFor), and the peer route's BID_MISMATCH check (offload-route.ts).
import { maxCostMsat, offloadFeeMsat, type Rfb } from '@fed-ai/protocol';
import {
  type BidRefusal,
  bidTermsFor,
  checkBid,
  promptTextTokensBound,
  type ReceivedBid,
  rankBids,
  rfbFor,
  withinPrice,
} from '@fed-ai/router/federation/auction-core';
import type { Simulation } from './engine';
import { chargeOf } from './money';
import { lognormal, type Rng } from './prng';
import type { FederationSpec } from './scenario';
import type { SimRouter } from './sim-router';
import { addMsat, Histogram } from './stats';
import type { Job, Req } from './world';

/** The local refusals runChat hands to ctx.offload. */
export const OFFLOADABLE: ReadonlySet<string> = new Set([
  'MODEL_NOT_FOUND',
  'NO_ELIGIBLE_NODE',
  'PRICE_TOO_HIGH',
]);
/** bidder.ts' BID_TTL_S. */
const BID_TTL_S = 60;

/** One try's offload: the ranked bids, the one being tried and the peer serving it. */
export interface OffloadLeg {
  origin: SimRouter;
  rfb: Rfb;
  bids: ReceivedBid[];
  next: number;
  bid: ReceivedBid;
  peer: SimRouter;
  /** The peer's own reservation (runChat at the peer) for the current attempt. */
  peerReservedMsat: number;
  attemptStartMs: number;
  rttMs: number;
}

interface Auction {
  req: Req;
  origin: SimRouter;
  rfb: Rfb;
  expected: number;
  accepted: ReceivedBid[];
  seen: Set<string>;
  refused: number;
  closed: boolean;
  startMs: number;
}

export type RefusalCounts = Partial<Record<BidRefusal, number>>;

/** Run-wide federation measurements (bounded: counters and histograms). */
export class FederationStats {
  readonly auctionMs = new Histogram();
  readonly offloadedLatencyMs = new Histogram();
  readonly localLatencyMs = new Histogram();
  readonly refusedBids: RefusalCounts = {};
  /** The local refusal stood: no allowed peer announces the model. */
  noPeerAnnounces = 0;
  bidsSent = 0;
  bidsAccepted = 0;
  lateBids = 0;
  /** A peer that was asked had no eligible node (bidTermsFor gave null). */
  peersWithoutTerms = 0;
  offloadAttempts = 0;
  offloadsServed = 0;
  peerFailures = 0;
  /** The peer refused the job: max_tokens above the bid's (offload-route's BID_MISMATCH). */
  bidMismatches = 0;
  offloadFeeMsat = 0;
  /** An auction started for a request that was already offloaded (must stay 0). */
  reoffloads = 0;
  /** A peer's signed cost, tokens or price outside its bid (the origin would refuse it; must stay 0). */
  offloadOverBid = 0;
  readonly offloadedPerBucket: number[];

  constructor(buckets: number) {
    this.offloadedPerBucket = Array.from({ length: buckets }, () => 0);
  }
}

export class Federation {
  readonly stats: FederationStats;
  private readonly peersByRouter: SimRouter[][];
  private readonly byPubkey = new Map<string, SimRouter>();
  private readonly misbids = new Map<string, 'inflateBound' | 'foreignEndpoint'>();

  constructor(
    private readonly sim: Simulation,
    readonly spec: FederationSpec,
    private readonly rng: Rng,
  ) {
    const routers = sim.routers;
    this.stats = new FederationStats(sim.collector.buckets.length);
    for (const r of routers) this.byPubkey.set(r.pubkey, r);
    for (const m of spec.misbidders) {
      const router = routers[m.router];
      if (router) this.misbids.set(router.pubkey, m.kind);
    }
    this.peersByRouter = routers.map((r) => peersOf(r.index, routers, spec.peers));
  }

  /** runChat's offload branch: auction among the allowed peers that announce the model. */
  startAuction(req: Req, localCode: string): void {
    const sim = this.sim;
    const origin = req.router;
    if (req.offload) {
      this.stats.reoffloads += 1;
      sim.endTry(req, localCode, null);
      return;
    }
    const peers = this.peersByRouter[origin.index]!.filter((p) => p.announces(req.model));
    if (peers.length === 0) {
      this.stats.noPeerAnnounces += 1;
      sim.endTry(req, localCode, null);
      return;
    }
    req.auctionsInTry += 1;
    origin.fed.auctions += 1;
    const rfb = rfbFor(
      `rfb-${req.id}-${req.tries}`,
      req.params,
      req.client.provider,
      this.spec.auctionWindowMs,
    );
    const auction: Auction = {
      req,
      origin,
      rfb,
      expected: peers.length,
      accepted: [],
      seen: new Set(),
      refused: 0,
      closed: false,
      startMs: sim.nowMs,
    };
    for (const peer of peers) {
      const rttMs = lognormal(this.rng, this.spec.rfbRttMs.median, this.spec.rfbRttMs.sigma);
      sim.queue.at(sim.nowMs + rttMs / 2, () => this.bidAt(auction, peer, rttMs / 2));
    }
    sim.queue.at(sim.nowMs + this.spec.auctionWindowMs, () => this.close(auction));
  }

  /** The RFB reaches a peer: it bids from its own serving nodes (bidder.ts' onRfb). */
  private bidAt(auction: Auction, peer: SimRouter, backMs: number): void {
    const sim = this.sim;
    const terms = bidTermsFor(auction.rfb, peer.views(auction.rfb.model, sim.nowMs));
    if (!terms) {
      this.stats.peersWithoutTerms += 1;
      return;
    }
    const honest = {
      rfb_id: auction.rfb.rfb_id,
      bid_id: `bid-${peer.index}-${auction.rfb.rfb_id}`,
      ...terms,
      endpoint: peer.endpoint,
      expires_at: Math.floor(sim.nowMs / 1000) + BID_TTL_S,
    };
    const bid = this.misbid(peer, auction.rfb, honest);
    this.stats.bidsSent += 1;
    sim.queue.at(sim.nowMs + backMs, () => this.receive(auction, { bidder: peer.pubkey, bid }));
  }

  /** A misbidding router's bid: a cost bound one msat over the honest one, or a foreign endpoint. */
  private misbid(peer: SimRouter, rfb: Rfb, bid: ReceivedBid['bid']): ReceivedBid['bid'] {
    const kind = this.misbids.get(peer.pubkey);
    if (kind === 'foreignEndpoint') return { ...bid, endpoint: `http://elsewhere-${peer.index}.sim/offload` };
    if (kind === 'inflateBound') {
      const tokens = Math.min(rfb.max_tokens, bid.max_tokens);
      const bound = maxCostMsat(rfb.prompt_tokens + this.spec.maxOverheadTokens, tokens, bid.price);
      return { ...bid, max_cost_msat: bound + 1 };
    }
    return bid;
  }

  /** A bid reaches the origin: checkBid, then it counts (runAuction's take). */
  private receive(auction: Auction, received: ReceivedBid): void {
    if (auction.closed) {
      this.stats.lateBids += 1;
      return;
    }
    if (auction.accepted.length >= this.spec.maxBids) return;
    const peers = this.peersByRouter[auction.origin.index]!;
    const refusal = checkBid(received, auction.rfb, {
      nowS: Math.floor(this.sim.nowMs / 1000),
      mayPeer: (pubkey) => peers.some((p) => p.pubkey === pubkey),
      announcedEndpoint: (pubkey) => this.byPubkey.get(pubkey)?.endpoint,
      seenBidders: auction.seen,
      maxOverheadTokens: this.spec.maxOverheadTokens,
    });
    if (refusal) {
      this.stats.refusedBids[refusal] = (this.stats.refusedBids[refusal] ?? 0) + 1;
      auction.refused += 1;
    } else {
      auction.seen.add(received.bidder);
      auction.accepted.push(received);
      this.stats.bidsAccepted += 1;
    }
    if (auction.accepted.length >= auction.expected) this.close(auction);
  }

  /** The window closed (or every peer bid): rank, reserve, offload to the best bid. */
  private close(auction: Auction): void {
    if (auction.closed) return;
    auction.closed = true;
    const sim = this.sim;
    const { req, origin, rfb } = auction;
    this.stats.auctionMs.add(sim.nowMs - auction.startMs);
    const ranked = rankBids(
      auction.accepted,
      rfb,
      req.client.provider,
      (p) => origin.peerRecord(p),
      origin.rng,
    )
      .slice(0, sim.scenario.routers.maxAttempts)
      .map((r) => r.received);
    if (ranked.length === 0) {
      if (auction.refused > 0) origin.fed.allRefused += 1;
      else origin.fed.noBids += 1;
      sim.endTry(req, 'NO_PEER_BID', null);
      return;
    }
    origin.fed.won += 1;
    const feeBps = this.spec.offloadFeeBps;
    const bound = Math.max(
      ...ranked.map((b) => b.bid.max_cost_msat + offloadFeeMsat(b.bid.max_cost_msat, feeBps)),
    );
    if (!sim.hold(req, bound)) {
      sim.endTry(req, 'INSUFFICIENT_BALANCE', null);
      return;
    }
    const first = ranked[0]!;
    req.offload = {
      origin,
      rfb,
      bids: ranked,
      next: 0,
      bid: first,
      peer: this.byPubkey.get(first.bidder)!,
      peerReservedMsat: 0,
      attemptStartMs: sim.nowMs,
      rttMs: 0,
    };
    this.tryNextBid(req);
  }

  /** offload-chat's tryBids: the next ranked bid, one round trip to its peer. */
  private tryNextBid(req: Req): void {
    const leg = req.offload!;
    const sim = this.sim;
    req.router = leg.origin;
    const received = leg.bids[leg.next++];
    if (!received) {
      sim.endTry(req, 'PEER_FAILED', null);
      return;
    }
    leg.bid = received;
    leg.peer = this.byPubkey.get(received.bidder)!;
    leg.attemptStartMs = sim.nowMs;
    leg.rttMs = lognormal(this.rng, this.spec.offloadRttMs.median, this.spec.offloadRttMs.sigma);
    leg.origin.fed.offloadsOut += 1;
    this.stats.offloadAttempts += 1;
    sim.queue.at(sim.nowMs + leg.rttMs / 2, () => this.serveAtPeer(req));
  }

  /** The job reaches the peer: offload-route's checks, then runChat there (allowOffload: false). */
  private serveAtPeer(req: Req): void {
    const sim = this.sim;
    const leg = req.offload!;
    const peer = leg.peer;
    peer.fed.offloadsIn += 1;
    const { rfb, bid } = { rfb: leg.rfb, bid: leg.bid.bid };
    if (
      req.params.model !== rfb.model ||
      req.params.messages.length !== rfb.messages ||
      promptTextTokensBound(req.params.messages) > rfb.prompt_tokens ||
      req.params.max_tokens > bid.max_tokens
    ) {
      this.stats.bidMismatches += 1;
      this.peerFailed(req, false);
      return;
    }
    req.router = peer;
    req.next = 0;
    req.attempts = 0;
    req.lastCode = null;
    const outcome = peer.rank(
      {
        model: req.model,
        promptTokens: req.estimateTokens,
        maxTokens: req.params.max_tokens,
        provider: { max_price: bid.price },
      },
      sim.nowMs,
    );
    if (!outcome.ok) {
      this.peerFailed(req, false);
      return;
    }
    req.ranked = outcome.ranked;
    leg.peerReservedMsat = sim.reservations.reservation(req.ranked, req.params);
    sim.dispatchNext(req);
  }

  /** The peer's answer failed: before the first token the next bid is tried, after it never. */
  peerFailed(req: Req, afterOutput: boolean): void {
    const sim = this.sim;
    const leg = req.offload!;
    this.stats.peerFailures += 1;
    leg.origin.recordPeerOutcome(leg.peer.pubkey, { ok: false });
    sim.queue.at(sim.nowMs + leg.rttMs / 2, () => {
      if (afterOutput) {
        req.router = leg.origin;
        sim.endTry(req, 'PEER_FAILED', null);
      } else this.tryNextBid(req);
    });
  }

  /** The peer's node answered: the peer's capture, the result back, the origin's verification and charge. */
  served(job: Job, ttftAtPeerMs: number): void {
    const sim = this.sim;
    const req = job.req;
    const leg = req.offload!;
    const bid = leg.bid.bid;
    const charge = chargeOf(req.promptTokens, job.outTokens, job.price, sim.scenario.routers.feeBps);
    if (
      charge.costMsat > bid.max_cost_msat ||
      job.outTokens > bid.max_tokens ||
      !withinPrice(job.price, bid.price)
    )
      this.stats.offloadOverBid += 1;
    sim.queue.at(sim.nowMs + leg.rttMs / 2, () => {
      req.router = leg.origin;
      const feeMsat = offloadFeeMsat(charge.costMsat, this.spec.offloadFeeBps);
      leg.origin.recordPeerOutcome(leg.peer.pubkey, { ok: true, latencyMs: sim.nowMs - leg.attemptStartMs });
      sim.settleOffload(job, charge, feeMsat);
      leg.origin.fed.offloadFeeMsat = addMsat(leg.origin.fed.offloadFeeMsat, feeMsat);
      leg.origin.fed.servedByPeers += 1;
      leg.peer.fed.peerWorkFeeMsat = addMsat(leg.peer.fed.peerWorkFeeMsat, charge.routerMsat);
      leg.peer.fed.servedForPeers += 1;
      this.stats.offloadFeeMsat = addMsat(this.stats.offloadFeeMsat, feeMsat);
      this.stats.offloadsServed += 1;
      this.stats.offloadedPerBucket[
        Math.min(this.stats.offloadedPerBucket.length - 1, Math.floor(sim.nowMs / sim.collector.bucketMs))
      ]! += 1;
      sim.collector.ttftMs.add(ttftAtPeerMs + leg.rttMs / 2);
      sim.endTry(req, 'OK', job);
    });
  }
}

/** The peer policy: every other router, or the next `count` in ring order. */
function peersOf(index: number, routers: readonly SimRouter[], policy: FederationSpec['peers']): SimRouter[] {
  const others = routers.length - 1;
  const count = policy === 'all' ? others : Math.min(others, policy.count);
  return Array.from({ length: count }, (_, k) => routers[(index + 1 + k) % routers.length]!);
}
