// The requesting side of the auction over a real relay (services/relay, in-process) and
// FederationRelays: a hostile bidder answers the RFB with one valid bid and every kind of bad one
// (forged signature, replay, expired, muted key, foreign endpoint, another RFB, over the ceiling,
// over the honest bound, a second bid of one key, a malformed payload, a bid for no open auction);
// only the valid bid counts. With `expectedBidders` the auction ends as soon as they answered.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { relaySocketClass } from '@fed-ai/kit';
import {
  type Bid,
  createEnvelope,
  finalizeEvent,
  generateSecretKey,
  KIND,
  MemoryReplayStore,
  maxCostMsat,
  type Price,
  publicKeyOf,
  type Rfb,
  type SignedEvent,
} from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import type { Event } from 'nostr-tools';
import { SimplePool, useWebSocketImplementation } from 'nostr-tools/pool';
import pino from 'pino';
import { type AuctionDeps, BidInbox, runAuction } from '../src/federation/auction';
import { FederationRelays } from '../src/federation/relays';

useWebSocketImplementation(relaySocketClass(1024 * 1024));

const logger = pino({ level: 'silent' });
const OVERHEAD = 2_000;

let relay: RunningRelay;
let relays: FederationRelays;
let inbox: BidInbox;
const pools: SimplePool[] = [];
const closers: { close(): void }[] = [];

const requesterKey = generateSecretKey();
const requester = publicKeyOf(requesterKey);

