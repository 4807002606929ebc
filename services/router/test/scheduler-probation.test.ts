// Issue #9 C: probation nodes get a bounded share of leads and never push established nodes out.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { trustOf } from '../src/registry';
import { DEFAULT_WEIGHTS, schedule } from '../src/scheduler';
import type { NodeView } from '../src/scheduler-types';

function view(id: string, price: number, probation: boolean): NodeView {
  return {
    id: id.padStart(64, '0'),
    endpoint: `http://${id}`,
    offer: {
      id: 'm',
      context_window: 4096,
      max_output_tokens: 256,
      price: { input_msat_per_1k: price, output_msat_per_1k: price },
    },
    maxConcurrency: 4,
    freeSlots: 4,
    stats: { successRate: 1 },
    trust: 1,
    probation,
  };
}

function lcg(seed: number): () => number {
  let s = seed;
  return () => {
    s = (s * 1103515245 + 12345) % 2147483648;
    return s / 2147483648;
  };
}

test('200 price-0 probation nodes lead at most about probationShare of requests; the established node is always next', () => {
  const nodes = [
    view('honest', 1000, false),
    ...Array.from({ length: 200 }, (_, i) => view(`s${i}`, 0, true)),
  ];
  const rng = lcg(42);
  let probationLeads = 0;
  const draws = 2000;
  for (let i = 0; i < draws; i++) {
    const { ranked } = schedule({ model: 'm', promptTokens: 10, maxTokens: 10 }, nodes, {
      weights: DEFAULT_WEIGHTS,
      rng,
      probationShare: 0.1,
    });
    const leader = ranked[0]!.node;
    if (leader.probation) {
      probationLeads += 1;
      assert.equal(ranked[1]!.node.id, nodes[0]!.id, 'the established node follows a probation leader');
    } else assert.equal(leader.id, nodes[0]!.id);
    assert.ok(ranked.length <= 8);
  }
  assert.ok(probationLeads > 100 && probationLeads < 300, `${probationLeads} of ${draws}`);
  const never = schedule({ model: 'm', promptTokens: 10, maxTokens: 10 }, nodes, {
    weights: DEFAULT_WEIGHTS,
    rng: () => 0.5,
    probationShare: 0,
  });
  assert.equal(never.ranked[0]!.node.id, nodes[0]!.id);
  // With only probation nodes eligible they are ranked normally (a new network still works).
  const alone = schedule({ model: 'm', promptTokens: 10, maxTokens: 10 }, nodes.slice(1), {
    weights: DEFAULT_WEIGHTS,
    rng: () => 0,
  });
  assert.equal(alone.ranked.length, 8);
});

test('trust: established nodes 1, probation nodes 0.25 rising to 0.75 with verified answers; min_trust filters by it', () => {
  assert.equal(trustOf(false, 0, 20), 1);
  assert.equal(trustOf(true, 0, 20), 0.25);
  assert.equal(trustOf(true, 10, 20), 0.5);
  assert.equal(trustOf(true, 40, 20), 0.75);
  assert.equal(trustOf(true, 0, 0), 0.75);
  const fresh = { ...view('a', 1, true), trust: trustOf(true, 0, 20) };
  const old = { ...view('b', 9, false), trust: trustOf(false, 0, 20) };
  const ranked = schedule(
    { model: 'm', promptTokens: 10, maxTokens: 10, provider: { min_trust: 0.8 } },
    [fresh, old],
    { weights: DEFAULT_WEIGHTS, rng: () => 0 },
  );
  assert.deepEqual(
    ranked.ranked.map((c) => c.node.id),
    [old.id],
    'a new node is filtered out by min_trust 0.8',
  );
  assert.equal(ranked.filtered.MIN_TRUST, 1);
});
