import assert from 'node:assert/strict';
import { test } from 'node:test';
import { maxCostMsat, type ProviderPrefs } from '@fed-ai/protocol';
import fc from 'fast-check';
import { DEFAULT_WEIGHTS, filterNodes, schedule, weightsFor } from '../src/scheduler';
import type { NodeView, ScheduleRequest } from '../src/scheduler-types';

function node(
  id: string,
  overrides: Partial<NodeView> & { input?: number; output?: number; context?: number } = {},
): NodeView {
  const { input = 1000, output = 2000, context = 4096, ...rest } = overrides;
  return {
    id: id.padEnd(64, '0'),
    endpoint: `http://${id}.example`,
    offer: {
      id: 'm',
      context_window: context,
      max_output_tokens: 1024,
      price: { input_msat_per_1k: input, output_msat_per_1k: output },
    },
    maxConcurrency: 4,
    freeSlots: 4,
    stats: { successRate: 1 },
    trust: 1,
    ...rest,
  };
}

const req = (provider?: ProviderPrefs, extra: Partial<ScheduleRequest> = {}): ScheduleRequest => ({
  model: 'm',
  promptTokens: 100,
  maxTokens: 100,
  provider,
  ...extra,
});
const fixedRng = () => 0;

test('hard filters: a table of cases, each removing exactly the node it should', () => {
  const nodes = [
    node('a'),
    node('b', { offer: { ...node('b').offer, id: 'other' } }),
    node('c', { context: 150 }),
    node('d', { input: 9000 }),
    node('e', { region: 'eu' }),
    node('f', { trust: 0.1 }),
    node('g', { freeSlots: 0 }),
  ];
  const { eligible, filtered } = filterNodes(
    req({ max_price: { input_msat_per_1k: 5000 }, region: undefined, min_trust: 0.5 }),
    nodes,
  );
  assert.deepEqual(eligible.map((e) => e.node.id[0]).sort(), ['a', 'e']);
  assert.deepEqual(filtered, { MODEL: 1, CONTEXT_WINDOW: 1, MAX_PRICE: 1, MIN_TRUST: 1, NO_FREE_SLOT: 1 });
  assert.deepEqual(
    filterNodes(req({ region: 'eu' }), [node('a'), node('e', { region: 'eu' })]).eligible.map(
      (e) => e.node.id[0],
    ),
    ['e'],
  );
  assert.deepEqual(
    filterNodes(req({ only: [node('a').id] }), [node('a'), node('b')]).eligible.map((e) => e.node.id[0]),
    ['a'],
  );
  assert.deepEqual(filterNodes(req({ ignore: [node('a').id] }), [node('a'), node('b')]).filtered, {
    IGNORED: 1,
  });
});

test('no eligible node: empty ranking and the reasons', () => {
  const result = schedule(req({ max_price: { output_msat_per_1k: 1 } }), [node('a'), node('b')], {
    weights: DEFAULT_WEIGHTS,
    rng: fixedRng,
  });
  assert.deepEqual(result.ranked, []);
  assert.deepEqual(result.filtered, { MAX_PRICE: 2 });
});

test('sort modes: price picks the cheapest, latency the fastest first token, throughput the fastest generator', () => {
  const nodes = [
    node('cheap', { input: 10, output: 10, stats: { ttftMs: 900, tokensPerS: 5, successRate: 1 } }),
    node('fast', { input: 5000, output: 5000, stats: { ttftMs: 20, tokensPerS: 50, successRate: 1 } }),
    node('bulk', { input: 3000, output: 3000, stats: { ttftMs: 400, tokensPerS: 900, successRate: 1 } }),
  ];
  const pick = (sort: ProviderPrefs['sort']) =>
    schedule(req({ sort }), nodes, { weights: weightsFor(sort), rng: fixedRng }).ranked[0]!.node.id.slice(
      0,
      4,
    );
  assert.equal(pick('price'), 'chea');
  assert.equal(pick('latency'), 'fast');
  assert.equal(pick('throughput'), 'bulk');
  const explained = schedule(req(), nodes, { weights: DEFAULT_WEIGHTS, rng: fixedRng }).ranked[0]!;
  for (const term of Object.values(explained.terms)) assert.ok(term >= 0 && term <= 1);
});

const nodeArb = fc.record({
  id: fc.stringMatching(/^[0-9a-f]{64}$/),
  input: fc.integer({ min: 0, max: 10_000 }),
  output: fc.integer({ min: 0, max: 10_000 }),
  context: fc.integer({ min: 64, max: 8192 }),
  maxOut: fc.integer({ min: 1, max: 2048 }),
  free: fc.integer({ min: 0, max: 8 }),
  region: fc.constantFrom(undefined, 'eu', 'us'),
  trust: fc.double({ min: 0, max: 1, noNaN: true }),
  ttft: fc.option(fc.integer({ min: 1, max: 5000 }), { nil: undefined }),
  tps: fc.option(fc.integer({ min: 1, max: 2000 }), { nil: undefined }),
  model: fc.constantFrom('m', 'm', 'm', 'x'),
});

