// pnpm bench:gateway — what a gateway adds in front of an instant OpenAI-compatible upstream (a fake
// one answering exactly 16 tokens). Paths, each its own set of processes on 127.0.0.1:
//   baseline    client -> fake upstream
//   node-proxy  client -> bare node:http reverse proxy -> upstream
//   fedai-free  client -> router -> node (OpenAI runner) -> upstream (signed request and metering)
//   fedai-paid  the same with settlement: reservation before dispatch, capture after the answer
//   fedai-paid-pg  fedai-paid with settlement on a PostgreSQL server (its CPU, backends included,
//               counted as the path's `postgres` process; asked for with --paths)
//   portkey     client -> Portkey's open-source gateway (@portkey-ai/gateway) -> upstream
// Every round runs every (mode, concurrency) cell on every path, in rotating order, so load changes
// on the machine hit all paths alike. Every answer is checked (gateway-client.ts). Reported per path
// and cell: p50/p99 over all rounds and what they add over the baseline, req/s (requests / batch
// wall time), CPU ms per request of each process (/proc/<pid>/stat before and after each batch;
// for paid, after the batch's captures are done).
// Flags: --rounds N (5) --requests N per batch (256) --concurrency 1,16,64 --modes json,stream
//        --paths baseline,node-proxy,fedai-free,fedai-paid,portkey (also: fedai-paid-pg; fedai-pg-1r,
//        fedai-pg-2r, one and two router replicas on one PostgreSQL behind a round-robin proxy) --warmup N (1000) --json FILE
//        --token-interval-ms N (0: the fake upstream streams its 16 tokens in one write; N: one every N ms).
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { type Answer, ask, batch, chatBody } from './gateway-client';
import { cpuMs, loadavg } from './gateway-proc';
import { type CellResult, report, type Summary, type Totals } from './gateway-report';
import {
  DEFAULT_PATHS,
  PATH_NAMES,
  type Path,
  type PathName,
  type Service,
  Services,
  startPaths,
} from './gateway-stacks';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    requests: { type: 'string', default: '256' },
    concurrency: { type: 'string', default: '1,16,64' },
    modes: { type: 'string', default: 'json,stream' },
    paths: { type: 'string', default: DEFAULT_PATHS.join(',') },
    // Requests per path and mode at c = 16 before measuring. V8 needs thousands of requests to
    // optimise every process's hot path: with 20-50 the first batches measured cold code, up to
    // twice the steady CPU per request (docs/benchmarks.md "Session 12").
    warmup: { type: 'string', default: '1000' },
    // Streams: ms between the fake upstream's tokens (0: all 16 in one write, the old default).
    'token-interval-ms': { type: 'string', default: '0' },
    json: { type: 'string' },
  },
});
const positive = (name: string, text: string): number => {
  const n = Number(text);
  if (!Number.isInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
};
const rounds = positive('rounds', values.rounds);
const requests = positive('requests', values.requests);
const warmup = positive('warmup', values.warmup);
const tokenIntervalMs = Number(values['token-interval-ms']);
if (!Number.isInteger(tokenIntervalMs) || tokenIntervalMs < 0 || tokenIntervalMs > 1_000)
  throw new Error('--token-interval-ms must be a whole number from 0 to 1000');
const levels = values.concurrency.split(',').map((c) => positive('concurrency', c));
const modes = values.modes.split(',').map((m) => {
  if (m !== 'json' && m !== 'stream') throw new Error('--modes takes json and/or stream');
  return m;
});
const pathNames = values.paths.split(',').map((p) => {
  if (!(PATH_NAMES as readonly string[]).includes(p)) throw new Error(`unknown path ${p}`);
  return p as PathName;
});
if (!pathNames.includes('baseline')) pathNames.unshift('baseline');

interface Cell {
  mode: 'json' | 'stream';
  concurrency: number;
}
const cells: Cell[] = modes.flatMap((mode) => levels.map((concurrency) => ({ mode, concurrency })));
const keyOf = (cell: Cell, path: PathName) => `${cell.mode}/${cell.concurrency}/${path}`;
const rotate = <T>(list: readonly T[], by: number): T[] => list.map((_, i) => list[(i + by) % list.length]!);

function emptyTotals(): Totals {
  return { latencies: [], firstTokenMs: [], wallMs: 0, count: 0, errors: {}, cpuMs: {}, clientCpuMs: 0 };
}

/** Per paid path: the sum of the signed costs in its answers. */
const paidCostMsat = new Map<string, number>();

/** One batch of one cell on one path, with the CPU of its processes (and the upstream's). */
async function runBatch(path: Path, upstream: Service, cell: Cell, count: number, totals?: Totals) {
  const stream = cell.mode === 'stream';
  const payload = chatBody(path.target.model, stream);
  const processes = [...path.services, upstream];
  // Every batch starts on fresh connections: a pooled one the server closed while other paths ran
  // (keep-alive timeouts) would otherwise fail as "socket hang up" when reused at that moment.
  path.target.agent.destroy();
  const cpuOf = (s: Service) => s.cpuMs?.() ?? cpuMs(s.child.pid!);
  const before = processes.map(cpuOf);
  const clientBefore = process.cpuUsage();
  const { answers, wallMs } = await batch(count, cell.concurrency, () => ask(path.target, payload, stream));
  await path.settle?.();
  const clientUsed = process.cpuUsage(clientBefore);
  const after = processes.map(cpuOf);
  if (path.balance)
    paidCostMsat.set(
      path.name,
      (paidCostMsat.get(path.name) ?? 0) + answers.reduce((sum, a) => sum + a.costMsat, 0),
    );
  if (!totals) return answers;
  totals.wallMs += wallMs;
  totals.count += answers.length;
  totals.clientCpuMs += (clientUsed.user + clientUsed.system) / 1000;
  for (const [i, s] of processes.entries())
    totals.cpuMs[s.name] = (totals.cpuMs[s.name] ?? 0) + after[i]! - before[i]!;
  for (const a of answers) countAnswer(totals, a);
  return answers;
}

function countAnswer(totals: Totals, answer: Answer): void {
  if (answer.error) totals.errors[answer.error] = (totals.errors[answer.error] ?? 0) + 1;
  else {
    totals.latencies.push(answer.ms);
    if (answer.firstTokenMs !== undefined) totals.firstTokenMs.push(answer.firstTokenMs);
  }
}

async function warmUp(paths: Path[], upstream: Service): Promise<void> {
  for (const path of paths)
    for (const mode of modes) {
      const answers = await runBatch(path, upstream, { mode, concurrency: 16 }, warmup);
      const failed = answers.find((a) => a.error);
      if (failed) throw new Error(`${path.name} ${mode} warm-up failed: ${failed.error}`);
    }
}

async function main(services: Services, dir: string): Promise<boolean> {
  const { upstream, paths } = await startPaths(services, dir, pathNames, tokenIntervalMs);
  const paidPaths = paths.filter((p) => p.balance);
  const startBalances = await Promise.all(paidPaths.map((p) => p.balance!()));
  const loadStart = loadavg();
  const startedAt = new Date().toISOString();
  await warmUp(paths, upstream);
  const totals = new Map<string, Totals>();
  for (let round = 0; round < rounds; round++) {
    for (const cell of rotate(cells, round))
      for (const path of rotate(paths, round)) {
        const key = keyOf(cell, path.name);
        if (!totals.has(key)) totals.set(key, emptyTotals());
        await runBatch(path, upstream, cell, requests, totals.get(key));
      }
    process.stderr.write(`round ${round + 1}/${rounds} done (load ${loadavg()})\n`);
  }
  const results: CellResult[] = cells.map((cell) => ({
    ...cell,
    paths: paths.map((p) => ({ path: p.name, totals: totals.get(keyOf(cell, p.name))! })),
  }));
  const paidChecks = await Promise.all(
    paidPaths.map(async (p, i) => ({
      path: p.name,
      chargedMsat: startBalances[i]! - (await p.balance!()),
      signedCostMsat: paidCostMsat.get(p.name) ?? 0,
    })),
  );
  const summary: Summary = {
    command: `pnpm bench:gateway ${process.argv.slice(2).join(' ')}`.trim(),
    startedAt,
    node: process.version,
    cpus: cpus().length,
    loadavgStart: loadStart,
    loadavgEnd: loadavg(),
    rounds,
    requestsPerBatch: requests,
    paid: paidChecks,
  };
  const { text, json, failures } = report(summary, results);
  process.stdout.write(text);
  for (const p of paidPaths) await printPaidMetrics(p);
  if (values.json) writeFileSync(values.json, `${JSON.stringify(json, null, 2)}\n`);
  return failures === 0 && paidChecks.every((c) => c.chargedMsat === c.signedCostMsat);
}

/** A paid path's reservations held ahead and settlement's envelopes and ledger batch sizes. */
async function printPaidMetrics(path: Path): Promise<void> {
  if (!path.metricsUrls) return;
  const metrics = (await Promise.all(path.metricsUrls.map(async (url) => (await fetch(url)).text())))
    .join('\n')
    .split('\n');
  const lines = (prefix: string) =>
    metrics
      .filter((l) => l.startsWith(prefix))
      .map((l) => l.replace(/,?service="[a-z]+"/, '').replace('{}', ''));
  const batch = (part: string) =>
    Number(lines(`fedai_settlement_request_batch_ops_${part}`)[0]?.split(' ')[1]);
  process.stdout.write(
    `${path.name}: router reservations ${lines('fedai_router_reservations{').join(' · ')}; settlement ${lines('fedai_settlement_op_envelopes_total').join(' · ')} · ledger transactions ${batch('count')}, ${(batch('sum') / batch('count')).toFixed(2)} request ops each\n`,
  );
}

const dir = mkdtempSync(join(tmpdir(), 'fedai-bench-gateway-'));
const services = new Services(dir);
let passed = false;
try {
  passed = await main(services, dir);
} finally {
  await services.stopAll();
  if (!passed) process.stderr.write(`gateway bench failed; service logs kept in ${dir}\n`);
  else if (process.env.BENCH_KEEP_LOGS) process.stdout.write(`service logs kept in ${dir}\n`);
  else rmSync(dir, { recursive: true, force: true });
}
process.exitCode = passed ? 0 : 1;
