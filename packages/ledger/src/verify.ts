// `fedai ledger verify`: proves the books balance. Recomputes every balance from the transfers,
// checks total debits = total credits, every account within its flags, and that no pending
// transfer outlived its timeout.
import type { Queryable } from '@fed-ai/kit';
import { ACCOUNT_FLAGS } from './rules';

export interface LedgerProblem {
  code: 'UNBALANCED' | 'BALANCE_MISMATCH' | 'FLAG_VIOLATED' | 'PENDING_OUTLIVED_TIMEOUT';
  detail: string;
}

export interface LedgerReport {
  ok: boolean;
  accounts: number;
  transfers: number;
  postedTotalMsat: number;
  pendingTotalMsat: number;
  problems: LedgerProblem[];
}

export async function verifyLedger(
  db: Queryable,
  nowS = Math.floor(Date.now() / 1000),
): Promise<LedgerReport> {
  const problems: LedgerProblem[] = [];
  // One statement, so one snapshot: on a live service a transfer committed between two reads
  // would look like unbalanced books. Posted amounts: single transfers and posts. Pending
  // amounts: unresolved pending transfers. The totals row comes back even with no accounts.
  const recomputed = await db.query<{
    id: string | null;
    flags: number;
    debits_pending: number;
    debits_posted: number;
    credits_pending: number;
    credits_posted: number;
    r_debits_posted: number;
    r_credits_posted: number;
    r_debits_pending: number;
    r_credits_pending: number;
    posted_total: number;
    transfer_count: number;
  }>(`WITH totals AS (
      SELECT COALESCE(SUM(amount_msat) FILTER (WHERE kind IN ('single','post')), 0)::bigint AS posted_total,
        COUNT(*)::bigint AS transfer_count FROM ledger_transfers)
    SELECT a.*, totals.posted_total, totals.transfer_count,
      COALESCE((SELECT SUM(amount_msat) FROM ledger_transfers t WHERE t.debit_account_id = a.id AND t.kind IN ('single','post')), 0)::bigint AS r_debits_posted,
      COALESCE((SELECT SUM(amount_msat) FROM ledger_transfers t WHERE t.credit_account_id = a.id AND t.kind IN ('single','post')), 0)::bigint AS r_credits_posted,
      COALESCE((SELECT SUM(amount_msat) FROM ledger_transfers t WHERE t.debit_account_id = a.id AND t.kind = 'pending' AND t.resolution IS NULL), 0)::bigint AS r_debits_pending,
      COALESCE((SELECT SUM(amount_msat) FROM ledger_transfers t WHERE t.credit_account_id = a.id AND t.kind = 'pending' AND t.resolution IS NULL), 0)::bigint AS r_credits_pending
    FROM totals LEFT JOIN ledger_accounts a ON true ORDER BY a.id`);
  const accounts = recomputed.rows.filter((a) => a.id !== null);
  const postedTotal = recomputed.rows[0]?.posted_total ?? 0;
  const transferCount = recomputed.rows[0]?.transfer_count ?? 0;
  let debitsPosted = 0;
  let creditsPosted = 0;
  let debitsPending = 0;
  let creditsPending = 0;
  for (const a of accounts) {
    debitsPosted += a.debits_posted;
    creditsPosted += a.credits_posted;
    debitsPending += a.debits_pending;
    creditsPending += a.credits_pending;
    for (const [stored, computed, name] of [
      [a.debits_posted, a.r_debits_posted, 'debits_posted'],
      [a.credits_posted, a.r_credits_posted, 'credits_posted'],
      [a.debits_pending, a.r_debits_pending, 'debits_pending'],
      [a.credits_pending, a.r_credits_pending, 'credits_pending'],
    ] as const) {
      if (stored !== computed)
        problems.push({
          code: 'BALANCE_MISMATCH',
          detail: `${a.id}.${name} is ${stored}, transfers say ${computed}`,
        });
    }
    if (
      a.flags & ACCOUNT_FLAGS.debitsMustNotExceedCredits &&
      a.debits_pending + a.debits_posted > a.credits_posted
    ) {
      problems.push({ code: 'FLAG_VIOLATED', detail: `${a.id}: debits exceed credits` });
    }
    if (
      a.flags & ACCOUNT_FLAGS.creditsMustNotExceedDebits &&
      a.credits_pending + a.credits_posted > a.debits_posted
    ) {
      problems.push({ code: 'FLAG_VIOLATED', detail: `${a.id}: credits exceed debits` });
    }
  }
  if (debitsPosted !== creditsPosted || debitsPosted !== postedTotal) {
    problems.push({
      code: 'UNBALANCED',
      detail: `posted debits ${debitsPosted}, credits ${creditsPosted}, transfers ${postedTotal}`,
    });
  }
  if (debitsPending !== creditsPending) {
    problems.push({
      code: 'UNBALANCED',
      detail: `pending debits ${debitsPending} != pending credits ${creditsPending}`,
    });
  }
  const stale = await db.query<{ id: string; expires_at_s: number }>(
    `SELECT id, expires_at_s FROM ledger_transfers WHERE kind = 'pending' AND resolution IS NULL AND expires_at_s < $1 ORDER BY expires_at_s LIMIT 20`,
    [nowS],
  );
  for (const t of stale.rows) {
    problems.push({
      code: 'PENDING_OUTLIVED_TIMEOUT',
      detail: `${t.id} expired at ${t.expires_at_s} but is still pending`,
    });
  }
  return {
    ok: problems.length === 0,
    accounts: accounts.length,
    transfers: transferCount,
    postedTotalMsat: postedTotal,
    pendingTotalMsat: debitsPending,
    problems,
  };
}
