// Reconciliation (issue 14): the ledger against the Lightning backend. Three comparisons, each
// bounded, decided by pure functions below and acted on by `reconcile` (the I/O shell):
//
// (a) Top-up invoices the ledger has not credited are looked up at the backend. One the backend
//     reports settled (open, expired, or missed by the watcher) is recorded and credited through
//     the one credit path, transfer id `topup:<hash>`: a second run, or a watcher racing this one,
//     finds the transfer and credits nothing.
// (b) Outgoing payments (refunds, account payments) still pending are resolved by lookup
//     (`Books.resolvePendingPayments`); any still pending past `stuckAfterS` is reported as stuck.
//     A payment's states (table `payments`, one row per payment hash):
//
//       created ──send──▶ in flight ──▶ succeeded   (hold posted: rfp:/topup:)
//          │                  │
//          └──────────────────┴──────▶ failed      (hold voided: rfv:)
//
//     "created" and "in flight" are both `pending` in the table: the hold (rfd:) and the row are
//     written in one transaction before the send. A lookup tells them apart: `unknown` (never
//     sent) → failed NOT_SENT, but only after `paymentGraceS` (a payer may be between the row and
//     the send); `pending` → in flight, asked again next run; succeeded/failed → final. Timeouts:
//     the backend's own pay timeout (the adapter then answers "not definite"), `paymentGraceS`
//     (300 s), `stuckAfterS` (reported, 3600 s), and the hold's timeout (14 days; settlement posts
//     a late success directly from the tab).
// (c) The ledger's Lightning asset account (`lightning`: debits are money in, credits money out)
//     against the backend's balance: both numbers and the difference are reported, never fixed
//     (a node's balance holds money that is not settlement's, and fees and channel reserves move
//     it). The internal backend has no outside balance: the report says so.

import { beating, type JobHeartbeats } from '@fed-ai/kit';
import type { Ledger } from '@fed-ai/ledger';
import type { Invoice, LightningBackend } from '@fed-ai/lightning';
import { Counter, Gauge, type Registry } from 'prom-client';
import { ACCOUNTS, type Books, type PaymentRow, type UncreditedTopup } from './books';

const RECONCILE_DEFAULTS = {
  /** Top-ups created this long ago or less are rechecked (older ones are out of the run). */
  topupLookbackS: 7 * 24 * 3600,
  /** Most top-ups one run looks up. */
  topupLimit: 500,
  /** Most pending payments one run looks at. */
  paymentLimit: 200,
  /** A pending payment younger than this is left to the call making it. */
  paymentGraceS: 300,
  /** A payment still pending this long after it was created is reported as stuck. */
  stuckAfterS: 3600,
} as const;

export interface ReconcileOptions {
  topupLookbackS?: number;
  topupLimit?: number;
  paymentLimit?: number;
  paymentGraceS?: number;
  stuckAfterS?: number;
  nowS?: () => number;
}

type MismatchKind =
  /** Settled at the backend, not credited in the ledger: credited by this run. */
  | 'topup_uncredited'
  /** The backend says settled but gives no preimage that proves it: not credited. */
  | 'topup_unproven'
  /** A pending payment older than `stuckAfterS` the lookup could not resolve. */
  | 'payment_stuck'
  /** The Lightning account and the backend's balance differ (reported only). */
  | 'balance_difference'
  /** The backend did not answer a lookup or the balance. */
  | 'backend_unreachable';

const MISMATCH_KINDS: readonly MismatchKind[] = [
  'topup_uncredited',
  'topup_unproven',
  'payment_stuck',
  'balance_difference',
  'backend_unreachable',
];

interface Mismatch {
  kind: MismatchKind;
  payment_hash?: string;
  detail: string;
}

