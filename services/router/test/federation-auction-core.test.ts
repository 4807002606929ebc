// The auction's pure decisions: each bid refusal of checkBid, partial price ceilings, the bidder's
// terms as a sound bound over every node it may dispatch to (property), and the ranking of bids.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type Bid,
  type ChatMessage,
  DEFAULT_PROMPT_OVERHEAD,
  maxCostMsat,
  type Price,
  promptOverheadOf,
  promptTokensBound,
  type Rfb,
  textTokensBound,
} from '@fed-ai/protocol';
import fc from 'fast-check';
import {
  bidTermsFor,
  checkBid,
  offerMaxCostMsat,
  type PeerRecord,
  type ReceivedBid,
  rankBids,
  rfbFor,
  withinPrice,
} from '../src/federation/auction-core';
import type { NodeView } from '../src/scheduler-types';

const key = (c: string) => c.repeat(64);
const [A, B, C] = ['a', 'b', 'c'].map(key) as [string, string, string];
const ENDPOINT = (k: string) => `http://${k.slice(0, 4)}.example/v1/federation/offload`;
const NOW_S = 1_800_000_000;
const price = (input: number, output: number): Price => ({
  input_msat_per_1k: input,
  output_msat_per_1k: output,
});

const RFB: Rfb = {
  rfb_id: 'rfb-1',
  model: 'm',
  prompt_tokens: 1000,
  messages: 2,
  max_tokens: 500,
  max_price: { input_msat_per_1k: 2000, output_msat_per_1k: 4000 },
  deadline_ms: 2000,
};

function bid(over: Partial<Bid> = {}): Bid {
  return {
    rfb_id: RFB.rfb_id,
    bid_id: 'bid-1',
    price: price(1000, 2000),
    max_cost_msat: maxCostMsat(RFB.prompt_tokens + 1000, RFB.max_tokens, price(1000, 2000)),
    max_tokens: RFB.max_tokens,
    context_window: 8192,
    free_slots: 2,
    ttft_ms_estimate: 200,
    tokens_per_s_estimate: 50,
    endpoint: ENDPOINT(A),
    expires_at: NOW_S + 60,
    ...over,
  };
}

const context = (over: Partial<Parameters<typeof checkBid>[2]> = {}) => ({
  nowS: NOW_S,
  mayPeer: (p: string) => p !== C,
  announcedEndpoint: (p: string) => (p === C ? undefined : ENDPOINT(p)),
  seenBidders: new Set<string>(),
  maxOverheadTokens: 1000,
  ...over,
});

test('checkBid: each refusal, and acceptance', () => {
  const honest = maxCostMsat(RFB.prompt_tokens + 1000, RFB.max_tokens, price(1000, 2000));
  const cases: {
    name: string;
    received: ReceivedBid;
    ctx?: Partial<Parameters<typeof checkBid>[2]>;
    rfb?: Rfb;
    expect: ReturnType<typeof checkBid>;
  }[] = [
    { name: 'valid', received: { bidder: A, bid: bid() }, expect: null },
    {
      name: 'bound exactly the honest one',
      received: { bidder: A, bid: bid({ max_cost_msat: honest }) },
      expect: null,
    },
    { name: 'another RFB', received: { bidder: A, bid: bid({ rfb_id: 'rfb-2' }) }, expect: 'OTHER_RFB' },
    { name: 'expired now', received: { bidder: A, bid: bid({ expires_at: NOW_S }) }, expect: 'EXPIRED' },
    {
      name: 'expired before',
      received: { bidder: A, bid: bid({ expires_at: NOW_S - 100 }) },
      expect: 'EXPIRED',
    },
    {
      name: 'not a peer',
      received: { bidder: C, bid: bid({ endpoint: ENDPOINT(C) }) },
      expect: 'NOT_A_PEER',
    },
    {
      name: 'second bid of one bidder',
      received: { bidder: A, bid: bid({ bid_id: 'bid-2' }) },
      ctx: { seenBidders: new Set([A]) },
      expect: 'DUPLICATE',
    },
    {
      name: 'input price over the ceiling',
      received: { bidder: A, bid: bid({ price: price(2001, 2000) }) },
      expect: 'OVER_CEILING',
    },
    {
      name: 'output price over the ceiling',
      received: { bidder: A, bid: bid({ price: price(1000, 4001) }) },
      expect: 'OVER_CEILING',
    },
    {
      name: 'endpoint not the announced one',
      received: { bidder: A, bid: bid({ endpoint: 'http://169.254.169.254/v1/federation/offload' }) },
      expect: 'ENDPOINT',
    },
    {
      name: "another peer's endpoint",
      received: { bidder: A, bid: bid({ endpoint: ENDPOINT(B) }) },
      expect: 'ENDPOINT',
    },
    {
      name: 'bidder never announced an endpoint',
      received: { bidder: B, bid: bid() },
      ctx: { announcedEndpoint: () => undefined },
      expect: 'ENDPOINT',
    },
    {
      name: 'cost bound one msat over the honest one',
      received: { bidder: A, bid: bid({ max_cost_msat: honest + 1 }) },
      expect: 'OVER_BOUND',
    },
    {
      name: 'cost bound counted on more output tokens than the bid generates',
      received: {
        bidder: A,
        bid: bid({
          max_tokens: 100,
          max_cost_msat: maxCostMsat(RFB.prompt_tokens + 1000, 500, price(1000, 2000)),
        }),
      },
      expect: 'OVER_BOUND',
    },
    {
      name: 'no ceiling: any price, bound at that price',
      rfb: { ...RFB, max_price: undefined },
      received: {
        bidder: A,
        bid: bid({
          price: price(90_000, 90_000),
          max_cost_msat: maxCostMsat(RFB.prompt_tokens + 1000, RFB.max_tokens, price(90_000, 90_000)),
        }),
      },
      expect: null,
    },
  ];
  for (const c of cases) assert.equal(checkBid(c.received, c.rfb ?? RFB, context(c.ctx)), c.expect, c.name);
});

