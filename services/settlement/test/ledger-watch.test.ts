// ledger verify as metrics: a balanced ledger reads 1, a corrupted one 0 with its problems counted,
// and a verify that cannot run is counted as an error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { openDb } from '@fed-ai/kit';
import { Ledger, type LedgerReport, verifyLedger } from '@fed-ai/ledger';
import { Registry } from 'prom-client';
import { LedgerWatch } from '../src/ledger-watch';

async function value(metrics: Registry, name: string, labels: Record<string, string> = {}) {
  const metric = (await metrics.getMetricsAsJSON()).find((m) => m.name === name);
  const match = metric?.values.find((v) =>
    Object.entries(labels).every(([k, want]) => (v.labels as Record<string, unknown>)[k] === want),
  );
  return match?.value;
}

test('a real ledger: balanced reads 1, then a corrupted account reads 0 with its problems', async () => {
  const db = await openDb({});
  try {
    const ledger = await Ledger.open(db);
    await ledger.createAccounts([{ id: 'w:a' }, { id: 'w:b' }]);
    await ledger.createTransfers([
      { id: 'w-1', kind: 'single', debitAccountId: 'w:a', creditAccountId: 'w:b', amountMsat: 10 },
    ]);
    const metrics = new Registry();
    const watch = new LedgerWatch(() => verifyLedger(db), metrics);
    assert.equal((await watch.run()).ok, true);
    assert.equal(await value(metrics, 'fedai_ledger_verify_ok'), 1);
    assert.equal(await value(metrics, 'fedai_ledger_verify_problems'), 0);
    await db.query(`UPDATE ledger_accounts SET credits_posted = credits_posted + 5 WHERE id = 'w:b'`);
    const report = await watch.run();
    assert.equal(report.ok, false);
    assert.equal(await value(metrics, 'fedai_ledger_verify_ok'), 0);
    assert.equal(await value(metrics, 'fedai_ledger_verify_problems'), report.problems.length);
    assert.ok(report.problems.length > 0);
    assert.equal(await value(metrics, 'fedai_ledger_verify_runs_total', { outcome: 'balanced' }), 1);
    assert.equal(await value(metrics, 'fedai_ledger_verify_runs_total', { outcome: 'problems' }), 1);
    assert.ok(((await value(metrics, 'fedai_ledger_verify_last_run_timestamp_seconds')) ?? 0) > 0);
  } finally {
    await db.close();
  }
});

test('concurrent callers share one run; a verify that throws is counted as an error', async () => {
  let calls = 0;
  let fail = false;
  const metrics = new Registry();
  const watch = new LedgerWatch(async (): Promise<LedgerReport> => {
    calls += 1;
    await new Promise((done) => setImmediate(done));
    if (fail) throw new Error('database gone');
    return { ok: true, accounts: 0, transfers: 0, postedTotalMsat: 0, pendingTotalMsat: 0, problems: [] };
  }, metrics);
  await Promise.all([watch.run(), watch.run()]);
  assert.equal(calls, 1);
  fail = true;
  await assert.rejects(watch.run(), /database gone/);
  assert.equal(await value(metrics, 'fedai_ledger_verify_runs_total', { outcome: 'error' }), 1);
  assert.equal(await value(metrics, 'fedai_ledger_verify_ok'), 1, 'an error leaves the last verdict');
  await watch.stop();
});
