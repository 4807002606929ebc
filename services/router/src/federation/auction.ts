// The requesting side of the auction: publish a request for bids (kind 28100: model, token bound,
// ceiling, deadline; never the prompt), collect signed bids addressed to us that reference it, and
// stop at the deadline or as soon as every peer we expect has answered. Each bid is verified
// (signature, audience, expiry, replay) and checked (checkBid) before it counts.
import {
  createEnvelope,
  FedAiError,
  KIND,
  type ReplayStore,
  type Rfb,
  verifyEnvelope,
} from '@fed-ai/protocol';
import { type BidRefusal, checkBid, type ReceivedBid } from './auction-core';
import type { RelayBus } from './bus';

const MAX_BID_BYTES = 8_192;
/** At most this many bids are considered per auction; the rest are ignored. */
const MAX_BIDS = 64;

/**
 * One subscription for every bid addressed to this router; each open auction registers for the
 * bids that reference its RFB (by `e` tag). Bids for no open auction are dropped unread.
 */
export class BidInbox {
  private readonly open = new Map<string, (event: unknown) => void>();
  private readonly closer: { close(): void };

  constructor(
    bus: RelayBus,
    pubkey: string,
    private readonly maxOpen = 1_000,
  ) {
    this.closer = bus.subscribe(
      [{ kinds: [KIND.bid], '#p': [pubkey], since: Math.floor(Date.now() / 1000) - 5 }],
      (event) => {
        const ref = event.tags.find((t) => t[0] === 'e')?.[1];
        if (ref) this.open.get(ref)?.(event);
      },
    );
  }

  register(rfbEventId: string, onBid: (event: unknown) => void): () => void {
    if (this.open.size >= this.maxOpen) throw new FedAiError('OVERLOADED', 'too many auctions open');
    this.open.set(rfbEventId, onBid);
    return () => this.open.delete(rfbEventId);
  }

  close(): void {
    this.closer.close();
    this.open.clear();
  }
}

export interface AuctionDeps {
  bus: RelayBus;
  inbox: BidInbox;
  secretKey: Uint8Array;
  pubkey: string;
  replayStore: ReplayStore;
  mayPeer: (pubkey: string) => boolean;
  announcedEndpoint: (pubkey: string) => string | undefined;
  /** Largest chat-template overhead (tokens) a bid's cost bound may include. */
  maxOverheadTokens: number;
  nowS?: () => number;
}

export interface AuctionOutcome {
  rfbEventId: string;
  bids: ReceivedBid[];
  refused: Partial<Record<BidRefusal | 'UNVERIFIED', number>>;
  /** Time from publishing the RFB to the end of collection. */
  elapsedMs: number;
}

export async function runAuction(
  deps: AuctionDeps,
  rfb: Rfb,
  options: { expectedBidders?: number; signal?: AbortSignal } = {},
): Promise<AuctionOutcome> {
  const nowS = deps.nowS ?? (() => Math.floor(Date.now() / 1000));
  const rfbEvent = createEnvelope(
    KIND.rfb,
    rfb,
    { expiresInS: Math.max(1, Math.ceil(rfb.deadline_ms / 1000) + 1) },
    deps.secretKey,
  );
  const bids: ReceivedBid[] = [];
  const seen = new Set<string>();
  const refused: AuctionOutcome['refused'] = {};
  const count = (reason: BidRefusal | 'UNVERIFIED') => {
    refused[reason] = (refused[reason] ?? 0) + 1;
  };
  let finish: () => void = () => {};
  const done = new Promise<void>((resolve) => {
    finish = resolve;
  });
  let pending = 0;
  const take = async (event: unknown) => {
    const verified = await verifyEnvelope(event, {
      me: deps.pubkey,
      kinds: [KIND.bid],
      replayStore: deps.replayStore,
      maxBytes: MAX_BID_BYTES,
    });
    if (!verified.ok || !verified.envelope.tags.some((t) => t[0] === 'e' && t[1] === rfbEvent.id)) {
      count('UNVERIFIED');
      return;
    }
    const received = { bidder: verified.envelope.pubkey, bid: verified.payload };
    const refusal = checkBid(received, rfb, {
      nowS: nowS(),
      mayPeer: deps.mayPeer,
      announcedEndpoint: deps.announcedEndpoint,
      seenBidders: seen,
      maxOverheadTokens: deps.maxOverheadTokens,
    });
    if (refusal) {
      count(refusal);
      return;
    }
    seen.add(received.bidder);
    bids.push(received);
  };
  const unregister = deps.inbox.register(rfbEvent.id, (event) => {
    if (bids.length + pending >= MAX_BIDS) return;
    pending++;
    void take(event).finally(() => {
      pending--;
      if (options.expectedBidders !== undefined && bids.length >= options.expectedBidders) finish();
    });
  });
  const startedAt = performance.now();
  const timer = setTimeout(finish, rfb.deadline_ms);
  try {
    options.signal?.addEventListener('abort', finish, { once: true });
    await deps.bus.publish(rfbEvent);
    await done;
  } finally {
    clearTimeout(timer);
    unregister();
  }
  return { rfbEventId: rfbEvent.id, bids, refused, elapsedMs: performance.now() - startedAt };
}
