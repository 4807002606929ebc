// The pure core of `fedai soak`: reading Prometheus text, the least-squares growth of a series,
// the per-service summary with the issue-17 goals, and the report (JSON and Markdown). No I/O here;
// soak.ts is the shell that starts the network, drives the load and samples the processes.

/** One look at one service process. Heap and event-loop delay come from its /metrics (null: not exposed). */
export interface ProcessSample {
  /** Milliseconds since the load started. */
  tMs: number;
  rssBytes: number;
  /**
   * RssAnon of /proc/<pid>/status: the part of RSS the kernel cannot drop (heap, WASM memory); null
   * where not reported. File-backed pages in RSS come and go with the machine's memory pressure.
   */
  anonBytes: number | null;
  heapUsedBytes: number | null;
  fds: number;
  eventLoopP99S: number | null;
}

export interface ServiceSeries {
  name: string;
  pid: number;
  samples: ProcessSample[];
}

/** The client side at one sampling time: running totals since the load started. */
export interface LoadSample {
  tMs: number;
  ok: number;
  failed: number;
}

export interface LedgerCheck {
  ok: boolean;
  accounts: number;
  transfers: number;
  problems: { code: string; detail: string }[];
}

/** Memory may grow less than this over the run after warm-up (issue 17). */
const MEMORY_GROWTH_LIMIT_PCT = 10;
/**
 * "No fd growth": the fitted fd count may rise by fewer than this many descriptors over the run
 * after warm-up (sockets of requests in flight come and go; a leak climbs without end).
 */
export const FD_GROWTH_TOLERANCE = 5;

const MB = 1024 * 1024;
const HOUR_MS = 3_600_000;

/**
 * The value of the first series of a metric in Prometheus text exposition (`name{labels} value` or
 * `name value`); null when the metric is absent or its value is not a finite number.
 */
