// A chat request served by a peer router, when no local node can serve it: auction, reserve the
// client's money for the costliest acceptable bid plus the offload fee, fund our tab at the
// winner, offload, verify, and charge the peer's signed cost plus the fee. A winner that fails
// before the first token is followed by the next bid; every outcome feeds the peer's reputation.
import { randomUUID } from 'node:crypto';
import { createEnvelope, FedAiError, KIND, offloadFeeMsat, type ReplayStore } from '@fed-ai/protocol';
import type { Dispatcher as UndiciDispatcher } from 'undici';
import type { ChatOutcome, ChatRequest } from '../chat';
import type { Payments } from '../payments';
import type { SpendHold } from '../spend-budget';
import { type BidInbox, runAuction } from './auction';
import { type PeerRecord, type ReceivedBid, rankBids, rfbFor } from './auction-core';
import type { RelayBus } from './bus';
import { isRetryable, OffloadError, type OffloadServed, offloadOnce } from './offload-client';
import type { PeerTabs } from './peer-tabs';

export interface PeerDirectory {
  mayPeer(pubkey: string): boolean;
  /** The offload endpoint a peer announced (its router URL + /v1/federation/offload). */
  offloadEndpoint(pubkey: string): string | undefined;
  /** The peer's router base URL (for its tab routes). */
  routerUrl(pubkey: string): string | undefined;
  record(pubkey: string): PeerRecord;
  /** Peers announcing this model: how many bids to wait for at most. */
  expectedBidders(model: string): number;
  recordOutcome(pubkey: string, outcome: { ok: boolean; latencyMs?: number }): void;
}

export interface OffloadDeps {
  bus: RelayBus;
  inbox: BidInbox;
  secretKey: Uint8Array;
  pubkey: string;
  replayStore: ReplayStore;
  peers: PeerDirectory;
  tabs: PeerTabs;
  payments: Payments;
  /** Fee on the peer's cost, as the local settlement charges it. */
  offloadFeeBps: number;
  auctionWindowMs: number;
  maxAttempts: number;
  timeouts: { firstTokenMs: number; totalMs: number };
  maxOverheadTokens: number;
  agent?: UndiciDispatcher | undefined;
  rng?: () => number;
  log: { info: (o: object, m: string) => void; warn: (o: object, m: string) => void };
}

/** The most a client can be charged for a bid: its cost bound plus the fee on that bound. */
const bidChargeBoundMsat = (bidMaxCostMsat: number, feeBps: number): number =>
  bidMaxCostMsat + offloadFeeMsat(bidMaxCostMsat, feeBps);

export async function offloadChat(
  deps: OffloadDeps,
  req: ChatRequest,
  localError: FedAiError,
): Promise<ChatOutcome> {
  const params = req.params;
  // No peer announces the model: the local answer stands (no auction window for a typo).
  const expectedBidders = deps.peers.expectedBidders(params.model);
  if (expectedBidders === 0) throw localError;
  const dispatchId = `rq-${randomUUID()}`;
  const rfb = rfbFor(`rfb-${randomUUID()}`, params, req.provider, deps.auctionWindowMs);
  const auction = await runAuction(
    {
      bus: deps.bus,
      inbox: deps.inbox,
      secretKey: deps.secretKey,
      pubkey: deps.pubkey,
      replayStore: deps.replayStore,
      mayPeer: (p) => deps.peers.mayPeer(p),
      announcedEndpoint: (p) => deps.peers.offloadEndpoint(p),
      maxOverheadTokens: deps.maxOverheadTokens,
    },
    rfb,
    { expectedBidders, signal: req.signal },
  );
  const ranked = rankBids(
    auction.bids,
    rfb,
    req.provider,
    (p) => deps.peers.record(p),
    deps.rng ?? Math.random,
  ).slice(0, deps.maxAttempts);
  deps.log.info(
    {
      rfb: rfb.rfb_id,
      bids: auction.bids.length,
      refused: auction.refused,
      ms: Math.round(auction.elapsedMs),
    },
    'auction closed',
  );
  if (ranked.length === 0) throw new FedAiError('NO_PEER_BID');
  const reservedBound = Math.max(
    ...ranked.map((r) => bidChargeBoundMsat(r.received.bid.max_cost_msat, deps.offloadFeeBps)),
  );
  const paid = deps.payments.mode === 'settlement';
  const spend: SpendHold | null = paid && req.holdSpend ? await req.holdSpend(reservedBound) : null;
  let reservation: Awaited<ReturnType<Payments['reserve']>>;
  try {
    reservation = await deps.payments.reserve({
      requestId: dispatchId,
      payer: req.payer,
      amountMsat: reservedBound,
    });
  } catch (error) {
    await spend?.release().catch(() => {});
    throw error;
  }
  let served: { winner: ReceivedBid; out: OffloadServed; attempts: number; ms: number };
  try {
    served = await tryBids(
      deps,
      req,
      dispatchId,
      { rfbId: rfb.rfb_id, rfbEventId: auction.rfbEventId },
      ranked.map((r) => r.received),
    );
  } catch (error) {
    await deps.payments.release(reservation).catch(() => {});
    await spend?.release().catch(() => {});
    throw error;
  }
  const peerCostMsat = served.out.record.cost_msat;
  const feeMsat = offloadFeeMsat(peerCostMsat, deps.offloadFeeBps);
  const costMsat = peerCostMsat + feeMsat;
  let settled: Promise<void> | null = null;
  return {
    node: { id: served.out.node },
    text: served.out.text,
    finishReason: served.out.finishReason,
    record: served.out.record,
    metering: served.out.metering,
    attempts: served.attempts,
    nodeMs: served.ms,
    dispatchId,
    costMsat,
    reservedMsat: reservation.amountMsat,
    promptTokensEstimate: rfb.prompt_tokens,
    offload: { peer: served.winner.bidder, result: served.out.result, peerCostMsat, feeMsat },
    settle() {
      settled ??= Promise.all([
        deps.payments.captureOffload(reservation, {
          amountMsat: costMsat,
          peer: served.winner.bidder,
          result: served.out.result,
        }),
        spend?.settle(costMsat),
      ]).then(() => {});
      return settled;
    },
  };
}

