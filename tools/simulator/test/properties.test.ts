// Property tests (fast-check) on the pure core: the event queue's order, the PRNG and its
// distributions, the pricing rule and the Gini coefficient.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { SimError } from '../src/errors';
import { EventQueue } from '../src/event-queue';
import { nextPrice } from '../src/pricing';
import { deriveSeed, exponential, lognormalInt, mulberry32 } from '../src/prng';
import { gini } from '../src/stats';

test('events run in (time, scheduling order), the clock never goes back, and nested events too', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 1_000 }), fc.integer({ min: -50, max: 200 })), {
        maxLength: 200,
      }),
      (plan) => {
        const queue = new EventQueue(10_000);
        const ran: { atMs: number; label: number }[] = [];
        const expected: { atMs: number; label: number }[] = [];
        let label = 0;
        for (const [atMs, childDelayMs] of plan) {
          const mine = label++;
          expected.push({ atMs, label: mine });
          queue.at(atMs, () => {
            ran.push({ atMs: queue.nowMs, label: mine });
            // An event may schedule another; one in the past runs at the current instant.
            const child = label++;
            const childAt = Math.max(queue.nowMs, queue.nowMs + childDelayMs);
            expected.push({ atMs: childAt, label: child });
            queue.at(queue.nowMs + childDelayMs, () => ran.push({ atMs: queue.nowMs, label: child }));
          });
        }
        queue.runUntil(10_000);
        assert.equal(ran.length, 2 * plan.length);
        for (let i = 1; i < ran.length; i++) assert.ok(ran[i]!.atMs >= ran[i - 1]!.atMs);
        // At one instant, events run in the order they were scheduled.
        for (let i = 1; i < ran.length; i++)
          if (ran[i]!.atMs === ran[i - 1]!.atMs) assert.ok(ran[i]!.label > ran[i - 1]!.label);
        const when = new Map(expected.map((e) => [e.label, e.atMs]));
        for (const r of ran) assert.equal(r.atMs, when.get(r.label));
        assert.equal(queue.size, 0);
      },
    ),
  );
});

test('the queue refuses a runaway scenario', () => {
  const queue = new EventQueue(3);
  for (let i = 0; i < 3; i++) queue.at(i, () => {});
  assert.throws(
    () => queue.at(9, () => {}),
    (e: unknown) => e instanceof SimError && e.code === 'SIM_QUEUE_FULL',
  );
  assert.equal(queue.runUntil(1), 2);
  assert.equal(queue.nowMs, 1);
});

test('the PRNG is reproducible, in [0, 1), and seeds and labels give separate streams', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 2 ** 32 - 1 }), (seed) => {
      const a = mulberry32(seed);
      const b = mulberry32(seed);
      const other = mulberry32(deriveSeed(seed, 'other'));
      const xs = Array.from({ length: 32 }, () => a());
      assert.deepEqual(
        xs,
        Array.from({ length: 32 }, () => b()),
      );
      for (const x of xs) assert.ok(x >= 0 && x < 1);
      assert.notDeepEqual(
        xs,
        Array.from({ length: 32 }, () => other()),
      );
      assert.equal(deriveSeed(seed, 'x'), deriveSeed(seed, 'x'));
      assert.notEqual(deriveSeed(seed, 'router-0'), deriveSeed(seed, 'router-1'));
    }),
  );
});

test('distributions: whole-number draws stay in bounds, exponential draws have their mean', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      fc.integer({ min: 1, max: 10_000 }),
      fc.double({ min: 0, max: 3, noNaN: true }),
      fc.integer({ min: 1, max: 100 }),
      fc.integer({ min: 0, max: 1_000 }),
      (seed, median, sigma, min, span) => {
        const rng = mulberry32(seed);
        for (let i = 0; i < 50; i++) {
          const v = lognormalInt(rng, median, sigma, min, min + span);
          assert.ok(Number.isInteger(v) && v >= min && v <= min + span);
        }
      },
    ),
  );
  const rng = mulberry32(42);
  let sum = 0;
  for (let i = 0; i < 20_000; i++) sum += exponential(rng, 250);
  assert.ok(Math.abs(sum / 20_000 - 250) < 10, `mean ${sum / 20_000}`);
});

const priceArb = fc.record({
  input_msat_per_1k: fc.integer({ min: 0, max: 1_000_000_000 }),
  output_msat_per_1k: fc.integer({ min: 0, max: 1_000_000_000 }),
});

test('undercut pricing never goes under its floor, moves by at most its step, and keeps integers', () => {
  fc.assert(
    fc.property(
      priceArb,
      fc.double({ min: 0, max: 2, noNaN: true }),
      fc.integer({ min: 1, max: 5_000 }),
      fc.integer({ min: 0, max: 1_000_000 }),
      (price, utilisation, stepBps, floor) => {
        const spec = {
          strategy: 'undercut' as const,
          intervalS: 60,
          targetUtilisation: 0.5,
          highUtilisation: 0.85,
          stepBps,
          floorInputMsatPer1k: floor,
          floorOutputMsatPer1k: floor,
        };
        const next = nextPrice(price, utilisation, spec);
        for (const k of ['input_msat_per_1k', 'output_msat_per_1k'] as const) {
          assert.ok(Number.isSafeInteger(next[k]) && next[k] <= 1_000_000_000);
          if (utilisation < 0.5) {
            assert.ok(next[k] <= price[k]);
            assert.ok(next[k] >= Math.min(price[k], floor));
            assert.ok(next[k] >= Math.floor((price[k] * (10_000 - stepBps)) / 10_000));
          } else if (utilisation > 0.85) assert.ok(next[k] >= price[k]);
          else assert.equal(next[k], price[k]);
        }
        assert.equal(nextPrice(price, utilisation, { strategy: 'fixed' }), price);
      },
    ),
  );
});

test('Gini is 0 for equal shares, in [0, 1) otherwise, and (n-1)/n when one takes all', () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: 1_000_000 }), { minLength: 1, maxLength: 100 }), (xs) => {
      const g = gini(xs);
      assert.ok(g >= -1e-12 && g < 1);
      assert.ok(Math.abs(gini(xs.map(() => 5)) - 0) < 1e-12);
    }),
  );
  assert.ok(Math.abs(gini([0, 0, 0, 10]) - 0.75) < 1e-12);
});
