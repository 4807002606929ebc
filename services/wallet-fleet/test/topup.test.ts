// The top-up decision: up to the high watermark, never past the day's budget or the treasury.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { topupAmount, topupSettingsSchema } from '../src/topup';

const base = {
  balanceMsat: 100,
  lowMsat: 500,
  highMsat: 2_000,
  movedTodayMsat: 0,
  budgetMsatPerDay: 10_000,
  treasuryMsat: 50_000,
};
const cases: [string, Partial<typeof base>, number][] = [
  ['below low: up to high', {}, 1_900],
  ['at low: nothing', { balanceMsat: 500 }, 0],
  ['above low: nothing', { balanceMsat: 1_000 }, 0],
  ['budget left smaller than wanted', { movedTodayMsat: 9_000 }, 1_000],
  ['budget spent', { movedTodayMsat: 10_000 }, 0],
  ['budget overspent (old settings): nothing', { movedTodayMsat: 12_000 }, 0],
  ['treasury smaller than wanted', { treasuryMsat: 700 }, 700],
  ['empty treasury', { treasuryMsat: 0 }, 0],
  ['empty wallet', { balanceMsat: 0 }, 2_000],
];
for (const [name, change, expected] of cases)
  test(`topupAmount: ${name}`, () => assert.equal(topupAmount({ ...base, ...change }), expected));

test('topupAmount never passes the high watermark, the day budget or the treasury (property)', () => {
  const msat = fc.integer({ min: 0, max: 1_000_000 });
  fc.assert(
    fc.property(msat, msat, msat, msat, msat, msat, (balance, low, span, moved, budget, treasury) => {
      const t = {
        balanceMsat: balance,
        lowMsat: low,
        highMsat: low + span + 1,
        movedTodayMsat: moved,
        budgetMsatPerDay: budget + 1,
        treasuryMsat: treasury,
      };
      const amount = topupAmount(t);
      assert.ok(amount >= 0);
      assert.ok(amount === 0 || balance < low);
      assert.ok(balance + amount <= t.highMsat || amount === 0);
      assert.ok(moved + amount <= t.budgetMsatPerDay || amount === 0);
      assert.ok(amount <= treasury);
    }),
    { numRuns: 300 },
  );
});

test('topup settings: high above low, integers, strict; null turns the loop off', () => {
  assert.equal(topupSettingsSchema.parse(null), null);
  assert.ok(topupSettingsSchema.safeParse({ low_msat: 1, high_msat: 2, budget_msat_per_day: 3 }).success);
  for (const bad of [
    { low_msat: 5, high_msat: 5, budget_msat_per_day: 3 },
    { low_msat: 1.5, high_msat: 5, budget_msat_per_day: 3 },
    { low_msat: 1, high_msat: 5, budget_msat_per_day: 3, extra: 1 },
    { low_msat: 1, high_msat: 5 },
  ])
    assert.equal(topupSettingsSchema.safeParse(bad).success, false, JSON.stringify(bad));
});