async function tryBids(
  deps: OffloadDeps,
  req: ChatRequest,
  jobId: string,
  rfb: { rfbId: string; rfbEventId: string },
  bids: ReceivedBid[],
): Promise<{ winner: ReceivedBid; out: OffloadServed; attempts: number; ms: number }> {
  let last: unknown = new FedAiError('NO_PEER_BID');
  let attempts = 0;
  for (const received of bids) {
    attempts++;
    const startedAt = performance.now();
    try {
      const peerUrl = deps.peers.routerUrl(received.bidder);
      if (!peerUrl) throw new OffloadError('PEER_FAILED', 'the peer has no announced URL', true);
      // The award tells the winner (and any auditor) which bid was taken; losers need no word.
      void deps.bus
        .publish(
          createEnvelope(
            KIND.award,
            { rfb_id: rfb.rfbId, bid_id: received.bid.bid_id, winner: received.bidder },
            { audience: received.bidder, expiresInS: 60, tags: [['e', rfb.rfbEventId]] },
            deps.secretKey,
          ),
        )
        .catch(() => {});
      try {
        await deps.tabs.ensure(received.bidder, peerUrl, received.bid.max_cost_msat);
      } catch (error) {
        throw new OffloadError('PEER_FAILED', (error as Error).message, true);
      }
      const out = await offloadOnce(
        { secretKey: deps.secretKey, pubkey: deps.pubkey, agent: deps.agent },
        {
          // The same id at every peer: settlement binds the charge to it (each peer sees it once).
          jobId,
          rfbId: rfb.rfbId,
          peer: received.bidder,
          bid: received.bid,
          // The bid caps the output (its nodes' max_output_tokens), as a local node caps it: a job
          // asking for more would be refused as larger than the bid.
          params: { ...req.params, max_tokens: Math.min(req.params.max_tokens, received.bid.max_tokens) },
          signal: req.signal,
          onDelta: req.onDelta,
          timeouts: deps.timeouts,
        },
      );
      const ms = performance.now() - startedAt;
      deps.peers.recordOutcome(received.bidder, { ok: true, latencyMs: ms });
      return { winner: received, out, attempts, ms };
    } catch (error) {
      deps.tabs.forget(received.bidder);
      deps.peers.recordOutcome(received.bidder, { ok: false });
      deps.log.warn({ peer: received.bidder, code: (error as OffloadError).code }, 'offload attempt failed');
      last = error;
      if (!isRetryable(error) || req.signal.aborted) break;
    }
  }
  if (last instanceof OffloadError)
    throw new FedAiError('PEER_FAILED', last.message, { beforeFirstToken: last.beforeFirstToken });
  throw last;
}
