// Per-key spend budgets: the pure period rules, and the database hold on a real PostgreSQL with two
// pools (two router replicas) racing for one budget.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Db, openDb, startPostgres } from '@fed-ai/kit';
import { FedAiError } from '@fed-ai/protocol';
import { migrateRouter } from '../src/db';
import { SpendBudgets, spendPeriods } from '../src/spend-budget';

const at = (iso: string) => Date.parse(iso) / 1000;

describe('spendPeriods (UTC day and month)', () => {
  const cases: [string, string, { day: number | null; month: number | null }, string[], number[]][] = [
    [
      'mid-day',
      '2026-12-01T12:00:00Z',
      { day: 5, month: 9 },
      ['d:2026-12-01', 'm:2026-12'],
      [at('2026-12-02T00:00:00Z'), at('2027-01-01T00:00:00Z')],
    ],
    [
      'last second of the year',
      '2026-12-31T23:59:59Z',
      { day: 5, month: null },
      ['d:2026-12-31'],
      [at('2027-01-01T00:00:00Z')],
    ],
    [
      'first second of a month',
      '2027-03-01T00:00:00Z',
      { day: null, month: 7 },
      ['m:2027-03'],
      [at('2027-04-01T00:00:00Z')],
    ],
    [
      'leap day',
      '2028-02-29T08:00:00Z',
      { day: 1, month: 1 },
      ['d:2028-02-29', 'm:2028-02'],
      [at('2028-03-01T00:00:00Z'), at('2028-03-01T00:00:00Z')],
    ],
    ['no budgets', '2026-12-01T12:00:00Z', { day: null, month: null }, [], []],
  ];
  for (const [name, iso, limits, keys, ends] of cases)
    test(name, () => {
      const periods = spendPeriods(
        { budget_msat_per_day: limits.day, budget_msat_per_month: limits.month },
        at(iso),
      );
      assert.deepEqual(
        periods.map((p) => p.period),
        keys,
      );
      assert.deepEqual(
        periods.map((p) => p.endsAtS),
        ends,
      );
      for (const p of periods) assert.ok(p.endsAtS > at(iso));
    });
});

let pg: Awaited<ReturnType<typeof startPostgres>>;
const pools: Db[] = [];
before(async () => {
  pg = await startPostgres();
  for (let i = 0; i < 2; i++) pools.push(await openDb({ url: pg.url, maxConnections: 10 }));
  await migrateRouter(pools[0]!);
});
after(async () => {
  for (const db of pools) await db.close();
  await pg.stop();
});

describe('spend holds on PostgreSQL, two replicas', () => {
  const limits = { budget_msat_per_day: 1_000, budget_msat_per_month: 5_000 };
  let nowS = at('2026-12-01T10:00:00Z');
  const replicas = () => pools.map((db) => new SpendBudgets(db, () => nowS));

  test('60 concurrent holds of 100 msat on a day budget of 1,000 across two pools: exactly 10 pass', async () => {
    const [a, b] = replicas();
    const results = await Promise.allSettled(
      Array.from({ length: 60 }, (_, i) => (i % 2 === 0 ? a! : b!).hold('key_race', limits, 100)),
    );
    const held = results.filter((r) => r.status === 'fulfilled');
    const refused = results.filter(
      (r) =>
        r.status === 'rejected' && r.reason instanceof FedAiError && r.reason.code === 'BUDGET_EXHAUSTED',
    );
    assert.equal(held.length, 10);
    assert.equal(refused.length, 50);
    const usage = await a!.usage('key_race', limits);
    assert.deepEqual(usage[0], {
      period: 'd:2026-12-01',
      limit_msat: 1_000,
      spent_msat: 0,
      held_msat: 1_000,
    });
    assert.equal(usage[1]?.held_msat, 1_000);
    // Settling below the hold frees the difference; releasing frees it all; twice changes nothing.
    const holds = held.map(
      (r) => (r as PromiseFulfilledResult<Awaited<ReturnType<SpendBudgets['hold']>>>).value,
    );
    await holds[0]!.settle(40);
    await holds[0]!.settle(40);
    await holds[1]!.release();
    await holds[1]!.settle(100);
    const after = await a!.usage('key_race', limits);
    assert.equal(after[0]?.spent_msat, 40);
    assert.equal(after[0]?.held_msat, 800);
    // 1,000 - 840 = 160 left: one more hold of 100 fits, a second does not.
    await a!.hold('key_race', limits, 100);
    await assert.rejects(
      b!.hold('key_race', limits, 100),
      (e: unknown) => e instanceof FedAiError && e.code === 'BUDGET_EXHAUSTED',
    );
  });

  test('a settle never charges the budget more than was held', async () => {
    const [a] = replicas();
    const hold = await a!.hold('key_cap', limits, 100);
    await hold.settle(10_000);
    assert.equal((await a!.usage('key_cap', limits))[0]?.spent_msat, 100);
  });

  test('the month budget binds across days; a refusal says when the period ends', async () => {
    const [a] = replicas();
    const monthOnly = { budget_msat_per_day: 2_000, budget_msat_per_month: 3_000 };
    for (const day of ['01', '02']) {
      nowS = at(`2026-12-${day}T10:00:00Z`);
      for (let i = 0; i < 3; i++) await (await a!.hold('key_month', monthOnly, 500)).settle(500);
    }
    nowS = at('2026-12-03T10:00:00Z');
    await assert.rejects(a!.hold('key_month', monthOnly, 1), (e: unknown) => {
      assert.ok(e instanceof FedAiError && e.code === 'BUDGET_EXHAUSTED');
      assert.equal(e.details?.retry_after_s, at('2027-01-01T00:00:00Z') - nowS);
      assert.match(e.message, /month 2026-12/);
      return true;
    });
    // A refused hold on the month left nothing held on the day (all or nothing).
    assert.equal((await a!.usage('key_month', monthOnly))[0]?.held_msat, 0);
    nowS = at('2027-01-01T00:00:00Z');
    await a!.hold('key_month', monthOnly, 1);
  });
});