export interface ReconcileReport {
  backend: string;
  ran_at_s: number;
  topups: {
    checked: number;
    /** Credited by this run (each exactly once, `topup:<hash>`). */
    credited: { payment_hash: string; account: string; amount_msat: number; expired: boolean }[];
    open: number;
    expired_unpaid: number;
    unknown_at_backend: number;
    /** The limit cut the run short: more top-ups wait for the next one. */
    truncated: boolean;
  };
  payments: {
    checked: number;
    resolved: number;
    in_flight: number;
    stuck: { payment_hash: string; account: string; amount_msat: number; age_s: number }[];
  };
  lightning: {
    /** Posted debits − posted credits of the ledger account `lightning`. */
    ledger_msat: number;
    /** Held for payments in flight out of `lightning` (pending credits). */
    ledger_pending_out_msat: number;
    /** The backend's balance; null for the internal backend or when it did not answer. */
    backend_msat: number | null;
    /** backend − ledger; null when there is no backend balance. */
    difference_msat: number | null;
    note: string;
  };
  mismatches: Mismatch[];
}

// ---- pure decisions ----

export type TopupDecision =
  | 'credit'
  | 'record_and_credit'
  | 'unproven'
  | 'open'
  | 'expired_unpaid'
  | 'unknown_at_backend';

/**
 * What to do with a top-up the ledger has not credited, given the backend's answer (or null
 * when the row is already recorded settled and nothing needs asking).
 */
export function decideTopup(
  row: UncreditedTopup,
  invoice: Invoice | null | 'not_asked',
  nowS: number,
): TopupDecision {
  if (row.settled_at_s !== null) return 'credit';
  if (invoice === 'not_asked' || invoice === null) return 'unknown_at_backend';
  if (invoice.state === 'settled') return invoice.preimage ? 'record_and_credit' : 'unproven';
  const expiresAtS = row.expires_at_s ?? invoice.expiresAtS;
  if (invoice.state === 'expired' || expiresAtS <= nowS) return 'expired_unpaid';
  return 'open';
}

/** A payment the lookup left pending: stuck once older than `stuckAfterS`, else in flight. */
export function decidePendingPayment(
  row: PaymentRow,
  nowS: number,
  stuckAfterS: number,
): 'stuck' | 'in_flight' {
  return nowS - row.created_at_s >= stuckAfterS ? 'stuck' : 'in_flight';
}

/** The Lightning asset account against the backend balance (reported, never fixed). */
export function compareBalance(
  backend: string,
  ledgerMsat: number,
  backendMsat: number | null | 'unreachable',
): { backend_msat: number | null; difference_msat: number | null; note: string } {
  if (backend === 'internal')
    return {
      backend_msat: null,
      difference_msat: null,
      note: 'the internal backend settles between accounts of this system: there is no outside balance to compare',
    };
  if (backendMsat === 'unreachable' || backendMsat === null)
    return { backend_msat: null, difference_msat: null, note: 'the backend did not answer the balance' };
  const difference = backendMsat - ledgerMsat;
  return {
    backend_msat: backendMsat,
    difference_msat: difference,
    note:
      difference === 0
        ? 'the backend balance equals the Lightning account'
        : 'reported only: the node may hold money that is not settlement’s (channel funds, fees, reserves)',
  };
}

const bounded = (value: number | undefined, fallback: number, min: number, max: number) =>
  Math.min(Math.max(Math.floor(value ?? fallback), min), max);

// ---- the shell ----

