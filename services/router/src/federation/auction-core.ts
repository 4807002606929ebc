// The auction's decisions, pure: what an RFB says about a request (never the prompt), what a
// bidder may honestly bid for it, whether a received bid is acceptable, and how bids are ranked —
// by the same scheduler core as local nodes (price, latency, throughput, load, trust).
import {
  type Bid,
  type ChatMessage,
  type ModelOffer,
  maxCostMsat,
  type Price,
  type ProviderPrefs,
  promptOverheadOf,
  type Rfb,
  textTokensBound,
} from '@fed-ai/protocol';
import { schedule, weightsFor } from '../scheduler';
import type { NodeView, RankedCandidate } from '../scheduler-types';

/** A sound bound on the prompt's text tokens, before any chat template adds its own. */
export function promptTextTokensBound(messages: readonly Pick<ChatMessage, 'content' | 'name'>[]): number {
  return messages.reduce((sum, m) => sum + textTokensBound(m.content) + textTokensBound(m.name ?? ''), 0);
}

export function rfbFor(
  rfbId: string,
  params: { model: string; messages: readonly ChatMessage[]; max_tokens: number },
  provider: ProviderPrefs | undefined,
  deadlineMs: number,
): Rfb {
  return {
    rfb_id: rfbId,
    model: params.model,
    prompt_tokens: promptTextTokensBound(params.messages),
    messages: params.messages.length,
    max_tokens: params.max_tokens,
    ...(provider?.max_price ? { max_price: provider.max_price } : {}),
    deadline_ms: deadlineMs,
  };
}

/** Whether a price is within a ceiling whose components may each be absent (no limit). */
export function withinPrice(price: Price, ceiling: Rfb['max_price']): boolean {
  if (!ceiling) return true;
  const { input_msat_per_1k: input, output_msat_per_1k: output } = ceiling;
  return (
    (input === undefined || price.input_msat_per_1k <= input) &&
    (output === undefined || price.output_msat_per_1k <= output)
  );
}

/** The most this offer can cost for the RFB's request (its own template overhead added). */
export function offerMaxCostMsat(rfb: Rfb, offer: ModelOffer): number {
  const overhead = promptOverheadOf(offer);
  const promptBound = rfb.prompt_tokens + overhead.fixed_tokens + overhead.per_message_tokens * rfb.messages;
  return maxCostMsat(promptBound, rfb.max_tokens, offer.price, offer.max_output_tokens);
}

export type BidTerms = Omit<Bid, 'rfb_id' | 'bid_id' | 'endpoint' | 'expires_at'>;

/**
 * What this router can bid for an RFB from its own serving nodes, or null. The price is the
 * component-wise highest of every node it may dispatch to, and the cost bound the highest of
 * theirs, so whichever node serves, its signed metering stays within the bid.
 */
export function bidTermsFor(rfb: Rfb, views: readonly NodeView[]): BidTerms | null {
  const eligible = views.filter(
    (v) =>
      v.freeSlots > 0 &&
      withinPrice(v.offer.price, rfb.max_price) &&
      v.offer.context_window >= rfb.prompt_tokens + Math.min(rfb.max_tokens, v.offer.max_output_tokens),
  );
  if (eligible.length === 0) return null;
  const max = (f: (v: NodeView) => number) => Math.max(...eligible.map(f));
  const ttfts = eligible.map((v) => v.stats.ttftMs).filter((t): t is number => t !== undefined);
  const rates = eligible.map((v) => v.stats.tokensPerS).filter((t): t is number => t !== undefined);
  return {
    price: {
      input_msat_per_1k: max((v) => v.offer.price.input_msat_per_1k),
      output_msat_per_1k: max((v) => v.offer.price.output_msat_per_1k),
    },
    max_cost_msat: max((v) => offerMaxCostMsat(rfb, v.offer)),
    max_tokens: Math.min(
      rfb.max_tokens,
      max((v) => v.offer.max_output_tokens),
    ),
    context_window: max((v) => v.offer.context_window),
    free_slots: eligible.reduce((n, v) => n + v.freeSlots, 0),
    ttft_ms_estimate: Math.round(ttfts.length > 0 ? Math.min(...ttfts) : 1_000),
    tokens_per_s_estimate: rates.length > 0 ? Math.max(...rates) : 0,
  };
}

