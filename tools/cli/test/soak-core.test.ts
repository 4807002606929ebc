// The pure core of `fedai soak`: Prometheus text, the least-squares slope, the per-service goals and
// the report. (No end-to-end test of the command: starting the network alone takes ~40 s on 2 cores;
// `pnpm fedai soak --minutes 0.1` runs it.)
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  buildReport,
  FD_GROWTH_TOLERANCE,
  formatReport,
  leastSquaresSlope,
  type ProcessSample,
  promValue,
  type ReportInput,
  type ServiceSeries,
  summarizeLoad,
  summarizeService,
  warmupMsFor,
} from '../src/commands/soak-core';

const MB = 1024 * 1024;

test('promValue reads a metric with or without labels and skips longer names with the same prefix', () => {
  const text = [
    '# HELP nodejs_heap_size_used_bytes Process heap size used from Node.js in bytes.',
    '# TYPE nodejs_heap_size_used_bytes gauge',
    'nodejs_heap_size_used_bytes_total{service="x"} 1',
    'nodejs_heap_size_used_bytes{service="router",a="}"} 61973352',
    'nodejs_eventloop_lag_p99_seconds 0.026312703',
    'broken_metric{service="x"} NaN',
  ].join('\n');
  assert.equal(promValue(text, 'nodejs_heap_size_used_bytes'), 61973352);
  assert.equal(promValue(text, 'nodejs_eventloop_lag_p99_seconds'), 0.026312703);
  assert.equal(promValue(text, 'broken_metric'), null);
  assert.equal(promValue(text, 'absent'), null);
  assert.equal(promValue('', 'nodejs_heap_size_used_bytes'), null);
});

test('leastSquaresSlope: null below two distinct x, exact on a line', () => {
  assert.equal(leastSquaresSlope([]), null);
  assert.equal(leastSquaresSlope([{ x: 1, y: 2 }]), null);
  assert.equal(
    leastSquaresSlope([
      { x: 3, y: 1 },
      { x: 3, y: 5 },
    ]),
    null,
  );
  assert.equal(
    leastSquaresSlope([
      { x: 0, y: 1 },
      { x: 1, y: 3 },
      { x: 2, y: 5 },
    ]),
    2,
  );
});

test('property: the slope of points on a line is its slope, whatever the offset and the order', () => {
  fc.assert(
    fc.property(
      fc.uniqueArray(fc.integer({ min: 0, max: 10_000_000 }), { minLength: 2, maxLength: 50 }),
      fc.double({ min: -1000, max: 1000, noNaN: true }),
      fc.double({ min: -1e9, max: 1e9, noNaN: true }),
      (xs, slope, offset) => {
        const points = xs.map((x) => ({ x, y: offset + slope * x }));
        const fitted = leastSquaresSlope(points);
        assert.ok(fitted !== null);
        const tolerance = 1e-6 * (Math.abs(slope) + Math.abs(offset) / 1e6 + 1);
        assert.ok(Math.abs(fitted - slope) <= tolerance, `fitted ${fitted}, slope ${slope}`);
        const reversed = leastSquaresSlope([...points].reverse());
        assert.ok(reversed !== null && Math.abs(reversed - fitted) <= tolerance);
      },
    ),
  );
});

function series(
  name: string,
  rssMb: (tMs: number) => number,
  fds: (tMs: number) => number,
  count = 25,
): ServiceSeries {
  const samples: ProcessSample[] = Array.from({ length: count }, (_, i) => {
    const tMs = i * 5000;
    return {
      tMs,
      rssBytes: rssMb(tMs) * MB,
      anonBytes: rssMb(tMs) * MB,
      heapUsedBytes: 50 * MB,
      fds: fds(tMs),
      eventLoopP99S: 0.01 + i / 1000,
    };
  });
  return { name, pid: 100, samples };
}

test('summarizeService: a flat service holds both goals; the warm-up is left out of slope and growth', () => {
  // A warm-up jump from 100 to 200 MB, flat afterwards.
  const s = summarizeService(
    series(
      'router',
      (t) => (t < 20_000 ? 100 : 200),
      () => 40,
    ),
    20_000,
  );
  assert.equal(s.rssFirstMb, 100);
  assert.equal(s.rssLastMb, 200);
  assert.equal(s.rssSlopeMbPerHour, 0);
  assert.equal(s.rssGrowthPct, 0);
  assert.equal(s.memoryGoal, true);
  assert.equal(s.fdGoal, true);
  assert.deepEqual([s.fdFirst, s.fdLast, s.fdMax], [40, 40, 40]);
  assert.equal(s.heapGrowthPct, 0);
  assert.equal(s.eventLoopP99MaxMs, 34);
  assert.equal(s.steadySamples, 21);
});

