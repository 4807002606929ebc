// The bidding side of the auction: listens for requests for bids (kind 28100) from admitted
// peers, bids from this router's own serving nodes (kind 28101, addressed to the requester), and
// remembers its open bids so that an offload job can only claim a bid it was given.
import { randomUUID } from 'node:crypto';
import { type Bid, createEnvelope, KIND, type ReplayStore, type Rfb, verifyEnvelope } from '@fed-ai/protocol';
import type { Registry } from '../registry';
import { type BidTerms, bidTermsFor } from './auction-core';
import type { RelayBus } from './bus';

export interface OpenBid {
  peer: string;
  rfb: Rfb;
  bid: Bid;
  used: boolean;
}

const BID_TTL_S = 60;
const MAX_RFB_BYTES = 8_192;

/** Open bids by id, bounded (the oldest go first) and expiring. */
export class OpenBids {
  private readonly bids = new Map<string, OpenBid>();
  constructor(private readonly max = 10_000) {}

  add(open: OpenBid): void {
    if (this.bids.size >= this.max) this.bids.delete(this.bids.keys().next().value!);
    this.bids.set(open.bid.bid_id, open);
  }

  /** The bid `peer` may claim now, marked used (one job per bid), or why not. */
  claim(bidId: string, peer: string, nowS: number): OpenBid | 'UNKNOWN_BID' | 'BID_EXPIRED' | 'BID_USED' {
    const open = this.bids.get(bidId);
    if (!open || open.peer !== peer) return 'UNKNOWN_BID';
    if (open.bid.expires_at <= nowS) {
      this.bids.delete(bidId);
      return 'BID_EXPIRED';
    }
    if (open.used) return 'BID_USED';
    open.used = true;
    return open;
  }

  get size(): number {
    return this.bids.size;
  }
}

export interface BidderOptions {
  bus: RelayBus;
  secretKey: Uint8Array;
  pubkey: string;
  registry: Registry;
  /** Where peers send offload jobs (this router's announced URL + /v1/federation/offload). */
  offloadEndpoint: string;
  /** Policy and per-pubkey rate budget: may this key ask us for bids now? */
  admit: (pubkey: string) => boolean;
  replayStore: ReplayStore;
  bids: OpenBids;
  /** Whether this router takes offloaded work at all right now. */
  accepting?: () => boolean;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
  nowS?: () => number;
}

export function startBidder(options: BidderOptions): { close(): void } {
  const nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
  return options.bus.subscribe([{ kinds: [KIND.rfb], since: nowS() - 5 }], (event) => {
    void onRfb(options, event, nowS()).catch((error: unknown) =>
      options.log.warn({ err: error }, 'bid not sent'),
    );
  });
}

async function onRfb(options: BidderOptions, event: unknown, nowS: number): Promise<void> {
  const author = (event as { pubkey?: unknown } | null)?.pubkey;
  // Cheap refusals first: our own RFBs, keys we do not serve, keys over their budget.
  if (typeof author !== 'string' || author === options.pubkey) return;
  if (!options.admit(author)) return;
  if (options.accepting && !options.accepting()) return;
  const verified = await verifyEnvelope(event, {
    me: null,
    kinds: [KIND.rfb],
    replayStore: options.replayStore,
    maxBytes: MAX_RFB_BYTES,
  });
  if (!verified.ok) return;
  const rfb = verified.payload;
  const terms = bidTermsFor(rfb, options.registry.views(rfb.model));
  if (!terms) return;
  const bid = bidFor(rfb, terms, options.offloadEndpoint, nowS);
  options.bids.add({ peer: author, rfb, bid, used: false });
  const envelope = createEnvelope(
    KIND.bid,
    bid,
    { audience: author, expiresInS: BID_TTL_S, tags: [['e', verified.envelope.id]] },
    options.secretKey,
  );
  await options.bus.publish(envelope);
  options.log.info({ rfb: rfb.rfb_id, peer: author, model: rfb.model }, 'bid sent');
}

function bidFor(rfb: Rfb, terms: BidTerms, endpoint: string, nowS: number): Bid {
  return {
    rfb_id: rfb.rfb_id,
    bid_id: `bid-${randomUUID()}`,
    ...terms,
    endpoint,
    expires_at: nowS + BID_TTL_S,
  };
}