type RawNode = typeof nodeArb extends fc.Arbitrary<infer T> ? T : never;

function toView(n: RawNode): NodeView {
  return {
    id: n.id.toLowerCase(),
    endpoint: 'http://n.example',
    region: n.region,
    offer: {
      id: n.model,
      context_window: n.context,
      max_output_tokens: n.maxOut,
      price: { input_msat_per_1k: n.input, output_msat_per_1k: n.output },
    },
    maxConcurrency: 8,
    freeSlots: n.free,
    stats: { ttftMs: n.ttft, tokensPerS: n.tps, successRate: 1 },
    trust: n.trust,
  };
}

const prefsArb = fc.record({
  sort: fc.constantFrom(undefined, 'price' as const, 'latency' as const, 'throughput' as const),
  maxIn: fc.option(fc.integer({ min: 0, max: 10_000 }), { nil: undefined }),
  maxOut: fc.option(fc.integer({ min: 0, max: 10_000 }), { nil: undefined }),
  region: fc.constantFrom(undefined, 'eu'),
  minTrust: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
});

test('property: hard filters are never violated, and under sort=price a cheapest eligible node is first', () => {
  fc.assert(
    fc.property(
      fc.array(nodeArb, { minLength: 0, maxLength: 40 }),
      prefsArb,
      fc.integer({ min: 0, max: 2000 }),
      fc.integer({ min: 1, max: 2000 }),
      fc.double({ min: 0, max: 0.9999, noNaN: true }),
      (raw, p, promptTokens, maxTokens, r) => {
        const nodes = raw.map(toView);
        const provider: ProviderPrefs = {
          ...(p.sort ? { sort: p.sort } : {}),
          max_price: { input_msat_per_1k: p.maxIn, output_msat_per_1k: p.maxOut },
          ...(p.region ? { region: p.region } : {}),
          ...(p.minTrust !== undefined ? { min_trust: p.minTrust } : {}),
        };
        const request = req(provider, { promptTokens, maxTokens });
        const { ranked } = schedule(request, nodes, { weights: weightsFor(p.sort), rng: () => r });
        for (const c of ranked) {
          const o = c.node.offer;
          assert.equal(o.id, 'm');
          assert.ok(promptTokens + Math.min(maxTokens, o.max_output_tokens) <= o.context_window);
          if (p.maxIn !== undefined) assert.ok(o.price.input_msat_per_1k <= p.maxIn);
          if (p.maxOut !== undefined) assert.ok(o.price.output_msat_per_1k <= p.maxOut);
          if (p.region) assert.equal(c.node.region, p.region);
          if (p.minTrust !== undefined) assert.ok(c.node.trust >= p.minTrust);
          assert.ok(c.node.freeSlots > 0);
        }
        const eligible = filterNodes(request, nodes).eligible;
        assert.equal(ranked.length, Math.min(8, eligible.length));
        if (p.sort === 'price' && eligible.length > 0) {
          const cheapest = Math.min(...eligible.map((e) => e.costMsat));
          const first = ranked[0]!;
          assert.equal(
            maxCostMsat(promptTokens, maxTokens, first.node.offer.price, first.node.offer.max_output_tokens),
            cheapest,
          );
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('property: equal nodes share the load (each is picked), and a fixed rng is deterministic', () => {
  fc.assert(
    fc.property(fc.integer({ min: 2, max: 6 }), (k) => {
      const nodes = Array.from({ length: k }, (_, i) => node(String.fromCharCode(97 + i)));
      const picked = new Set<string>();
      for (let i = 0; i < 200; i++) {
        picked.add(
          schedule(req(), nodes, { weights: DEFAULT_WEIGHTS, rng: () => (i % k) / k + 0.0001 }).ranked[0]!
            .node.id,
        );
      }
      assert.equal(picked.size, k);
      const a = schedule(req(), nodes, { weights: DEFAULT_WEIGHTS, rng: () => 0.42 });
      const b = schedule(req(), nodes, { weights: DEFAULT_WEIGHTS, rng: () => 0.42 });
      assert.deepEqual(
        a.ranked.map((c) => c.node.id),
        b.ranked.map((c) => c.node.id),
      );
    }),
  );
});

test('scales to 10,000 nodes of one model and returns a bounded candidate list', () => {
  const nodes = Array.from({ length: 10_000 }, (_, i) =>
    node(i.toString(16), { input: (i * 7919) % 5000, output: (i * 104729) % 5000 }),
  );
  const { ranked } = schedule(req({ sort: 'price' }), nodes, {
    weights: weightsFor('price'),
    rng: Math.random,
    maxCandidates: 5,
  });
  assert.equal(ranked.length, 5);
  const cheapest = Math.min(...nodes.map((n) => maxCostMsat(100, 100, n.offer.price, 1024)));
  assert.equal(ranked[0]!.maxCostMsat, cheapest);
});