test('summarizeService: steady growth is measured in MB/h and % of the start, and breaks the goals', () => {
  // 100 MB at the end of warm-up, +1 MB every 5 s: 720 MB/h; over 100 s, +20 MB = 20 %.
  const s = summarizeService(
    series(
      'settlement',
      (t) => 100 + (t - 20_000) / 5000,
      (t) => 30 + Math.floor(t / 10_000),
    ),
    20_000,
  );
  assert.equal(s.rssSlopeMbPerHour, 720);
  assert.equal(s.rssGrowthPct, 20);
  assert.equal(s.memoryGoal, false);
  assert.ok(s.fdGrowth !== null && s.fdGrowth >= FD_GROWTH_TOLERANCE);
  assert.equal(s.fdGoal, false);
  assert.equal(s.fdMax, 42);
});

test('summarizeService: the memory goal judges anonymous RSS where reported, else all of RSS', () => {
  // File-backed pages dropped under memory pressure: RSS falls by half, RssAnon stays flat.
  const pressured = series(
    'router',
    (t) => (t < 60_000 ? 800 : 400),
    () => 40,
  );
  for (const sample of pressured.samples) sample.anonBytes = 300 * MB;
  const s = summarizeService(pressured, 20_000);
  assert.ok(s.rssGrowthPct !== null && s.rssGrowthPct < -10);
  assert.equal(s.anonGrowthPct, 0);
  assert.equal(s.memoryGoal, true);
  // Anonymous RSS growing by 20 % fails even with RSS flat.
  const leaking = series(
    'router',
    () => 800,
    () => 40,
  );
  for (const sample of leaking.samples) sample.anonBytes = (100 + sample.tMs / 5000) * MB;
  assert.equal(summarizeService(leaking, 20_000).memoryGoal, false);
  // No RssAnon: RSS decides.
  const noAnon = series(
    'router',
    (t) => 100 + t / 1000,
    () => 40,
  );
  for (const sample of noAnon.samples) sample.anonBytes = null;
  const n = summarizeService(noAnon, 20_000);
  assert.equal(n.anonGrowthPct, null);
  assert.equal(n.memoryGoal, false);
});

test('summarizeService: heap and event-loop delay are n/a where /metrics is missing; too few samples is no verdict', () => {
  const relay = series(
    'relay',
    () => 100,
    () => 20,
  );
  for (const sample of relay.samples) {
    sample.heapUsedBytes = null;
    sample.eventLoopP99S = null;
  }
  const s = summarizeService(relay, 0);
  assert.equal(s.heapFirstMb, null);
  assert.equal(s.heapSlopeMbPerHour, null);
  assert.equal(s.eventLoopP99MaxMs, null);
  assert.equal(s.memoryGoal, true);
  const short = summarizeService(
    series(
      'x',
      () => 100,
      () => 20,
      1,
    ),
    0,
  );
  assert.equal(short.memoryGoal, null);
  assert.equal(short.fdGoal, null);
});

test('property: a flat series grows 0 % and never fails a goal, whatever the warm-up', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 4000 }),
      fc.integer({ min: 1, max: 40 }),
      fc.integer({ min: 0, max: 300_000 }),
      (rssMb, count, warmupMs) => {
        const flat: ServiceSeries = {
          name: 'flat',
          pid: 1,
          samples: Array.from({ length: count }, (_, i) => ({
            tMs: i * 5000,
            rssBytes: rssMb * MB,
            anonBytes: null,
            heapUsedBytes: null,
            fds: 10,
            eventLoopP99S: null,
          })),
        };
        const s = summarizeService(flat, warmupMs);
        assert.notEqual(s.memoryGoal, false);
        assert.notEqual(s.fdGoal, false);
        if (s.rssGrowthPct !== null) assert.equal(s.rssGrowthPct, 0);
        assert.equal(s.memoryGoal === null, s.steadySamples < 2);
      },
    ),
  );
});

