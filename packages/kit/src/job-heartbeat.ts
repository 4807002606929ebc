// Heartbeats for background jobs (sweepers, outbox loops, reconciliation, payouts, ledger verify):
// each run is timed and bounded by a timeout, and its outcome is exported, so a job that stopped
// (hung, throwing, or never scheduled again) raises an alert (infra/prometheus/alerts.yml,
// FedaiJobStopped; docs/runbooks/job-stopped.md) instead of going unnoticed.
//
//   fedai_job_last_success_timestamp_seconds{job_name}  when a run last succeeded (Unix seconds)
//   fedai_job_last_duration_seconds{job_name}           how long the last finished run took
//   fedai_job_runs_total{job_name,outcome}              success | error | timeout | skipped
//   fedai_job_overdue{job_name}                         1 when no success within the job's overdue bound
//
// The label is `job_name`, not `job`: Prometheus sets `job` on every scraped series (the scrape
// job) and would rename a metric's own `job` label to `exported_job`.
//
// A run past its timeout resolves (rejects with JobTimeoutError) so the caller's one-at-a-time
// guard is freed and the next run can start; the hung work is abandoned (its signal aborted) and
// its late outcome ignored. At most MAX_ABANDONED such runs may still be in flight: beyond that a
// run is skipped (counted), so a job that hangs every time cannot pile up work.
import { Counter, Gauge, type Registry } from 'prom-client';

export class JobTimeoutError extends Error {
  readonly code = 'JOB_TIMEOUT';
  constructor(
    readonly job: string,
    readonly timeoutMs: number,
  ) {
    super(`job ${job} ran past its ${timeoutMs} ms timeout; the next run may start`);
    this.name = 'JobTimeoutError';
  }
}

export interface JobOptions {
  /** How often the job is meant to run (its schedule). */
  intervalMs: number;
  /** The longest one run may take (default: twice the interval, at least 1 min, at most 1 h). */
  timeoutMs?: number;
  /** Overdue after this long without a success (default: 3 intervals, and at least timeout + interval). */
  overdueAfterMs?: number;
}

const MAX_ABANDONED = 2;
/** Jobs per service are named in code; the bound keeps a mistake from growing the label set. */
const MAX_JOBS = 64;

export type JobOutcome = 'success' | 'error' | 'timeout' | 'skipped';

/** One service's jobs and their metrics (register them on the service's registry). */
export class JobHeartbeats {
  private readonly jobs = new Map<string, JobHeartbeat>();
  private readonly lastSuccess: Gauge<'job_name'>;
  private readonly duration: Gauge<'job_name'>;
  private readonly runs: Counter<'job_name' | 'outcome'>;
  private readonly overdue: Gauge<'job_name'>;
  readonly now: () => number;

  constructor(options: { now?: () => number } = {}) {
    this.now = options.now ?? Date.now;
    this.lastSuccess = new Gauge({
      name: 'fedai_job_last_success_timestamp_seconds',
      help: 'When a run of the background job last succeeded (Unix seconds)',
      labelNames: ['job_name'],
      registers: [],
    });
    this.duration = new Gauge({
      name: 'fedai_job_last_duration_seconds',
      help: 'How long the last finished run of the background job took',
      labelNames: ['job_name'],
      registers: [],
    });
    this.runs = new Counter({
      name: 'fedai_job_runs_total',
      help: 'Runs of background jobs by outcome (success, error, timeout, skipped)',
      labelNames: ['job_name', 'outcome'],
      registers: [],
    });
    const jobs = this.jobs;
    const now = this.now;
    this.overdue = new Gauge({
      name: 'fedai_job_overdue',
      help: 'Whether the background job has not succeeded within its expected interval times N (1) or has (0)',
      labelNames: ['job_name'],
      registers: [],
      collect() {
        const nowMs = now();
        for (const job of jobs.values()) this.set({ job_name: job.name }, job.isOverdue(nowMs) ? 1 : 0);
      },
    });
  }

