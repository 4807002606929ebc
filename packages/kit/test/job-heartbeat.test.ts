// Background job heartbeats (job-heartbeat.ts): outcomes counted, a hung run reported as a
// timeout without blocking the next run, and a job that stopped beating reported overdue.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { Registry } from 'prom-client';
import { beating, JobHeartbeats, JobTimeoutError } from '../src/index';

// The timeout timers are unref'd (they must not hold a stopping service open): keep this process up.
const keepAlive = setInterval(() => {}, 1_000);
after(() => clearInterval(keepAlive));

async function metricValues(registry: Registry): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const metric of await registry.getMetricsAsJSON())
    for (const v of metric.values) {
      const labels = Object.entries(v.labels)
        .map(([k, x]) => `${k}=${x}`)
        .sort()
        .join(',');
      out.set(`${metric.name}{${labels}}`, v.value);
    }
  return out;
}

test('a successful run beats; an error is counted and rethrown', async () => {
  let nowMs = 1_000_000;
  const jobs = new JobHeartbeats({ now: () => nowMs });
  const registry = new Registry();
  jobs.register(registry);
  const job = jobs.job('sweeper', { intervalMs: 1_000 });
  assert.equal(jobs.job('sweeper', { intervalMs: 5 }), job, 'one object per name');
  assert.equal(await job.run(async () => 42), 42);
  nowMs += 500;
  await assert.rejects(
    job.run(async () => {
      throw new Error('db down');
    }),
    /db down/,
  );
  const m = await metricValues(registry);
  assert.equal(m.get('fedai_job_runs_total{job_name=sweeper,outcome=success}'), 1);
  assert.equal(m.get('fedai_job_runs_total{job_name=sweeper,outcome=error}'), 1);
  assert.equal(m.get('fedai_job_last_success_timestamp_seconds{job_name=sweeper}'), 1_000);
  assert.equal(m.get('fedai_job_overdue{job_name=sweeper}'), 0);
  // A bare component (no heartbeats) runs its work directly.
  assert.equal(await beating(undefined, async () => 'bare'), 'bare');
});

test('a hung run is reported as a timeout, frees the next run, and the job turns overdue', async () => {
  let nowMs = 0;
  const jobs = new JobHeartbeats({ now: () => nowMs });
  const registry = new Registry();
  jobs.register(registry);
  const job = jobs.job('outbox', { intervalMs: 10, timeoutMs: 20, overdueAfterMs: 1_000 });
  let aborted = false;
  const hung = job.run(
    (signal) =>
      new Promise<never>(() => {
        signal.addEventListener('abort', () => {
          aborted = true;
        });
      }),
  );
  await assert.rejects(
    hung,
    (error: unknown) => error instanceof JobTimeoutError && error.code === 'JOB_TIMEOUT',
  );
  assert.equal(aborted, true, 'the hung run is told to stop');
  // The next run is not blocked by the hung one.
  assert.equal(await job.run(async () => 'next'), 'next');
  let m = await metricValues(registry);
  assert.equal(m.get('fedai_job_runs_total{job_name=outbox,outcome=timeout}'), 1);
  assert.equal(m.get('fedai_job_runs_total{job_name=outbox,outcome=success}'), 1);
  assert.equal(m.get('fedai_job_overdue{job_name=outbox}'), 0);
  // Nothing succeeds for longer than the overdue bound: overdue.
  nowMs += 1_001;
  m = await metricValues(registry);
  assert.equal(m.get('fedai_job_overdue{job_name=outbox}'), 1);
});

test('runs that hang every time cannot pile up: past two abandoned runs the next ones are skipped', async () => {
  const jobs = new JobHeartbeats();
  const registry = new Registry();
  jobs.register(registry);
  const job = jobs.job('payouts', { intervalMs: 10, timeoutMs: 10 });
  let release: () => void = () => {};
  const gate = new Promise<void>((done) => {
    release = done;
  });
  for (let i = 0; i < 2; i++)
    await assert.rejects(
      job.run(() => gate),
      JobTimeoutError,
    );
  assert.equal(await job.run(async () => 'not run'), undefined);
  let m = await metricValues(registry);
  assert.equal(m.get('fedai_job_runs_total{job_name=payouts,outcome=skipped}'), 1);
  // The hung runs finish late: their slots are freed, their outcome is not counted as a success.
  release();
  await gate;
  await new Promise((r) => setImmediate(r));
  assert.equal(await job.run(async () => 'runs again'), 'runs again');
  m = await metricValues(registry);
  assert.equal(m.get('fedai_job_runs_total{job_name=payouts,outcome=success}'), 1);
  assert.equal(m.get('fedai_job_runs_total{job_name=payouts,outcome=timeout}'), 2);
});

test('a job that never succeeded is overdue once the bound passes after it was registered', async () => {
  let nowMs = 0;
  const jobs = new JobHeartbeats({ now: () => nowMs });
  const registry = new Registry();
  jobs.register(registry);
  const job = jobs.job('reconcile', { intervalMs: 60_000 });
  // Defaults: timeout twice the interval (at least a minute), overdue after 3 intervals or timeout + interval.
  assert.equal(job.timeoutMs, 120_000);
  assert.equal(job.overdueAfterMs, 180_000);
  nowMs = 180_000;
  assert.equal((await metricValues(registry)).get('fedai_job_overdue{job_name=reconcile}'), 0);
  nowMs = 180_001;
  assert.equal((await metricValues(registry)).get('fedai_job_overdue{job_name=reconcile}'), 1);
});
