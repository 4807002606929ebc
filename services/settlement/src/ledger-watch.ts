// `ledger verify` on a schedule, for operators: each run's outcome as metrics, so an alert fires
// when the books stop balancing (infra/prometheus/alerts.yml, FedaiLedgerUnbalanced). The on-demand
// route (GET /v1/ledger/verify, `fedai ledger verify`) runs through it too.
import { beating, type JobHeartbeats } from '@fed-ai/kit';
import type { LedgerReport } from '@fed-ai/ledger';
import { Counter, Gauge, type Registry } from 'prom-client';

/** The first scheduled verify runs at most this long after start. */
const FIRST_RUN_MAX_S = 60;

export class LedgerWatch {
  private timer: NodeJS.Timeout | undefined;
  private first: NodeJS.Timeout | undefined;
  private current: Promise<LedgerReport> | undefined;
  private readonly ok: Gauge;
  private readonly problems: Gauge;
  private readonly lastRunS: Gauge;
  private readonly runs: Counter<'outcome'>;

  constructor(
    private readonly verify: () => Promise<LedgerReport>,
    metrics: Registry,
  ) {
    this.ok = new Gauge({
      name: 'fedai_ledger_verify_ok',
      help: 'Whether the last ledger verify found the books balanced (1) or not (0)',
      registers: [metrics],
    });
    // Unknown until the first run (NaN): a 0 here would raise FedaiLedgerUnbalanced at every start
    // (found by tools/containers/test/prometheus-scrape.test.ts with a real Prometheus).
    this.ok.set(Number.NaN);
    this.problems = new Gauge({
      name: 'fedai_ledger_verify_problems',
      help: 'Problems the last ledger verify found',
      registers: [metrics],
    });
    this.lastRunS = new Gauge({
      name: 'fedai_ledger_verify_last_run_timestamp_seconds',
      help: 'When the last ledger verify finished (Unix seconds)',
      registers: [metrics],
    });
    this.runs = new Counter({
      name: 'fedai_ledger_verify_runs_total',
      help: 'Ledger verify runs by outcome (balanced, problems, error)',
      labelNames: ['outcome'],
      registers: [metrics],
    });
  }

  /** One verify; concurrent callers share the run in progress. */
  run(): Promise<LedgerReport> {
    this.current ??= this.verify()
      .then((report) => {
        this.ok.set(report.ok ? 1 : 0);
        this.problems.set(report.problems.length);
        this.runs.inc({ outcome: report.ok ? 'balanced' : 'problems' });
        return report;
      })
      .catch((error: unknown) => {
        this.runs.inc({ outcome: 'error' });
        throw error;
      })
      .finally(() => {
        this.lastRunS.set(Math.floor(Date.now() / 1000));
        this.current = undefined;
      });
    return this.current;
  }

  schedule(
    intervalS: number,
    onError: (error: unknown) => void,
    onProblems: (r: LedgerReport) => void,
    jobs?: JobHeartbeats,
  ): void {
    if (intervalS <= 0 || this.timer) return;
    const job = jobs?.job('settlement_ledger_verify', { intervalMs: intervalS * 1000 });
    const tick = () => {
      beating(job, () => this.run())
        .then((report) => {
          if (report && !report.ok) onProblems(report);
        })
        .catch(onError);
    };
    // A first verdict soon after start, not one interval (15 min by default) later.
    this.first = setTimeout(tick, Math.min(intervalS, FIRST_RUN_MAX_S) * 1000);
    this.first.unref();
    this.timer = setInterval(tick, intervalS * 1000);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearTimeout(this.first);
    clearInterval(this.timer);
    this.timer = undefined;
    await this.current?.catch(() => undefined);
  }
}