  /** The job `name` (the same object for the same name). */
  job(name: string, options: JobOptions): JobHeartbeat {
    const known = this.jobs.get(name);
    if (known) return known;
    if (this.jobs.size >= MAX_JOBS) throw new Error(`more than ${MAX_JOBS} background jobs`);
    const job = new JobHeartbeat(name, options, this.now, (outcome, durationMs) =>
      this.record(name, outcome, durationMs),
    );
    this.jobs.set(name, job);
    this.runs.inc({ job_name: name, outcome: 'success' }, 0);
    return job;
  }

  /** Exports the job metrics on `registry` (once per registry). */
  register(registry: Registry): void {
    for (const metric of [this.lastSuccess, this.duration, this.runs, this.overdue])
      registry.registerMetric(metric);
  }

  private record(name: string, outcome: JobOutcome, durationMs: number | null): void {
    this.runs.inc({ job_name: name, outcome });
    if (durationMs !== null) this.duration.set({ job_name: name }, durationMs / 1000);
    if (outcome === 'success') this.lastSuccess.set({ job_name: name }, this.now() / 1000);
  }
}

export class JobHeartbeat {
  readonly timeoutMs: number;
  readonly overdueAfterMs: number;
  private readonly sinceMs: number;
  private lastSuccessMs: number | null = null;
  private abandoned = 0;

  constructor(
    readonly name: string,
    options: JobOptions,
    private readonly now: () => number,
    private readonly record: (outcome: JobOutcome, durationMs: number | null) => void,
  ) {
    const intervalMs = Math.max(1, options.intervalMs);
    this.timeoutMs = options.timeoutMs ?? Math.min(3_600_000, Math.max(60_000, 2 * intervalMs));
    this.overdueAfterMs = options.overdueAfterMs ?? Math.max(3 * intervalMs, this.timeoutMs + intervalMs);
    this.sinceMs = now();
  }

  /** No success within the overdue bound (counted from registration until the first one). */
  isOverdue(nowMs: number): boolean {
    return nowMs - (this.lastSuccessMs ?? this.sinceMs) > this.overdueAfterMs;
  }

  /**
   * One run of the job: its value, or undefined when skipped (too many hung runs still in flight).
   * Rejects with the job's error, or JobTimeoutError once the run is past its timeout.
   */
  async run<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T | undefined> {
    if (this.abandoned >= MAX_ABANDONED) {
      this.record('skipped', null);
      return undefined;
    }
    const startedMs = this.now();
    const controller = new AbortController();
    let timer: NodeJS.Timeout | undefined;
    let timedOut = false;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        timedOut = true;
        this.abandoned += 1;
        controller.abort(new JobTimeoutError(this.name, this.timeoutMs));
        reject(new JobTimeoutError(this.name, this.timeoutMs));
      }, this.timeoutMs);
      timer.unref();
    });
    const running = Promise.resolve().then(() => work(controller.signal));
    // The abandoned run's late outcome frees its slot and is otherwise ignored.
    void running.then(
      () => this.settleAbandoned(timedOut),
      () => this.settleAbandoned(timedOut),
    );
    try {
      const value = await Promise.race([running, timeout]);
      this.lastSuccessMs = this.now();
      this.record('success', this.now() - startedMs);
      return value;
    } catch (error) {
      this.record(timedOut ? 'timeout' : 'error', this.now() - startedMs);
      throw error;
    } finally {
      clearTimeout(timer);
    }
  }

  private settleAbandoned(timedOut: boolean): void {
    if (timedOut) this.abandoned -= 1;
  }
}

/** `work` through the job's heartbeat when there is one (a component built without metrics runs it bare). */
export function beating<T>(
  job: JobHeartbeat | undefined,
  work: (signal: AbortSignal) => Promise<T>,
): Promise<T | undefined> {
  return job ? job.run(work) : work(new AbortController().signal);
}
