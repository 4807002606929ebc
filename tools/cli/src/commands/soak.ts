// `fedai soak --minutes N`: starts its own local network (as `fedai up` does: relay, settlement,
// router, wallet fleet, two nodes, embedded PGlite) in a fresh temporary folder on free ports, runs a
// steady paid load from a few clients against the router's OpenAI-compatible API, samples every
// service process (RSS, heap, fds, event-loop delay) and the clients' counts, checks the ledger at
// the end and writes the report (soak-core.ts) as JSON and Markdown. Every child stops on exit,
// Ctrl-C included (superviseNetwork).
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { bold, EXIT, fail, green, red } from '../output';
import {
  buildReport,
  formatReport,
  type LoadSample,
  promValue,
  type ServiceSeries,
  type SoakReport,
  warmupMsFor,
} from './soak-core';
import { type Network, positive, runClient, startNetwork, tab, verifyLedgerAt } from './soak-network';
import { sleep, superviseNetwork, waitFor } from './up';

export interface SoakFlags {
  minutes?: string;
  out?: string;
  clients?: string;
  sampleS?: string;
  model?: string;
  keepData?: boolean;
}

const MAX_MINUTES = 24 * 60;
const MAX_FAILURE_CODES = 50;

export async function soak(flags: SoakFlags): Promise<void> {
  const minutes = positive('minutes', flags.minutes, 60, MAX_MINUTES);
  const clients = positive('clients', flags.clients, 4, 16);
  if (!Number.isInteger(clients))
    fail('BAD_OPTION', `--clients takes a whole number from 1 to 16 (got ${flags.clients})`, {
      exit: EXIT.usage,
    });
  const sampleEveryMs = Math.round(positive('sample-s', flags.sampleS, 5, 600) * 1000);
  const outDir = resolve(flags.out ?? join(process.cwd(), 'data', 'soak'));
  if (process.platform !== 'linux')
    fail('BAD_OPTION', 'fedai soak reads /proc/<pid> and runs only on Linux', { exit: EXIT.usage });

  const dir = mkdtempSync(join(tmpdir(), 'fedai-soak-'));
  let failed = false;
  process.on('exit', () => {
    // A finished (or interrupted) run leaves only its report; a failed one keeps the services' logs.
    if (!failed && !flags.keepData) rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`soak data and logs kept in ${dir}\n`);
  });
  const { launch, stopAll, step } = superviseNetwork(dir);
  try {
    step(`soak: a fresh network in ${dir} for ${minutes} min, ${clients} clients`);
    const net = await startNetwork(dir, flags.model, launch, step);
    const durationMs = Math.round(minutes * 60_000);
    const warmupMs = warmupMsFor(durationMs);
    const series: ServiceSeries[] = net.services.map((s) => ({ name: s.name, pid: s.pid, samples: [] }));
    const counts = { ok: 0, failed: 0 };
    const failuresByCode: Record<string, number> = {};
    const loadSeries: LoadSample[] = [];
    const startedAt = new Date().toISOString();
    const t0 = Date.now();
    const take = async () => {
      const tMs = Date.now() - t0;
      const looks = await Promise.all(net.services.map((s) => sampleProcess(s, tMs)));
      looks.forEach((look, i) => {
        if (look) series[i]!.samples.push(look);
      });
      loadSeries.push({ tMs, ...counts });
    };

    step(`load: ${clients} clients for ${minutes} min; a sample every ${sampleEveryMs / 1000} s`);
    const deadline = t0 + durationMs;
    const load = Promise.all(
      Array.from({ length: clients }, (_, client) =>
        runClient(client, deadline, net, (ok, code) => {
          if (ok) counts.ok++;
          else {
            counts.failed++;
            const key =
              code in failuresByCode || Object.keys(failuresByCode).length < MAX_FAILURE_CODES
                ? code
                : 'OTHER';
            failuresByCode[key] = (failuresByCode[key] ?? 0) + 1;
          }
        }),
      ),
    );
    await take();
    let lastLine = Date.now();
    while (Date.now() < deadline) {
      await sleep(Math.min(sampleEveryMs, Math.max(0, deadline - Date.now())));
      await take();
      if (Date.now() - lastLine >= 30_000) {
        lastLine = Date.now();
        const rss = series.map((s) => `${s.name} ${Math.round((s.samples.at(-1)?.rssBytes ?? 0) / 2 ** 20)}`);
        step(
          `${Math.round((Date.now() - t0) / 1000)} s: ${counts.ok} ok, ${counts.failed} failed; RSS MB ${rss.join(', ')}`,
        );
      }
    }
    await load;
    await take();

    step('load done: waiting for the tab to settle, then ledger verify');
    await waitFor(async () => (await tab(net)).reserved === 0, 30_000).catch(() => undefined);
    const ledger = await verifyLedgerAt(net.settlementUrl, net.operatorKey).catch((error: unknown) => ({
      ok: false as const,
      error: error instanceof Error ? error.message : String(error),
    }));

    const report = buildReport({
      startedAt,
      minutes,
      warmupMs,
      sampleEveryMs,
      clients,
      model: net.model,
      loadAverage: loadavg(),
      durationMs: Date.now() - t0,
      series,
      loadSeries,
      failuresByCode,
      ledger,
    });
    writeReport(outDir, report);
    process.stdout.write(`\n${bold('soak report')}\n\n${formatReport(report)}\n`);
    process.stdout.write(
      `${report.goals.all ? green('every goal held') : red('a goal did not hold')}; report: ${join(outDir, 'soak.md')}, ${join(outDir, 'soak.json')}\n`,
    );
    await stopAll(report.goals.all ? EXIT.ok : EXIT.failure);
  } catch (error) {
    failed = true;
    process.stderr.write(`fedai soak failed: ${error instanceof Error ? error.message : String(error)}\n`);
    await stopAll(EXIT.failure);
  }
}

function writeReport(outDir: string, report: SoakReport): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'soak.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(outDir, 'soak.md'), `# fedai soak\n\n${formatReport(report)}`);
}

/** RSS and fds from /proc, heap and event-loop p99 from /metrics; null when the process is gone. */
async function sampleProcess(
  s: Network['services'][number],
  tMs: number,
): Promise<ServiceSeries['samples'][number] | null> {
  let rssBytes: number;
  let anonBytes: number | null;
  let fds: number;
  try {
    const status = readFileSync(`/proc/${s.pid}/status`, 'utf8');
    rssBytes = Number(/^VmRSS:\s+(\d+) kB/m.exec(status)?.[1] ?? Number.NaN) * 1024;
    const anon = /^RssAnon:\s+(\d+) kB/m.exec(status)?.[1];
    anonBytes = anon === undefined ? null : Number(anon) * 1024;
    fds = readdirSync(`/proc/${s.pid}/fd`).length;
  } catch {
    return null;
  }
  if (!Number.isFinite(rssBytes)) return null;
  let metrics = '';
  try {
    const response = await fetch(s.metricsUrl, { signal: AbortSignal.timeout(3_000) });
    if (response.ok) metrics = await response.text();
  } catch {
    // No /metrics (the relay) or a slow answer: heap and event-loop delay are not available.
  }
  return {
    tMs,
    rssBytes,
    anonBytes,
    heapUsedBytes: promValue(metrics, 'nodejs_heap_size_used_bytes'),
    fds,
    eventLoopP99S: promValue(metrics, 'nodejs_eventloop_lag_p99_seconds'),
  };
}