export function promValue(text: string, metric: string): number | null {
  for (const line of text.split('\n')) {
    if (!line.startsWith(metric)) continue;
    const rest = line.slice(metric.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue; // a longer name with this prefix
    const afterLabels = rest[0] === '{' ? rest.slice(rest.lastIndexOf('}') + 1) : rest;
    const value = Number(afterLabels.trim().split(/\s+/)[0]);
    return Number.isFinite(value) ? value : null;
  }
  return null;
}

/** The least-squares slope of y over x; null with fewer than two distinct x. */
export function leastSquaresSlope(points: readonly { x: number; y: number }[]): number | null {
  const n = points.length;
  if (n < 2) return null;
  const meanX = points.reduce((s, p) => s + p.x, 0) / n;
  const meanY = points.reduce((s, p) => s + p.y, 0) / n;
  let sxx = 0;
  let sxy = 0;
  for (const p of points) {
    sxx += (p.x - meanX) ** 2;
    sxy += (p.x - meanX) * (p.y - meanY);
  }
  return sxx === 0 ? null : sxy / sxx;
}

/** A least-squares line over points, read at their first x and over their x range. */
interface Fit {
  slopePerMs: number;
  /** The fitted value at the first point's x. */
  start: number;
  /** slope × (last x − first x). */
  rise: number;
}

function fit(points: readonly { x: number; y: number }[]): Fit | null {
  const slopePerMs = leastSquaresSlope(points);
  if (slopePerMs === null) return null;
  const n = points.length;
  const meanX = points.reduce((s, p) => s + p.x, 0) / n;
  const meanY = points.reduce((s, p) => s + p.y, 0) / n;
  const firstX = points[0]!.x;
  const lastX = points[n - 1]!.x;
  return { slopePerMs, start: meanY + slopePerMs * (firstX - meanX), rise: slopePerMs * (lastX - firstX) };
}

export interface ServiceSummary {
  name: string;
  pid: number;
  samples: number;
  /** Samples after the warm-up: the ones the slopes and goals use. */
  steadySamples: number;
  rssFirstMb: number | null;
  rssLastMb: number | null;
  /** Least-squares MB per hour over the samples after warm-up. */
  rssSlopeMbPerHour: number | null;
  /** The fitted RSS rise over the run after warm-up, in % of the fitted RSS at its start. */
  rssGrowthPct: number | null;
  anonFirstMb: number | null;
  anonLastMb: number | null;
  anonSlopeMbPerHour: number | null;
  anonGrowthPct: number | null;
  heapFirstMb: number | null;
  heapLastMb: number | null;
  heapSlopeMbPerHour: number | null;
  heapGrowthPct: number | null;
  fdFirst: number | null;
  fdLast: number | null;
  fdMax: number | null;
  /** The fitted fd rise over the run after warm-up. */
  fdGrowth: number | null;
  eventLoopP99MaxMs: number | null;
  /** null: too few samples after warm-up to tell. */
  memoryGoal: boolean | null;
  fdGoal: boolean | null;
}

const round = (value: number, digits: number) => {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
};
const maybe = (value: number | null | undefined, digits: number) =>
  value === null || value === undefined ? null : round(value, digits);

/** The summary of one service; `warmupMs` of samples from the start are left out of slopes and goals. */
export function summarizeService(series: ServiceSeries, warmupMs: number): ServiceSummary {
  const all = series.samples;
  const steady = all.filter((s) => s.tMs >= warmupMs);
  const rssFit = fit(steady.map((s) => ({ x: s.tMs, y: s.rssBytes })));
  const anonPoints = steady.flatMap((s) => (s.anonBytes === null ? [] : [{ x: s.tMs, y: s.anonBytes }]));
  const anonFit = anonPoints.length === steady.length ? fit(anonPoints) : null;
  const heapPoints = steady.flatMap((s) =>
    s.heapUsedBytes === null ? [] : [{ x: s.tMs, y: s.heapUsedBytes }],
  );
  const heapFit = heapPoints.length === steady.length ? fit(heapPoints) : null;
  const fdFit = fit(steady.map((s) => ({ x: s.tMs, y: s.fds })));
  const pct = (f: Fit | null) => (f === null || f.start <= 0 ? null : (100 * f.rise) / f.start);
  const first = all[0];
  const last = all.at(-1);
  const heaps = all.map((s) => s.heapUsedBytes);
  const lags = all.flatMap((s) => (s.eventLoopP99S === null ? [] : [s.eventLoopP99S]));
  const rssGrowthPct = pct(rssFit);
  const anonGrowthPct = pct(anonFit);
  const heapGrowthPct = pct(heapFit);
  const anons = all.map((s) => s.anonBytes);
  const mb = (bytes: number | null | undefined) => (bytes == null ? null : round(bytes / MB, 1));
  const mbPerHour = (f: Fit | null) => (f ? round((f.slopePerMs * HOUR_MS) / MB, 1) : null);
  // The goal's measure: anonymous RSS where the kernel reports it (a leak grows it, memory pressure
  // does not shrink it), else all of RSS. The heap's sawtooth is shown, not judged.
  const memoryGrowthPct = anonFit ? anonGrowthPct : rssGrowthPct;
  return {
    name: series.name,
    pid: series.pid,
    samples: all.length,
    steadySamples: steady.length,
    rssFirstMb: first ? round(first.rssBytes / MB, 1) : null,
    rssLastMb: last ? round(last.rssBytes / MB, 1) : null,
    rssSlopeMbPerHour: mbPerHour(rssFit),
    rssGrowthPct: maybe(rssGrowthPct, 1),
    anonFirstMb: mb(anons[0]),
    anonLastMb: mb(anons.at(-1)),
    anonSlopeMbPerHour: mbPerHour(anonFit),
    anonGrowthPct: maybe(anonGrowthPct, 1),
    heapFirstMb: mb(heaps[0]),
    heapLastMb: mb(heaps.at(-1)),
    heapSlopeMbPerHour: mbPerHour(heapFit),
    heapGrowthPct: maybe(heapGrowthPct, 1),
    fdFirst: first?.fds ?? null,
    fdLast: last?.fds ?? null,
    fdMax: all.length ? Math.max(...all.map((s) => s.fds)) : null,
    fdGrowth: maybe(fdFit?.rise, 1),
    eventLoopP99MaxMs: lags.length ? round(Math.max(...lags) * 1000, 1) : null,
    memoryGoal: memoryGrowthPct === null ? null : memoryGrowthPct < MEMORY_GROWTH_LIMIT_PCT,
    fdGoal: fdFit ? fdFit.rise < FD_GROWTH_TOLERANCE : null,
  };
}

export interface LoadSummary {
  ok: number;
  failed: number;
  requestsPerS: number;
  errorRatePct: number;
  /** The worst error rate of one sampling interval (with at least one request). */
  worstIntervalErrorRatePct: number;
  failuresByCode: Record<string, number>;
}

export function summarizeLoad(
  samples: readonly LoadSample[],
  durationMs: number,
  failuresByCode: Record<string, number>,
): LoadSummary {
  const last = samples.at(-1) ?? { tMs: 0, ok: 0, failed: 0 };
  const total = last.ok + last.failed;
  let worst = 0;
  for (let i = 1; i < samples.length; i++) {
    const a = samples[i - 1]!;
    const b = samples[i]!;
    const requests = b.ok + b.failed - (a.ok + a.failed);
    if (requests > 0) worst = Math.max(worst, (100 * (b.failed - a.failed)) / requests);
  }
  return {
    ok: last.ok,
    failed: last.failed,
    requestsPerS: durationMs > 0 ? round((1000 * total) / durationMs, 2) : 0,
    errorRatePct: total > 0 ? round((100 * last.failed) / total, 2) : 0,
    worstIntervalErrorRatePct: round(worst, 2),
    failuresByCode: { ...failuresByCode },
  };
}

export interface SoakReport {
  startedAt: string;
  minutes: number;
  warmupS: number;
  sampleEveryS: number;
  clients: number;
  model: string;
  loadAverage: number[];
  services: ServiceSummary[];
  load: LoadSummary;
  ledger: LedgerCheck | { ok: false; error: string };
  goals: {
    memory: boolean | null;
    fd: boolean | null;
    noFailedRequests: boolean;
    ledger: boolean;
    /** Every goal held (null goals, too few samples, count as not held). */
    all: boolean;
  };
  /** Per service: every sample, for charts and second looks. */
  series: ServiceSeries[];
  loadSeries: LoadSample[];
}

export interface ReportInput {
  startedAt: string;
  minutes: number;
  warmupMs: number;
  sampleEveryMs: number;
  clients: number;
  model: string;
  loadAverage: number[];
  durationMs: number;
  series: ServiceSeries[];
  loadSeries: LoadSample[];
  failuresByCode: Record<string, number>;
  ledger: SoakReport['ledger'];
}

const allOf = (values: (boolean | null)[]): boolean | null =>
  values.includes(false) ? false : values.includes(null) || values.length === 0 ? null : true;

export function buildReport(input: ReportInput): SoakReport {
  const services = input.series.map((s) => summarizeService(s, input.warmupMs));
  const load = summarizeLoad(input.loadSeries, input.durationMs, input.failuresByCode);
  const memory = allOf(services.map((s) => s.memoryGoal));
  const fd = allOf(services.map((s) => s.fdGoal));
  const noFailedRequests = load.failed === 0 && load.ok > 0;
  return {
    startedAt: input.startedAt,
    minutes: input.minutes,
    warmupS: round(input.warmupMs / 1000, 1),
    sampleEveryS: round(input.sampleEveryMs / 1000, 1),
    clients: input.clients,
    model: input.model,
    loadAverage: input.loadAverage.map((l) => round(l, 2)),
    services,
    load,
    ledger: input.ledger,
    goals: {
      memory,
      fd,
      noFailedRequests,
      ledger: input.ledger.ok,
      all: memory === true && fd === true && noFailedRequests && input.ledger.ok,
    },
    series: input.series,
    loadSeries: input.loadSeries,
  };
}

/**
 * The warm-up left out of slopes: a fifth of the run, at most five minutes. (Measured: every
 * service gives back a few hundred MB of anonymous memory once, about two minutes after it
 * started; a slope over that step says nothing about a leak.)
 */
export function warmupMsFor(durationMs: number): number {
  return Math.min(300_000, Math.round(durationMs / 5));
}

const cell = (value: number | null, unit = '') => (value === null ? 'n/a' : `${value}${unit}`);
const verdict = (value: boolean | null) => (value === null ? 'too few samples' : value ? 'yes' : 'NO');

/** The report as Markdown: a table per service, the load, the ledger and the goals. */
export function formatReport(report: SoakReport): string {
  const lines: string[] = [];
  lines.push(
    `Soak: ${report.minutes} min from ${report.startedAt}, ${report.clients} clients, model ${report.model}, ` +
      `a sample every ${report.sampleEveryS} s, warm-up ${report.warmupS} s left out of slopes; ` +
      `load average ${report.loadAverage.join(' ')}`,
  );
  lines.push('');
  lines.push(
    '| service | RSS first MB | RSS last MB | RSS slope MB/h | RSS growth % | anon first MB | anon last MB | anon slope MB/h | anon growth % | heap first MB | heap last MB | heap slope MB/h | fd first/last/max | fd growth | event-loop p99 max ms | memory goal | fd goal |',
  );
  lines.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---|');
  for (const s of report.services)
    lines.push(
      `| ${s.name} | ${cell(s.rssFirstMb)} | ${cell(s.rssLastMb)} | ${cell(s.rssSlopeMbPerHour)} | ${cell(s.rssGrowthPct)} | ` +
        `${cell(s.anonFirstMb)} | ${cell(s.anonLastMb)} | ${cell(s.anonSlopeMbPerHour)} | ${cell(s.anonGrowthPct)} | ` +
        `${cell(s.heapFirstMb)} | ${cell(s.heapLastMb)} | ${cell(s.heapSlopeMbPerHour)} | ` +
        `${cell(s.fdFirst)}/${cell(s.fdLast)}/${cell(s.fdMax)} | ${cell(s.fdGrowth)} | ${cell(s.eventLoopP99MaxMs)} | ` +
        `${verdict(s.memoryGoal)} | ${verdict(s.fdGoal)} |`,
    );
  lines.push('');
  const l = report.load;
  const codes = Object.entries(l.failuresByCode)
    .sort(([a], [b]) => a.localeCompare(b))
    .map(([code, n]) => `${code} ${n}`)
    .join(', ');
  lines.push(
    `Requests: ${l.ok} ok, ${l.failed} failed${codes ? ` (${codes})` : ''}; ${l.requestsPerS} requests/s; ` +
      `error rate ${l.errorRatePct}% (worst interval ${l.worstIntervalErrorRatePct}%)`,
  );
  const ledger = report.ledger;
  lines.push(
    'error' in ledger
      ? `Ledger verify: could not run (${ledger.error})`
      : `Ledger verify: ${ledger.ok ? 'balanced' : 'PROBLEMS'} (${ledger.accounts} accounts, ${ledger.transfers} transfers)` +
          ledger.problems.map((p) => `; ${p.code}: ${p.detail}`).join(''),
  );
  const g = report.goals;
  lines.push(
    `Goals: memory (anon RSS) growth < ${MEMORY_GROWTH_LIMIT_PCT}% after warm-up: ${verdict(g.memory)}; ` +
      `no fd growth (fitted rise < ${FD_GROWTH_TOLERANCE}): ${verdict(g.fd)}; no failed requests: ${verdict(g.noFailedRequests)}; ` +
      `ledger balanced: ${verdict(g.ledger)}; all: ${g.all ? 'yes' : 'NO'}`,
  );
  lines.push(
    'Heap and event-loop delay come from /metrics (prom-client defaults: nodejs_heap_size_used_bytes, ' +
      'nodejs_eventloop_lag_p99_seconds); n/a where a service does not expose /metrics (the relay). RSS, anon (RssAnon: the RSS the kernel cannot drop under memory pressure; the memory goal) and fds: /proc/<pid>. ' +
      'Growth: the least-squares line over the samples after warm-up, its rise over that time.',
  );
  return `${lines.join('\n')}\n`;
}
