// Tables and JSON for `pnpm bench:gateway`: per (mode, concurrency) cell and path, p50/p99 over all
// rounds, what they add over the baseline of the same cell, req/s and CPU ms per request per process.
import type { PathName } from './gateway-stacks';
import { fmt, summarize } from './stats';

export interface Totals {
  latencies: number[];
  /** Streams: time to the first chunk with text, per answer. */
  firstTokenMs: number[];
  wallMs: number;
  count: number;
  errors: Record<string, number>;
  /** CPU ms per process name over all batches (the upstream's under "upstream"). */
  cpuMs: Record<string, number>;
  clientCpuMs: number;
}

export interface CellResult {
  mode: 'json' | 'stream';
  concurrency: number;
  paths: { path: PathName; totals: Totals }[];
}

export interface Summary {
  command: string;
  startedAt: string;
  node: string;
  cpus: number;
  loadavgStart: string;
  loadavgEnd: string;
  rounds: number;
  requestsPerBatch: number;
  /** Paid path: what the tab was charged against the sum of the signed costs in the answers. */
  /** Per paid path: what its tab was charged and the sum of the signed costs in its answers. */
  paid: { path: string; chargedMsat: number; signedCostMsat: number }[];
}

interface Row {
  mode: string;
  concurrency: number;
  path: PathName;
  requests: number;
  errors: number;
  errorKinds: Record<string, number>;
  p50Ms: number;
  p99Ms: number;
  addedP50Ms: number;
  addedP99Ms: number;
  /** Streams only: time to first token p50 and what it adds over the baseline's. */
  ttftP50Ms?: number;
  addedTtftP50Ms?: number;
  reqPerS: number;
  reqPerSVsBaseline: number;
  gatewayCpuMsPerRequest: number;
  cpuMsPerRequest: Record<string, number>;
  clientCpuMsPerRequest: number;
}

function rowOf(cell: CellResult, entry: CellResult['paths'][number], base: Totals): Row {
  const { totals } = entry;
  const own = summarize(totals.latencies);
  const ref = summarize(base.latencies);
  const reqPerS = totals.count / (totals.wallMs / 1000);
  const cpuMsPerRequest = Object.fromEntries(
    Object.entries(totals.cpuMs).map(([name, ms]) => [name, ms / totals.count]),
  );
  const gatewayCpu = Object.entries(cpuMsPerRequest)
    .filter(([name]) => name !== 'upstream')
    .reduce((sum, [, ms]) => sum + ms, 0);
  const errors = Object.values(totals.errors).reduce((a, b) => a + b, 0);
  const ttft = totals.firstTokenMs.length > 0 ? summarize(totals.firstTokenMs).median : undefined;
  const baseTtft = base.firstTokenMs.length > 0 ? summarize(base.firstTokenMs).median : undefined;
  return {
    mode: cell.mode,
    concurrency: cell.concurrency,
    path: entry.path,
    requests: totals.count,
    errors,
    errorKinds: totals.errors,
    p50Ms: own.median,
    p99Ms: own.p99,
    addedP50Ms: own.median - ref.median,
    addedP99Ms: own.p99 - ref.p99,
    ...(ttft === undefined ? {} : { ttftP50Ms: ttft }),
    ...(ttft === undefined || baseTtft === undefined ? {} : { addedTtftP50Ms: ttft - baseTtft }),
    reqPerS,
    reqPerSVsBaseline: reqPerS / (base.count / (base.wallMs / 1000)),
    gatewayCpuMsPerRequest: gatewayCpu,
    cpuMsPerRequest,
    clientCpuMsPerRequest: totals.clientCpuMs / totals.count,
  };
}

const perProcess = (row: Row) =>
  Object.entries(row.cpuMsPerRequest)
    .filter(([name]) => name !== 'upstream')
    .map(([name, ms]) => `${name} ${fmt(ms, 2)}`)
    .join(' · ') || '—';

function line(row: Row): string {
  const base = row.path === 'baseline';
  return `| ${row.mode} | ${row.concurrency} | ${row.path} | ${fmt(row.p50Ms, 2)} | ${fmt(row.p99Ms, 2)} | ${
    base ? '—' : fmt(row.addedP50Ms, 2)
  } | ${base ? '—' : fmt(row.addedP99Ms, 2)} | ${fmt(row.reqPerS)} | ${fmt(row.reqPerSVsBaseline, 2)} | ${
    base ? '—' : fmt(row.gatewayCpuMsPerRequest, 2)
  } | ${perProcess(row)} | ${fmt(row.cpuMsPerRequest.upstream ?? 0, 2)} | ${row.errors} |`;
}

/** Streams: time to first token, p50, and what it adds over the baseline of the same cell. */
function ttftLines(rows: Row[]): string[] {
  const streams = rows.filter((r) => r.ttftP50Ms !== undefined);
  if (streams.length === 0) return [];
  return [
    '',
    '| stream c | path | time to first token p50 ms | added ms |',
    '|---|---|---|---|',
    ...streams.map(
      (r) =>
        `| ${r.concurrency} | ${r.path} | ${fmt(r.ttftP50Ms!, 2)} | ${
          r.path === 'baseline' ? '—' : fmt(r.addedTtftP50Ms ?? 0, 2)
        } |`,
    ),
  ];
}

export function report(summary: Summary, cells: CellResult[]) {
  const rows = cells.flatMap((cell) => {
    const base = cell.paths.find((p) => p.path === 'baseline')!.totals;
    return cell.paths.map((entry) => rowOf(cell, entry, base));
  });
  const failures = rows.reduce((sum, r) => sum + r.errors, 0);
  const out = [
    `gateway bench: ${summary.rounds} rounds × ${summary.requestsPerBatch} requests per batch; node ${summary.node}, ${summary.cpus} CPUs`,
    `load average (1/5/15 min): ${summary.loadavgStart} at start, ${summary.loadavgEnd} at end`,
    '',
    '| mode | c | path | p50 ms | p99 ms | added p50 ms | added p99 ms | req/s | req/s × baseline | CPU ms/req (gateway) | CPU ms/req per process | upstream CPU ms/req | failed |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows.map(line),
    '',
    `checked answers: ${rows.reduce((s, r) => s + r.requests, 0)}, failed: ${failures}`,
    ...ttftLines(rows),
  ];
  for (const r of rows.filter((row) => row.errors > 0))
    out.push(`  ${r.mode}/${r.concurrency}/${r.path}: ${JSON.stringify(r.errorKinds)}`);
  for (const paid of summary.paid)
    out.push(
      `${paid.path} tab: charged ${fmt(paid.chargedMsat)} msat, signed costs in the answers ${fmt(paid.signedCostMsat)} msat (${
        paid.chargedMsat === paid.signedCostMsat ? 'equal' : 'MISMATCH'
      })`,
    );
  return { text: `${out.join('\n')}\n`, json: { ...summary, rows }, failures };
}