test('checkBid: refusals are checked in order (cheap identity checks before price and bound)', () => {
  const all = bid({ rfb_id: 'rfb-x', expires_at: 0, price: price(9e6, 9e6), endpoint: 'http://x.example/' });
  assert.equal(checkBid({ bidder: C, bid: all }, RFB, context()), 'OTHER_RFB');
  assert.equal(checkBid({ bidder: C, bid: { ...all, rfb_id: RFB.rfb_id } }, RFB, context()), 'EXPIRED');
});

test('withinPrice: absent, partial and full ceilings', () => {
  const p = price(100, 200);
  const cases: [Rfb['max_price'], boolean][] = [
    [undefined, true],
    [{}, true],
    [{ input_msat_per_1k: 100 }, true],
    [{ input_msat_per_1k: 99 }, false],
    [{ output_msat_per_1k: 200 }, true],
    [{ output_msat_per_1k: 199 }, false],
    [{ input_msat_per_1k: 100, output_msat_per_1k: 200 }, true],
    [{ input_msat_per_1k: 1000, output_msat_per_1k: 199 }, false],
    [{ input_msat_per_1k: 99, output_msat_per_1k: 1000 }, false],
    [{ input_msat_per_1k: 0, output_msat_per_1k: 0 }, false],
  ];
  for (const [ceiling, expect] of cases)
    assert.equal(withinPrice(p, ceiling), expect, JSON.stringify(ceiling));
  assert.equal(withinPrice(price(0, 0), { input_msat_per_1k: 0, output_msat_per_1k: 0 }), true);
});

const priceArb = fc.record({
  input_msat_per_1k: fc.integer({ min: 0, max: 100_000 }),
  output_msat_per_1k: fc.integer({ min: 0, max: 100_000 }),
});

const viewArb = fc.record({
  id: fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16).padStart(64, '0')),
  price: priceArb,
  context_window: fc.integer({ min: 1, max: 200_000 }),
  max_output_tokens: fc.integer({ min: 1, max: 20_000 }),
  overhead: fc.option(
    fc.record({
      per_message_tokens: fc.integer({ min: 0, max: 512 }),
      fixed_tokens: fc.integer({ min: 0, max: 4096 }),
    }),
    { nil: undefined },
  ),
  freeSlots: fc.integer({ min: 0, max: 4 }),
  ttftMs: fc.option(fc.integer({ min: 1, max: 5000 }), { nil: undefined }),
  tokensPerS: fc.option(fc.integer({ min: 1, max: 500 }), { nil: undefined }),
});

type ViewSpec = typeof viewArb extends fc.Arbitrary<infer T> ? T : never;