/** Compares the ledger with the backend, heals what (a) and (b) allow, reports everything. */
export async function reconcile(
  books: Books,
  ledger: Ledger,
  lightning: LightningBackend,
  options: ReconcileOptions = {},
): Promise<ReconcileReport> {
  const nowS = (options.nowS ?? (() => Math.floor(Date.now() / 1000)))();
  const topupLimit = bounded(options.topupLimit, RECONCILE_DEFAULTS.topupLimit, 1, 1000);
  const paymentLimit = bounded(options.paymentLimit, RECONCILE_DEFAULTS.paymentLimit, 1, 1000);
  const graceS = bounded(options.paymentGraceS, RECONCILE_DEFAULTS.paymentGraceS, 0, 30 * 86400);
  const stuckAfterS = bounded(options.stuckAfterS, RECONCILE_DEFAULTS.stuckAfterS, 0, 365 * 86400);
  const lookbackS = bounded(options.topupLookbackS, RECONCILE_DEFAULTS.topupLookbackS, 0, 365 * 86400);
  const mismatches: Mismatch[] = [];

  // (a) top-ups
  const topups: ReconcileReport['topups'] = {
    checked: 0,
    credited: [],
    open: 0,
    expired_unpaid: 0,
    unknown_at_backend: 0,
    truncated: false,
  };
  const rows = await books.uncreditedTopups({ sinceS: nowS - lookbackS, limit: topupLimit });
  topups.truncated = rows.length >= topupLimit;
  let unreachable = 0;
  for (const row of rows) {
    topups.checked += 1;
    let invoice: Invoice | null | 'not_asked' = 'not_asked';
    if (row.settled_at_s === null) {
      try {
        invoice = await lightning.lookupInvoice(row.payment_hash);
      } catch {
        unreachable += 1;
        continue;
      }
    }
    const decision = decideTopup(row, invoice, nowS);
    if (decision === 'credit' || decision === 'record_and_credit') {
      const found = invoice !== 'not_asked' ? invoice : null;
      const credited = await books.creditTopupFromBackend(
        row.payment_hash,
        found?.preimage ?? null,
        found?.settledAtS ?? nowS,
      );
      if (credited) {
        const expired = (row.expires_at_s ?? found?.expiresAtS ?? nowS + 1) <= nowS;
        topups.credited.push({
          payment_hash: row.payment_hash,
          account: row.account,
          amount_msat: row.amount_msat,
          expired,
        });
        mismatches.push({
          kind: 'topup_uncredited',
          payment_hash: row.payment_hash,
          detail: `settled at the backend, not credited: credited ${row.amount_msat} msat to ${row.account}${expired ? ' (expired invoice)' : ''}`,
        });
      }
    } else if (decision === 'unproven')
      mismatches.push({
        kind: 'topup_unproven',
        payment_hash: row.payment_hash,
        detail: 'the backend reports the invoice settled without a preimage: not credited',
      });
    else if (decision === 'open') topups.open += 1;
    else if (decision === 'expired_unpaid') topups.expired_unpaid += 1;
    else topups.unknown_at_backend += 1;
  }

  // (b) payments: resolve by lookup, then report what stays pending.
  const resolved = await books.resolvePendingPayments({ olderThanS: graceS, limit: paymentLimit });
  const pending = await books.pendingPayments(paymentLimit);
  const payments: ReconcileReport['payments'] = {
    checked: resolved + pending.length,
    resolved,
    in_flight: 0,
    stuck: [],
  };
  for (const row of pending) {
    if (decidePendingPayment(row, nowS, stuckAfterS) === 'in_flight') {
      payments.in_flight += 1;
      continue;
    }
    const ageS = nowS - row.created_at_s;
    payments.stuck.push({
      payment_hash: row.payment_hash,
      account: row.account,
      amount_msat: row.amount_msat,
      age_s: ageS,
    });
    mismatches.push({
      kind: 'payment_stuck',
      payment_hash: row.payment_hash,
      detail: `pending for ${ageS} s; the backend has no final answer yet`,
    });
  }

  // (c) the Lightning account against the backend balance.
  const [account] = await ledger.lookupAccounts([ACCOUNTS.lightning]);
  const ledgerMsat = account ? account.debitsPosted - account.creditsPosted : 0;
  let backendMsat: number | null | 'unreachable' = null;
  const withBalance = lightning as Partial<{ balanceMsat(): Promise<number> }>;
  if (lightning.name !== 'internal' && typeof withBalance.balanceMsat === 'function')
    backendMsat = await withBalance.balanceMsat().catch(() => 'unreachable' as const);
  if (backendMsat === 'unreachable') unreachable += 1;
  const balance = compareBalance(lightning.name, ledgerMsat, backendMsat);
  if (balance.difference_msat !== null && balance.difference_msat !== 0)
    mismatches.push({
      kind: 'balance_difference',
      detail: `backend ${balance.backend_msat} msat, ledger ${ledgerMsat} msat, difference ${balance.difference_msat} msat`,
    });
  if (unreachable > 0)
    mismatches.push({
      kind: 'backend_unreachable',
      detail: `${unreachable} backend call(s) failed; those items wait for the next run`,
    });

  return {
    backend: lightning.name,
    ran_at_s: nowS,
    topups,
    payments,
    lightning: {
      ledger_msat: ledgerMsat,
      ledger_pending_out_msat: account?.creditsPending ?? 0,
      ...balance,
    },
    mismatches,
  };
}

