import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { costMsat, maxCostMsat, splitCharge, splitMsat } from '../src/index';

const price = (input: number, output: number) => ({ input_msat_per_1k: input, output_msat_per_1k: output });

test('cost: table of cases (rounded up to the msat)', () => {
  const cases: [number, number, number, number, number][] = [
    // tokensIn, tokensOut, in/1k, out/1k, expected msat
    [0, 0, 1000, 1000, 0],
    [1000, 0, 1000, 5000, 1000],
    [0, 1000, 1000, 5000, 5000],
    [1, 0, 1, 0, 1], // 0.001 msat rounds up to 1
    [999, 1, 1, 1, 1],
    [1001, 0, 1, 0, 2],
    [123, 456, 2000, 3000, 1614], // (246000 + 1368000)/1000 = 1614
    [0, 0, 0, 0, 0],
  ];
  for (const [tin, tout, pin, pout, expected] of cases)
    assert.equal(costMsat(tin, tout, price(pin, pout)), expected);
});

test('cost rejects negative, fractional and overflowing inputs', () => {
  assert.throws(() => costMsat(-1, 0, price(1, 1)), RangeError);
  assert.throws(() => costMsat(1.5, 0, price(1, 1)), RangeError);
  assert.throws(() => costMsat(0, 0, price(-1, 1)), RangeError);
  assert.throws(() => costMsat(Number.MAX_SAFE_INTEGER, 0, price(Number.MAX_SAFE_INTEGER, 0)), RangeError);
});

test('property: the reservation covers every generation within its bounds', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 200_000 }),
      fc.integer({ min: 1, max: 200_000 }),
      fc.integer({ min: 0, max: 10_000_000 }),
      fc.integer({ min: 0, max: 10_000_000 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (promptTokens, maxTokens, pin, pout, fin, fout) => {
        const p = price(pin, pout);
        const reserved = maxCostMsat(promptTokens, maxTokens, p);
        const actualIn = Math.floor(promptTokens * fin);
        const actualOut = Math.floor(maxTokens * fout);
        const cost = costMsat(actualIn, actualOut, p);
        assert.ok(cost <= reserved);
      },
    ),
  );
});

test('maxCost caps max_tokens at the node output limit', () => {
  assert.equal(maxCostMsat(0, 10_000, price(0, 1000), 100), 100);
});

test('split: table of cases with the remainder going to the first part', () => {
  const cases: [number, [string, number][], [string, number][]][] = [
    [
      100,
      [
        ['node', 9000],
        ['router', 1000],
      ],
      [
        ['node', 90],
        ['router', 10],
      ],
    ],
    [
      1,
      [
        ['node', 9000],
        ['router', 1000],
      ],
      [
        ['node', 1],
        ['router', 0],
      ],
    ],
    [
      7,
      [
        ['a', 3333],
        ['b', 3333],
        ['c', 3334],
      ],
      [
        ['a', 3],
        ['b', 2],
        ['c', 2],
      ],
    ],
    [0, [['a', 10_000]], [['a', 0]]],
  ];
  for (const [amount, parts, expected] of cases) {
    const result = splitMsat(
      amount,
      parts.map(([id, bps]) => ({ id, bps })),
    );
    assert.deepEqual([...result.entries()], expected);
  }
  assert.deepEqual(splitCharge(1001, 500), { nodeMsat: 951, routerMsat: 50 });
});

test('split refuses parts that do not add up to 10,000 bps, duplicates and bad amounts', () => {
  assert.throws(() => splitMsat(10, [{ id: 'a', bps: 5000 }]), RangeError);
  assert.throws(
    () =>
      splitMsat(10, [
        { id: 'a', bps: 5000 },
        { id: 'a', bps: 5000 },
      ]),
    RangeError,
  );
  assert.throws(() => splitMsat(-1, [{ id: 'a', bps: 10_000 }]), RangeError);
  assert.throws(() => splitMsat(10, []), RangeError);
});

test('property: split parts sum to the whole, are never negative, deterministic, and near-proportional', () => {
  const partsArb = fc
    .array(fc.integer({ min: 0, max: 10_000 }), { minLength: 1, maxLength: 8 })
    .map((weights) => {
      const total = weights.reduce((a, b) => a + b, 0) || 1;
      const bps = weights.map((w) => Math.floor((w * 10_000) / total));
      bps[0]! += 10_000 - bps.reduce((a, b) => a + b, 0);
      return bps.map((b, i) => ({ id: `p${i}`, bps: b }));
    });
  fc.assert(
    fc.property(fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }), partsArb, (amount, parts) => {
      const a = splitMsat(amount, parts);
      const b = splitMsat(amount, parts);
      assert.deepEqual([...a], [...b]);
      let sum = 0n;
      for (const [i, part] of parts.entries()) {
        const share = a.get(part.id)!;
        assert.ok(Number.isSafeInteger(share) && share >= 0);
        sum += BigInt(share);
        const exact = (BigInt(amount) * BigInt(part.bps)) / 10_000n;
        const extra = BigInt(share) - exact;
        // Only the first part may carry the remainder, and it is smaller than the number of parts.
        assert.ok(i === 0 ? extra >= 0n && extra < BigInt(parts.length) : extra === 0n);
      }
      assert.equal(sum, BigInt(amount));
    }),
  );
});

test('cost: the largest safe cost is returned, one msat more throws; every bad count names itself', () => {
  const max = Number.MAX_SAFE_INTEGER;
  assert.equal(costMsat(max, 0, price(1000, 0)), max);
  assert.throws(() => costMsat(max, 1, price(1000, 1000)), /cost out of range/);
  assert.throws(() => costMsat(-1, 0, price(1, 1)), /tokensIn must be a non-negative safe integer/);
  assert.throws(() => costMsat(0, 1.5, price(1, 1)), /tokensOut must be/);
  assert.throws(() => costMsat(0, 0, price(-1, 1)), /input price must be/);
  assert.throws(() => costMsat(0, 0, price(1, max + 1)), /output price must be/);
});

test('split: every invalid part list is refused with its reason', () => {
  assert.throws(() => splitMsat(1, []), /at least one part/);
  assert.throws(() => splitMsat(-1, [{ id: 'a', bps: 10_000 }]), /amount must be/);
  for (const bps of [-1, 10_001, 1.5])
    assert.throws(
      () =>
        splitMsat(1, [
          { id: 'a', bps },
          { id: 'b', bps: 10_000 - bps },
        ]),
      /bad bps/,
      String(bps),
    );
  assert.throws(
    () =>
      splitMsat(1, [
        { id: 'a', bps: 5000 },
        { id: 'a', bps: 5000 },
      ]),
    /duplicate part a/,
  );
  assert.throws(() => splitMsat(1, [{ id: 'a', bps: 9999 }]), /add up to 10000 bps, got 9999/);
  // Each bound on its own: a negative part that the others balance, and one part over 10,000.
  assert.throws(
    () =>
      splitMsat(1, [
        { id: 'a', bps: -1 },
        { id: 'b', bps: 5000 },
        { id: 'c', bps: 5001 },
      ]),
    /bad bps -1/,
  );
  assert.throws(() => splitMsat(1, [{ id: 'a', bps: 10_001 }]), /bad bps 10001/);
  assert.deepEqual(
    [
      ...splitMsat(3, [
        { id: 'a', bps: 0 },
        { id: 'b', bps: 10_000 },
      ]),
    ],
    [
      ['a', 0],
      ['b', 3],
    ],
    'bps 0 and 10000 are valid',
  );
});