/** Waits for a condition with a bounded poll. */
async function until<T>(what: string, probe: () => T | undefined | false, timeoutMs = 8000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

before(async () => {
  relay = await startRelay({
    port: 0,
    logger: logger as unknown as NonNullable<Parameters<typeof startRelay>[0]>['logger'],
  });
  relays = new FederationRelays({ urls: [relay.url], logger, checkIntervalMs: 50, connectTimeoutMs: 2000 });
  await until('relay connected', () => relays.connected().length === 1);
  inbox = new BidInbox(relays, requester);
});

after(async () => {
  for (const c of closers) c.close();
  inbox?.close();
  for (const p of pools) p.destroy();
  relays?.close();
  await relay?.close();
});

/** A hostile bidder: a plain nostr-tools client on the same relay that answers the next RFB. */
function onNextRfb(
  answer: (rfbEvent: SignedEvent, rfb: Rfb, publish: (e: SignedEvent) => Promise<void>) => void,
) {
  const pool = new SimplePool();
  pools.push(pool);
  let answered = false;
  const publish = async (event: SignedEvent) => {
    await Promise.any(pool.publish([relay.url], event as Event)).catch(() => undefined);
  };
  let subscribed = false;
  const sub = pool.subscribeMany(
    [relay.url],
    { kinds: [KIND.rfb], authors: [requester], since: Math.floor(Date.now() / 1000) - 5 },
    {
      oneose: () => {
        subscribed = true;
      },
      onevent: (event) => {
        if (answered) return;
        answered = true;
        answer(event as SignedEvent, JSON.parse(event.content) as Rfb, publish);
      },
    },
  );
  closers.push(sub);
  return until('bidder subscribed', () => subscribed);
}

const price = (input: number, output: number): Price => ({
  input_msat_per_1k: input,
  output_msat_per_1k: output,
});

function bidFor(rfb: Rfb, endpoint: string, over: Partial<Bid> = {}): Bid {
  const p = over.price ?? price(1000, 2000);
  return {
    rfb_id: rfb.rfb_id,
    bid_id: `bid-${Math.random().toString(36).slice(2)}`,
    price: p,
    max_cost_msat: maxCostMsat(rfb.prompt_tokens + 300, rfb.max_tokens, p),
    max_tokens: rfb.max_tokens,
    context_window: 8192,
    free_slots: 1,
    ttft_ms_estimate: 100,
    tokens_per_s_estimate: 10,
    endpoint,
    expires_at: Math.floor(Date.now() / 1000) + 60,
    ...over,
  };
}

function signBid(bid: Bid, key: Uint8Array, rfbEventId: string): SignedEvent {
  return createEnvelope(
    KIND.bid,
    bid,
    { audience: requester, expiresInS: 60, tags: [['e', rfbEventId]] },
    key,
  ) as SignedEvent;
}

const rfbOf = (id: string, deadlineMs: number): Rfb => ({
  rfb_id: id,
  model: 'm',
  prompt_tokens: 100,
  messages: 1,
  max_tokens: 50,
  max_price: { input_msat_per_1k: 5000, output_msat_per_1k: 5000 },
  deadline_ms: deadlineMs,
});

/** Bidder keys: each bad bid comes from its own key so that no refusal masks another. */
const keys = {
  valid: generateSecretKey(),
  forged: generateSecretKey(),
  expired: generateSecretKey(),
  muted: generateSecretKey(),
  endpoint: generateSecretKey(),
  otherRfb: generateSecretKey(),
  ceiling: generateSecretKey(),
  bound: generateSecretKey(),
  malformed: generateSecretKey(),
  noAuction: generateSecretKey(),
};
const pub = Object.fromEntries(Object.entries(keys).map(([k, v]) => [k, publicKeyOf(v)])) as Record<
  keyof typeof keys,
  string
>;
const endpointOf = (p: string) => `http://${p.slice(0, 8)}.example/v1/federation/offload`;

function deps(): AuctionDeps {
  return {
    bus: relays,
    inbox,
    secretKey: requesterKey,
    pubkey: requester,
    replayStore: new MemoryReplayStore(),
    mayPeer: (p) => p !== pub.muted,
    announcedEndpoint: (p) => endpointOf(p),
    maxOverheadTokens: OVERHEAD,
  };
}

test('auction: only the valid bid counts; every hostile bid is refused with its reason', async () => {
  await onNextRfb((rfbEvent, rfb, publish) => {
    void (async () => {
      const valid = signBid(bidFor(rfb, endpointOf(pub.valid)), keys.valid, rfbEvent.id);
      const forgedBase = signBid(bidFor(rfb, endpointOf(pub.forged)), keys.forged, rfbEvent.id);
      const flip = forgedBase.sig[0] === 'a' ? 'b' : 'a';
      const forged = { ...forgedBase, sig: flip + forgedBase.sig.slice(1) };
      const now = Math.floor(Date.now() / 1000);
      const bad: SignedEvent[] = [
        forged,
        signBid(bidFor(rfb, endpointOf(pub.expired), { expires_at: now - 1 }), keys.expired, rfbEvent.id),
        signBid(bidFor(rfb, endpointOf(pub.muted)), keys.muted, rfbEvent.id),
        signBid(bidFor(rfb, 'http://169.254.169.254/v1/federation/offload'), keys.endpoint, rfbEvent.id),
        signBid(bidFor(rfb, endpointOf(pub.otherRfb), { rfb_id: 'rfb-other' }), keys.otherRfb, rfbEvent.id),
        signBid(bidFor(rfb, endpointOf(pub.ceiling), { price: price(5001, 10) }), keys.ceiling, rfbEvent.id),
        signBid(bidFor(rfb, endpointOf(pub.bound), { max_cost_msat: 10_000_000 }), keys.bound, rfbEvent.id),
        // Signed and addressed correctly, but the content is no bid.
        finalizeEvent(
          {
            kind: KIND.bid,
            created_at: now,
            tags: [
              ['p', requester],
              ['e', rfbEvent.id],
            ],
            content: JSON.stringify({ rfb_id: rfb.rfb_id, max_cost_msat: -1 }),
          },
          keys.malformed,
        ) as SignedEvent,
        // A bid for an RFB event no auction has open: dropped by the inbox unread.
        signBid(bidFor(rfb, endpointOf(pub.noAuction)), keys.noAuction, 'f'.repeat(64)),
      ];
      await publish(valid);
      // The same event again (replay), and a second, different bid of the same key.
      await publish(valid);
      await publish(signBid(bidFor(rfb, endpointOf(pub.valid)), keys.valid, rfbEvent.id));
      for (const event of bad) await publish(event);
    })();
  });
  const outcome = await runAuction(deps(), rfbOf('rfb-hostile', 3000));
  assert.equal(outcome.bids.length, 1, JSON.stringify(outcome.refused));
  assert.equal(outcome.bids[0]?.bidder, pub.valid);
  assert.equal(outcome.bids[0]?.bid.endpoint, endpointOf(pub.valid));
  assert.deepEqual(outcome.refused, {
    // The second bid of the valid key (whichever of the two arrived first won).
    DUPLICATE: 1,
    EXPIRED: 1,
    NOT_A_PEER: 1,
    ENDPOINT: 1,
    OTHER_RFB: 1,
    OVER_CEILING: 1,
    OVER_BOUND: 1,
    // The malformed payload; the forged signature never gets past the relay and the pool, and the
    // replayed event is delivered once.
    UNVERIFIED: 1,
  });
  assert.ok(!outcome.bids.some((b) => b.bidder === pub.forged));
});

test('auction: with expectedBidders the auction ends when they answered, long before the deadline', async () => {
  await onNextRfb((rfbEvent, rfb, publish) => {
    void publish(signBid(bidFor(rfb, endpointOf(pub.valid)), keys.valid, rfbEvent.id));
  });
  const deadlineMs = 30_000;
  // Were the early end broken, this would wait the whole 30 s deadline and fail the bound below.
  const outcome = await runAuction(deps(), rfbOf('rfb-early', deadlineMs), { expectedBidders: 1 });
  assert.equal(outcome.bids.length, 1);
  assert.equal(outcome.bids[0]?.bidder, pub.valid);
  assert.deepEqual(outcome.refused, {});
  assert.ok(outcome.elapsedMs < deadlineMs, `ended after ${outcome.elapsedMs} ms`);
});

test('auction: an abort signal ends the auction with no bids', async () => {
  const controller = new AbortController();
  const running = runAuction(deps(), rfbOf('rfb-abort', 30_000), { signal: controller.signal });
  controller.abort();
  const outcome = await running;
  assert.deepEqual(outcome.bids, []);
  assert.ok(outcome.elapsedMs < 30_000);
});