test('summarizeLoad: totals, rate, error rate and the worst interval', () => {
  const load = summarizeLoad(
    [
      { tMs: 0, ok: 0, failed: 0 },
      { tMs: 5000, ok: 18, failed: 2 },
      { tMs: 10_000, ok: 38, failed: 2 },
      { tMs: 15_000, ok: 38, failed: 2 },
    ],
    20_000,
    { NO_ELIGIBLE_NODE: 2 },
  );
  assert.deepEqual(load, {
    ok: 38,
    failed: 2,
    requestsPerS: 2,
    errorRatePct: 5,
    worstIntervalErrorRatePct: 10,
    failuresByCode: { NO_ELIGIBLE_NODE: 2 },
  });
  assert.equal(summarizeLoad([], 0, {}).errorRatePct, 0);
});

test('warm-up: a fifth of the run, at most five minutes', () => {
  assert.equal(warmupMsFor(120_000), 24_000);
  assert.equal(warmupMsFor(3_600_000), 300_000);
});

function input(overrides: Partial<ReportInput> = {}): ReportInput {
  return {
    startedAt: '2026-12-03T06:00:00.000Z',
    minutes: 2,
    warmupMs: 20_000,
    sampleEveryMs: 5000,
    clients: 4,
    model: 'fedai-demo-noise-v1',
    loadAverage: [1.234, 2, 3],
    durationMs: 120_000,
    series: [
      series(
        'router',
        () => 200,
        () => 40,
      ),
      series(
        'node-1',
        () => 300,
        () => 30,
      ),
    ],
    loadSeries: [
      { tMs: 0, ok: 0, failed: 0 },
      { tMs: 120_000, ok: 480, failed: 0 },
    ],
    failuresByCode: {},
    ledger: { ok: true, accounts: 7, transfers: 900, problems: [] },
    ...overrides,
  };
}

test('buildReport: every goal holds only with flat services, no failure and a balanced ledger', () => {
  const good = buildReport(input());
  assert.deepEqual(good.goals, { memory: true, fd: true, noFailedRequests: true, ledger: true, all: true });
  assert.deepEqual(good.loadAverage, [1.23, 2, 3]);
  const leaking = buildReport(
    input({
      series: [
        series(
          'router',
          (t) => 200 + t / 1000,
          () => 40,
        ),
        series(
          'node-1',
          () => 300,
          () => 30,
        ),
      ],
    }),
  );
  assert.equal(leaking.goals.memory, false);
  assert.equal(leaking.goals.all, false);
  const broken = buildReport(input({ ledger: { ok: false, error: 'ledger verify: HTTP 500' } }));
  assert.equal(broken.goals.ledger, false);
  assert.equal(broken.goals.all, false);
  const failing = buildReport(
    input({
      loadSeries: [{ tMs: 120_000, ok: 479, failed: 1 }],
      failuresByCode: { CLIENT_TIMEOUT: 1 },
    }),
  );
  assert.equal(failing.goals.noFailedRequests, false);
});

test('formatReport: one table row per service, n/a for what is missing, the load, the ledger and the goals', () => {
  const relay = series(
    'relay',
    () => 100,
    () => 20,
  );
  for (const sample of relay.samples) sample.heapUsedBytes = null;
  const text = formatReport(
    buildReport(
      input({
        series: [
          relay,
          series(
            'router',
            () => 200,
            () => 40,
          ),
        ],
        loadSeries: [{ tMs: 120_000, ok: 470, failed: 10 }],
        failuresByCode: { CLIENT_TIMEOUT: 3, NO_ELIGIBLE_NODE: 7 },
        ledger: {
          ok: false,
          accounts: 7,
          transfers: 9,
          problems: [{ code: 'UNBALANCED', detail: 'off by 1' }],
        },
      }),
    ),
  );
  const rows = text.split('\n').filter((l) => l.startsWith('| '));
  assert.equal(rows.length, 3); // header + two services
  assert.match(
    rows[1] ?? '',
    /^\| relay \| 100 \| 100 \| 0 \| 0 \| 100 \| 100 \| 0 \| 0 \| n\/a \| n\/a \| n\/a \| 20\/20\/20 \| 0 \| 34 \| yes \| yes \|$/,
  );
  assert.match(text, /Requests: 470 ok, 10 failed \(CLIENT_TIMEOUT 3, NO_ELIGIBLE_NODE 7\); 4 requests\/s/);
  assert.match(text, /Ledger verify: PROBLEMS \(7 accounts, 9 transfers\); UNBALANCED: off by 1/);
  assert.match(text, /all: NO/);
  assert.match(
    formatReport(buildReport(input({ ledger: { ok: false, error: 'boom' } }))),
    /could not run \(boom\)/,
  );
});