export type BidRefusal =
  | 'OTHER_RFB'
  | 'EXPIRED'
  | 'OVER_CEILING'
  | 'ENDPOINT'
  | 'NOT_A_PEER'
  | 'DUPLICATE'
  | 'OVER_BOUND';

/** A verified bid event: signer and content. */
export interface ReceivedBid {
  bidder: string;
  bid: Bid;
}

/**
 * Whether a (signature-verified) bid may enter the ranking. The endpoint must be the one the
 * bidder announced (no bid can point us at another host), and the cost bound must be honest for
 * the bid's own price: a bid cannot reserve more of the client's money than its price implies
 * with the largest template overhead we accept.
 */
export function checkBid(
  received: ReceivedBid,
  rfb: Rfb,
  context: {
    nowS: number;
    mayPeer: (pubkey: string) => boolean;
    announcedEndpoint: (pubkey: string) => string | undefined;
    seenBidders: ReadonlySet<string>;
    maxOverheadTokens: number;
  },
): BidRefusal | null {
  const { bid, bidder } = received;
  if (bid.rfb_id !== rfb.rfb_id) return 'OTHER_RFB';
  if (bid.expires_at <= context.nowS) return 'EXPIRED';
  if (!context.mayPeer(bidder)) return 'NOT_A_PEER';
  if (context.seenBidders.has(bidder)) return 'DUPLICATE';
  if (!withinPrice(bid.price, rfb.max_price)) return 'OVER_CEILING';
  if (context.announcedEndpoint(bidder) !== bid.endpoint) return 'ENDPOINT';
  const honestBound = maxCostMsat(
    rfb.prompt_tokens + context.maxOverheadTokens,
    Math.min(rfb.max_tokens, bid.max_tokens),
    bid.price,
  );
  if (bid.max_cost_msat > honestBound) return 'OVER_BOUND';
  return null;
}

/** What we know of a peer's record (reputation) for scoring. */
export interface PeerRecord {
  trust: number;
  successRate: number;
  latencyMs?: number | undefined;
}

/** A bid as a scheduler view: the peer competes like a node, on the same terms. */
function bidView(received: ReceivedBid, model: string, peer: PeerRecord): NodeView {
  const { bid } = received;
  return {
    id: received.bidder,
    endpoint: bid.endpoint,
    offer: {
      id: model,
      context_window: bid.context_window,
      max_output_tokens: bid.max_tokens,
      price: bid.price,
    },
    maxConcurrency: Math.max(1, bid.free_slots),
    freeSlots: bid.free_slots,
    stats: {
      ttftMs: peer.latencyMs ?? bid.ttft_ms_estimate,
      ...(bid.tokens_per_s_estimate > 0 ? { tokensPerS: bid.tokens_per_s_estimate } : {}),
      successRate: peer.successRate,
    },
    trust: peer.trust,
  };
}

/** Bids ranked best first, each with the bid it came from. */
export function rankBids(
  bids: readonly ReceivedBid[],
  rfb: Rfb,
  provider: ProviderPrefs | undefined,
  peerRecord: (pubkey: string) => PeerRecord,
  rng: () => number,
): { candidate: RankedCandidate; received: ReceivedBid }[] {
  const byBidder = new Map(bids.map((b) => [b.bidder, b]));
  const views = bids.map((b) => bidView(b, rfb.model, peerRecord(b.bidder)));
  // The prompt's context filter already happened at each bidder (it knows its template).
  const result = schedule({ model: rfb.model, promptTokens: 0, maxTokens: rfb.max_tokens }, views, {
    weights: weightsFor(provider?.sort),
    rng,
  });
  return result.ranked.map((candidate) => {
    const received = byBidder.get(candidate.node.id)!;
    return { candidate: { ...candidate, maxCostMsat: received.bid.max_cost_msat }, received };
  });
}