/** The reconciliation metrics, on settlement's registry. */
export class ReconcileMetrics {
  private readonly runs: Counter;
  private readonly credited: Counter;
  private readonly mismatches: Counter<'kind'>;
  private readonly difference: Gauge;

  constructor(registry: Registry) {
    this.runs = new Counter({
      name: 'fedai_reconcile_runs_total',
      help: 'Reconciliation runs (scheduled and on demand)',
      registers: [registry],
    });
    this.credited = new Counter({
      name: 'fedai_reconcile_credited_total',
      help: 'Top-ups settled at the backend that reconciliation credited',
      registers: [registry],
    });
    this.mismatches = new Counter({
      name: 'fedai_reconcile_mismatches_total',
      help: 'Differences between the ledger and the Lightning backend, by kind',
      labelNames: ['kind'],
      registers: [registry],
    });
    this.difference = new Gauge({
      name: 'fedai_lightning_balance_difference_msat',
      help: 'Backend balance minus the ledger Lightning account (msat; 0 for the internal backend)',
      registers: [registry],
    });
    for (const kind of MISMATCH_KINDS) this.mismatches.inc({ kind }, 0);
  }

  record(report: ReconcileReport): void {
    this.runs.inc();
    this.credited.inc(report.topups.credited.length);
    for (const m of report.mismatches) this.mismatches.inc({ kind: m.kind });
    this.difference.set(report.lightning.difference_msat ?? 0);
  }
}

/**
 * One reconciler per settlement: runs on demand (the operator route, the CLI) and on a schedule
 * (`RECONCILE_INTERVAL_S`, 0 = off). Runs never overlap: a call while one runs gets that run's report.
 */
export class Reconciler {
  private current: Promise<ReconcileReport> | null = null;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly books: Books,
    private readonly ledger: Ledger,
    private readonly lightning: LightningBackend,
    private readonly metrics: ReconcileMetrics | null,
    private readonly defaults: ReconcileOptions = {},
  ) {}

  run(options: ReconcileOptions = {}): Promise<ReconcileReport> {
    if (this.current) return this.current;
    const run = reconcile(this.books, this.ledger, this.lightning, { ...this.defaults, ...options })
      .then((report) => {
        this.metrics?.record(report);
        return report;
      })
      .finally(() => {
        this.current = null;
      });
    this.current = run;
    return run;
  }

  /** Starts the schedule (never for 0); errors go to `onError` (the logger), never thrown. */
  schedule(
    intervalS: number,
    onError: (error: unknown) => void,
    onReport?: (r: ReconcileReport) => void,
    jobs?: JobHeartbeats,
  ): void {
    if (intervalS <= 0 || this.timer) return;
    const job = jobs?.job('settlement_reconcile', { intervalMs: intervalS * 1000 });
    this.timer = setInterval(() => {
      beating(job, () => this.run())
        .then((report) => report && onReport?.(report))
        .catch(onError);
    }, intervalS * 1000);
    this.timer.unref();
  }

  /** Stops the schedule and waits for a run in progress. */
  async stop(): Promise<void> {
    clearInterval(this.timer);
    this.timer = undefined;
    await this.current?.catch(() => undefined);
  }
}