function toView(v: ViewSpec): NodeView {
  return {
    id: v.id,
    endpoint: `http://${v.id.slice(0, 8)}.example`,
    offer: {
      id: 'm',
      context_window: v.context_window,
      max_output_tokens: v.max_output_tokens,
      price: v.price,
      ...(v.overhead ? { prompt_overhead: v.overhead } : {}),
    },
    maxConcurrency: 4,
    freeSlots: v.freeSlots,
    stats: { ttftMs: v.ttftMs, tokensPerS: v.tokensPerS, successRate: 1 },
    trust: 1,
  };
}

const messageArb: fc.Arbitrary<ChatMessage> = fc.record({
  role: fc.constantFrom('system', 'user', 'assistant'),
  content: fc.string({ unit: 'grapheme', maxLength: 200 }),
}) as fc.Arbitrary<ChatMessage>;

const ceilingArb = fc.option(
  fc.record(
    {
      input_msat_per_1k: fc.integer({ min: 0, max: 100_000 }),
      output_msat_per_1k: fc.integer({ min: 0, max: 100_000 }),
    },
    { requiredKeys: [] },
  ),
  { nil: undefined },
);

test('bidTermsFor: terms bound the real maximum cost and price of every eligible node; null when none (property)', () => {
  let withTerms = 0;
  let without = 0;
  fc.assert(
    fc.property(
      fc.array(viewArb, { maxLength: 6 }),
      fc.array(messageArb, { minLength: 1, maxLength: 6 }),
      fc.integer({ min: 1, max: 20_000 }),
      ceilingArb,
      (rawViews, messages, maxTokens, ceiling) => {
        const views = rawViews.map(toView);
        const rfb = rfbFor(
          'rfb-p',
          { model: 'm', messages, max_tokens: maxTokens },
          ceiling ? { max_price: ceiling } : undefined,
          1000,
        );
        const eligible = views.filter(
          (v) =>
            v.freeSlots > 0 &&
            withinPrice(v.offer.price, rfb.max_price) &&
            v.offer.context_window >= rfb.prompt_tokens + Math.min(rfb.max_tokens, v.offer.max_output_tokens),
        );
        const terms = bidTermsFor(rfb, views);
        if (eligible.length === 0) {
          without++;
          assert.equal(terms, null);
          return;
        }
        withTerms++;
        assert.ok(terms);
        assert.ok(withinPrice(terms.price, rfb.max_price), 'the bid price is within the ceiling');
        for (const v of eligible) {
          // The real bound of this node for these messages: its own template overhead on the prompt.
          const real = maxCostMsat(
            promptTokensBound(messages, promptOverheadOf(v.offer)),
            rfb.max_tokens,
            v.offer.price,
            v.offer.max_output_tokens,
          );
          assert.ok(terms.max_cost_msat >= real, `bound ${terms.max_cost_msat} < ${real}`);
          assert.ok(terms.max_cost_msat >= offerMaxCostMsat(rfb, v.offer));
          assert.ok(terms.price.input_msat_per_1k >= v.offer.price.input_msat_per_1k);
          assert.ok(terms.price.output_msat_per_1k >= v.offer.price.output_msat_per_1k);
          assert.ok(terms.context_window >= v.offer.context_window);
        }
        assert.ok(terms.max_tokens <= rfb.max_tokens);
        assert.equal(
          terms.free_slots,
          eligible.reduce((n, v) => n + v.freeSlots, 0),
        );
        // The honest requester accepts these terms (overhead bound large enough for any node here).
        const received = {
          bidder: A,
          bid: {
            ...terms,
            rfb_id: rfb.rfb_id,
            bid_id: 'bid-p',
            endpoint: ENDPOINT(A),
            expires_at: NOW_S + 60,
          },
        };
        assert.equal(
          checkBid(received, rfb, context({ maxOverheadTokens: 4096 + 512 * rfb.messages })),
          null,
          'an honest bid passes checkBid',
        );
      },
    ),
    // Under mutation testing a failing property need not shrink (it only has to fail).
    { numRuns: 300, endOnFailure: process.env.__STRYKER_ACTIVE_MUTANT__ !== undefined },
  );
  // Both branches were exercised.
  assert.ok(withTerms > 30 && without > 10, `${withTerms} with terms, ${without} without`);
});

