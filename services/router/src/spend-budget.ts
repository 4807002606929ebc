// Per-key spend budgets (msat per UTC day and per UTC month), enforced cluster-wide in the router's
// database: before a paid request is reserved at settlement, the reservation's upper bound is held
// against every budget of the key in one transaction (a conditional UPDATE per period, so two
// replicas on one PostgreSQL cannot both pass the check); when the answer is charged the hold turns
// into the exact signed cost, and a request that fails releases it.
//
// Fails closed: a router that crashes between hold and settle leaves that request's upper bound
// counted against the key until the period ends (over-counting, never overspending).
import type { Db, Queryable } from '@fed-ai/kit';
import { FedAiError } from '@fed-ai/protocol';

export interface SpendLimits {
  budget_msat_per_day: number | null;
  budget_msat_per_month: number | null;
}

export interface SpendPeriod {
  /** Row key: `d:2026-12-01` or `m:2026-12` (UTC). */
  period: string;
  limitMsat: number;
  /** When this period ends (unix seconds, exclusive): the Retry-After of a refusal. */
  endsAtS: number;
}

/** The periods a key's budgets apply to at `nowS`, UTC calendar day and month. Pure. */
export function spendPeriods(limits: SpendLimits, nowS: number): SpendPeriod[] {
  const now = new Date(nowS * 1000);
  const y = now.getUTCFullYear();
  const m = now.getUTCMonth();
  const d = now.getUTCDate();
  const periods: SpendPeriod[] = [];
  if (limits.budget_msat_per_day !== null)
    periods.push({
      period: `d:${now.toISOString().slice(0, 10)}`,
      limitMsat: limits.budget_msat_per_day,
      endsAtS: Date.UTC(y, m, d + 1) / 1000,
    });
  if (limits.budget_msat_per_month !== null)
    periods.push({
      period: `m:${now.toISOString().slice(0, 7)}`,
      limitMsat: limits.budget_msat_per_month,
      endsAtS: Date.UTC(y, m + 1, 1) / 1000,
    });
  return periods;
}

/** What a request holds against its key's budgets; settle or release it exactly once. */
export interface SpendHold {
  settle(chargedMsat: number): Promise<void>;
  release(): Promise<void>;
}

export class SpendBudgets {
  constructor(
    private readonly db: Db,
    private readonly nowS: () => number = () => Math.floor(Date.now() / 1000),
  ) {}

  /**
   * Holds `amountMsat` against every budget of the key, all or nothing; throws BUDGET_EXHAUSTED
   * (with `retry_after_s` until the first full period ends) when any would go over.
   */
  async hold(keyId: string, limits: SpendLimits, amountMsat: number): Promise<SpendHold> {
    const periods = spendPeriods(limits, this.nowS());
    if (periods.length === 0) return { settle: async () => {}, release: async () => {} };
    let full: SpendPeriod | null = null;
    try {
      await this.db.transaction(async (tx) => {
        for (const p of periods) {
          // A full period fails the transaction, which undoes the periods held before it.
          if (!(await holdOne(tx, keyId, p, amountMsat))) throw new BudgetFull(p);
        }
      });
    } catch (error) {
      if (!(error instanceof BudgetFull)) throw error;
      full = error.period;
    }
    if (full)
      throw new FedAiError(
        'BUDGET_EXHAUSTED',
        `This request may cost up to ${amountMsat} msat, more than is left of the key's budget of ${full.limitMsat} msat for ${describe(full.period)}.`,
        { retry_after_s: Math.max(1, full.endsAtS - this.nowS()), budget_msat: full.limitMsat },
      );
    let done = false;
    const finish = async (chargedMsat: number) => {
      if (done) return;
      done = true;
      await this.db.transaction(async (tx) => {
        for (const p of periods)
          await tx.query(
            `UPDATE api_key_spend SET held_msat = GREATEST(held_msat - $3, 0), spent_msat = spent_msat + $4
             WHERE key_id = $1 AND period = $2`,
            [keyId, p.period, amountMsat, chargedMsat],
          );
      });
    };
    return { settle: (chargedMsat) => finish(Math.min(chargedMsat, amountMsat)), release: () => finish(0) };
  }

  /** Spent and held msat per period of the key's current budgets (for `GET /v1/tabs/me`). */
  async usage(
    keyId: string,
    limits: SpendLimits,
  ): Promise<{ period: string; limit_msat: number; spent_msat: number; held_msat: number }[]> {
    const periods = spendPeriods(limits, this.nowS());
    const rows = await this.db.query<{ period: string; spent_msat: number; held_msat: number }>(
      'SELECT period, spent_msat, held_msat FROM api_key_spend WHERE key_id = $1 AND period = ANY($2)',
      [keyId, periods.map((p) => p.period)],
    );
    return periods.map((p) => {
      const row = rows.rows.find((r) => r.period === p.period);
      return {
        period: p.period,
        limit_msat: p.limitMsat,
        spent_msat: Number(row?.spent_msat ?? 0),
        held_msat: Number(row?.held_msat ?? 0),
      };
    });
  }
}

class BudgetFull extends Error {
  constructor(readonly period: SpendPeriod) {
    super('budget full');
  }
}

/** One conditional UPDATE: PostgreSQL re-checks the WHERE on the locked row, so it cannot race. */
async function holdOne(tx: Queryable, keyId: string, p: SpendPeriod, amountMsat: number): Promise<boolean> {
  await tx.query(
    'INSERT INTO api_key_spend (key_id, period) VALUES ($1, $2) ON CONFLICT (key_id, period) DO NOTHING',
    [keyId, p.period],
  );
  const held = await tx.query(
    `UPDATE api_key_spend SET held_msat = held_msat + $3
     WHERE key_id = $1 AND period = $2 AND spent_msat + held_msat + $3 <= $4 RETURNING key_id`,
    [keyId, p.period, amountMsat, p.limitMsat],
  );
  return held.rows.length === 1;
}

function describe(period: string): string {
  return period.startsWith('d:') ? `the UTC day ${period.slice(2)}` : `the UTC month ${period.slice(2)}`;
}
