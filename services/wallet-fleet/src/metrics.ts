// Wallet-fleet metrics (Prometheus): decisions by outcome and reason, payments by result, approvals
// and payments waiting (read from the database at scrape time, so every replica reports the same),
// kills, top-ups and funding requests, and the sweeper's heartbeat.
import type { Db } from '@fed-ai/kit';
import { Counter, Gauge, type Registry } from 'prom-client';

export class FleetMetrics {
  readonly decisions: Counter<'outcome' | 'code'>;
  readonly payments: Counter<'result'>;
  readonly switches: Counter<'status'>;
  readonly topups: Counter<never>;
  readonly topupMsat: Counter<never>;
  readonly fundingRequests: Counter<'state'>;
  readonly sweepLastSuccessS: Gauge<never>;

  constructor(registry: Registry, db: Db) {
    const registers = [registry];
    this.decisions = new Counter({
      name: 'wallet_fleet_decisions_total',
      help: 'Policy decisions on payments, by outcome and reason code',
      labelNames: ['outcome', 'code'],
      registers,
    });
    this.payments = new Counter({
      name: 'wallet_fleet_payments_total',
      help: 'Payments sent by result (succeeded, failed, pending)',
      labelNames: ['result'],
      registers,
    });
    this.switches = new Counter({
      name: 'wallet_fleet_switches_total',
      help: 'Kill, pause and revive actions by resulting status',
      labelNames: ['status'],
      registers,
    });
    this.topups = new Counter({
      name: 'wallet_fleet_topups_total',
      help: 'Automatic top-ups made',
      registers,
    });
    this.topupMsat = new Counter({
      name: 'wallet_fleet_topup_msat_total',
      help: 'Msat moved by top-ups',
      registers,
    });
    this.fundingRequests = new Counter({
      name: 'wallet_fleet_funding_requests_total',
      help: 'Funding requests by state change (requested, approved, denied)',
      labelNames: ['state'],
      registers,
    });
    this.sweepLastSuccessS = new Gauge({
      name: 'wallet_fleet_sweep_last_success_seconds',
      help: 'Unix time of the last sweep (invoices, recovery, top-ups) that completed: a heartbeat',
      registers,
    });
    const countGauge = (name: string, help: string, sql: string) =>
      new Gauge({
        name,
        help,
        registers,
        async collect() {
          const rows = await db.query<{ n: string }>(sql).catch(() => null);
          if (rows) this.set(Number(rows.rows[0]?.n ?? 0));
        },
      });
    countGauge(
      'wallet_fleet_approvals_pending',
      'Challenged payments waiting for the owner',
      "SELECT count(*) AS n FROM wf_approvals WHERE state = 'pending' AND expires_at_s > extract(epoch from now())",
    );
    countGauge(
      'wallet_fleet_payments_in_flight',
      'Payments whose outcome is not known yet',
      "SELECT count(*) AS n FROM wf_payments WHERE state = 'sending'",
    );
  }
}