test('bidTermsFor: the default template overhead is used when a node names none', () => {
  const rfb: Rfb = { ...RFB, max_price: undefined };
  const v = toView({
    id: key('d'),
    price: price(1000, 1000),
    context_window: 100_000,
    max_output_tokens: 10_000,
    overhead: undefined,
    freeSlots: 1,
    ttftMs: undefined,
    tokensPerS: undefined,
  });
  const terms = bidTermsFor(rfb, [v]);
  const overhead =
    DEFAULT_PROMPT_OVERHEAD.fixed_tokens + DEFAULT_PROMPT_OVERHEAD.per_message_tokens * rfb.messages;
  assert.equal(
    terms?.max_cost_msat,
    maxCostMsat(rfb.prompt_tokens + overhead, rfb.max_tokens, v.offer.price),
  );
  assert.equal(terms?.ttft_ms_estimate, 1000);
  assert.equal(terms?.tokens_per_s_estimate, 0);
});

const rankedBid = (bidder: string, p: Price, over: Partial<Bid> = {}): ReceivedBid => ({
  bidder,
  bid: bid({
    bid_id: `bid-${bidder.slice(0, 4)}`,
    price: p,
    endpoint: ENDPOINT(bidder),
    max_cost_msat: maxCostMsat(RFB.prompt_tokens, RFB.max_tokens, p),
    ...over,
  }),
});

test('rankBids: a cheaper identical bid wins under sort price; a far more trusted one under balanced weights', () => {
  const cheap = rankedBid(A, price(500, 1000));
  const dear = rankedBid(B, price(1500, 3000));
  const same: PeerRecord = { trust: 1, successRate: 1 };
  for (const order of [
    [cheap, dear],
    [dear, cheap],
  ]) {
    const ranked = rankBids(
      order,
      RFB,
      { sort: 'price' },
      () => same,
      () => 0,
    );
    assert.equal(ranked.length, 2);
    assert.equal(ranked[0]?.received.bidder, A);
    // The candidate carries the bid's own cost bound (what the requester reserves).
    assert.equal(ranked[0]?.candidate.maxCostMsat, cheap.bid.max_cost_msat);
  }
  // The same terms: the barely trusted, failing peer loses to the trusted one under balanced weights.
  // (Price is min-max normalised over the bids, so any price gap outweighs trust at the defaults.)
  const slightlyCheaper = rankedBid(A, price(1000, 2000));
  const trusted = rankedBid(B, price(1000, 2000));
  const records: Record<string, PeerRecord> = {
    [A]: { trust: 0.05, successRate: 0.2 },
    [B]: { trust: 1, successRate: 1 },
  };
  for (const order of [
    [slightlyCheaper, trusted],
    [trusted, slightlyCheaper],
  ]) {
    for (const draw of [0, 0.5, 0.999]) {
      const ranked = rankBids(
        order,
        RFB,
        undefined,
        (p) => records[p]!,
        () => draw,
      );
      assert.equal(ranked[0]?.received.bidder, B);
    }
  }
  assert.deepEqual(
    rankBids([], RFB, undefined, () => same, Math.random),
    [],
  );
});

test('rfbFor: the client ceiling travels, and the text bound counts every message and name', () => {
  const messages = [
    { role: 'system' as const, content: 'be brief' },
    { role: 'user' as const, content: 'héllo', name: 'bob' },
  ];
  const rfb = rfbFor(
    'rfb-text-bound-1',
    { model: 'm', messages, max_tokens: 7 },
    { max_price: { input_msat_per_1k: 5 } },
    250,
  );
  assert.deepEqual(rfb.max_price, { input_msat_per_1k: 5 });
  assert.equal(
    rfb.prompt_tokens,
    textTokensBound('be brief') + textTokensBound('héllo') + textTokensBound('bob'),
  );
  assert.equal(rfb.messages, 2);
  assert.equal(rfb.max_tokens, 7);
  assert.equal(rfb.deadline_ms, 250);
  // No name: nothing is added for it; no ceiling: none is sent.
  const plain = rfbFor(
    'rfb-text-bound-2',
    { model: 'm', messages: [{ role: 'user', content: 'abc' }], max_tokens: 1 },
    undefined,
    250,
  );
  assert.equal(plain.prompt_tokens, textTokensBound('abc'));
  assert.equal(plain.max_price, undefined);
});
