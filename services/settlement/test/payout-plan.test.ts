// planPayout's invariants over every input: a payout never holds more than the node can spend,
// never pays what is not payable yet, invoices whole satoshis, and its parts add up exactly.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { planPayout } from '../src/payout-plan';

const msat = fc.integer({ min: 0, max: 10_000_000_000 });
const inputs = fc
  .record({
    coveredMsat: msat,
    notYetMsat: msat,
    carriedMsat: fc.integer({ min: -1_000_000, max: 1_000_000 }),
    thresholdMsat: fc.integer({ min: 0, max: 1_000_000 }),
    maxFeeBps: fc.integer({ min: 0, max: 10_000 }),
    minFeeMsat: fc.integer({ min: 0, max: 100_000 }),
  })
  .map((r) => ({
    // Earnings: what the uncovered charges brought, plus what earlier payouts left (or took back).
    availableMsat: Math.max(0, r.coveredMsat + r.notYetMsat + r.carriedMsat),
    uncoveredMsat: r.coveredMsat + r.notYetMsat,
    coveredMsat: r.coveredMsat,
    thresholdMsat: r.thresholdMsat,
    maxFeeBps: r.maxFeeBps,
    minFeeMsat: r.minFeeMsat,
    notYetMsat: r.notYetMsat,
  }));

test('a plan holds at most what is spendable, leaves the not-yet-payable behind, and adds up', () => {
  fc.assert(
    fc.property(inputs, (input) => {
      const plan = planPayout(input);
      if (!plan.pay) return;
      assert.ok(plan.holdMsat <= input.availableMsat, 'never more than the node can spend');
      assert.ok(
        plan.holdMsat <= input.availableMsat - input.notYetMsat,
        'young or disputed charges stay behind',
      );
      assert.ok(plan.holdMsat >= input.thresholdMsat);
      assert.equal(plan.amountMsat + plan.maxFeeMsat, plan.holdMsat);
      assert.equal(plan.grossMsat + plan.carriedInMsat, plan.holdMsat);
      assert.equal(plan.grossMsat, input.coveredMsat);
      assert.equal(plan.amountMsat % 1000, 0, 'whole satoshis');
      assert.ok(plan.amountMsat > 0);
      const budget = Math.max(input.minFeeMsat, Math.ceil((plan.holdMsat * input.maxFeeBps) / 10_000));
      assert.ok(plan.maxFeeMsat >= budget, 'the fee budget is at least the configured one');
      assert.ok(plan.maxFeeMsat < budget + 1000, 'and only rounding more');
    }),
    { numRuns: 2000 },
  );
});

test('nothing payable, or under the threshold, is no payout', () => {
  fc.assert(
    fc.property(inputs, (input) => {
      const plan = planPayout(input);
      const payable = Math.min(input.availableMsat, input.availableMsat - input.notYetMsat);
      if (payable <= 0) assert.deepEqual(plan, { pay: false, reason: 'NOTHING_PAYABLE' });
      else if (payable < input.thresholdMsat)
        assert.deepEqual(plan, { pay: false, reason: 'BELOW_THRESHOLD' });
    }),
    { numRuns: 2000 },
  );
});

test('worked example: 19,000 msat at 1 % with a 1,000 msat floor pays 18,000', () => {
  assert.deepEqual(
    planPayout({
      availableMsat: 19_000,
      uncoveredMsat: 19_000,
      coveredMsat: 19_000,
      thresholdMsat: 10_000,
      maxFeeBps: 100,
      minFeeMsat: 1000,
    }),
    {
      pay: true,
      carriedInMsat: 0,
      grossMsat: 19_000,
      holdMsat: 19_000,
      amountMsat: 18_000,
      maxFeeMsat: 1000,
    },
  );
  // A fee budget that eats it all is below the threshold, not a zero-sat invoice.
  assert.deepEqual(
    planPayout({
      availableMsat: 1500,
      uncoveredMsat: 1500,
      coveredMsat: 1500,
      thresholdMsat: 0,
      maxFeeBps: 100,
      minFeeMsat: 1000,
    }),
    { pay: false, reason: 'BELOW_THRESHOLD' },
  );
});
