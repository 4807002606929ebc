// The operator's view of the money (`GET /v1/admin/overview`, for the router's dashboard and
// `fedai`): what the router earned in fees, the prepaid tabs and what they hold, and node payouts
// (owed and recent). Read-only; every list is bounded; amounts are integer msat. The balances are
// the ledger's own rows (available = credits posted - debits posted - debits pending, as
// availableMsat in @fed-ai/ledger computes it), so this view and `ledger verify` read the same numbers.
import type { Queryable } from '@fed-ai/kit';
import { z } from 'zod';
import { ACCOUNTS, leasedMsatSql } from './books';

const OVERVIEW_MAX_ROWS = 100;
export const overviewQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(OVERVIEW_MAX_ROWS).optional(),
});
const DEFAULT_ROWS = 20;
const DAY_S = 24 * 3600;

interface AccountSums {
  count: number;
  balance_msat: number;
  reserved_msat: number;
}

export interface Overview {
  fees: {
    /** The router's fee account: its share of every capture, less dispute refunds. */
    router_fees_msat: number;
    last_24h: { requests: number; charged_msat: number; node_msat: number; router_msat: number };
  };
  tabs: AccountSums & {
    /** The largest tabs by what they can spend. */
    largest: { payer: string; balance_msat: number; reserved_msat: number }[];
  };
  payouts: {
    /** Earnings nodes have here and were not paid yet. */
    owed: AccountSums;
    recent: {
      payout_id: string;
      node: string;
      state: string;
      amount_msat: number;
      fee_msat: number | null;
      created_at_s: number;
    }[];
  };
}

const AVAILABLE = 'credits_posted - debits_posted - debits_pending';

async function sums(db: Queryable, prefix: string): Promise<AccountSums> {
  const { rows } = await db.query<AccountSums>(
    `SELECT COUNT(*)::int AS count, COALESCE(SUM(${AVAILABLE}), 0)::bigint AS balance_msat,
       COALESCE(SUM(debits_pending), 0)::bigint AS reserved_msat
     FROM ledger_accounts WHERE starts_with(id, $1)`,
    [prefix],
  );
  return rows[0] ?? { count: 0, balance_msat: 0, reserved_msat: 0 };
}

async function fees(db: Queryable, nowS: number): Promise<Overview['fees']> {
  const account = await db.query<{ available: number }>(
    `SELECT (${AVAILABLE})::bigint AS available FROM ledger_accounts WHERE id = $1`,
    [ACCOUNTS.routerFees],
  );
  const day = await db.query<Overview['fees']['last_24h']>(
    `SELECT COUNT(*)::int AS requests, COALESCE(SUM(amount_msat), 0)::bigint AS charged_msat,
       COALESCE(SUM(node_msat), 0)::bigint AS node_msat, COALESCE(SUM(router_msat), 0)::bigint AS router_msat
     FROM charges WHERE created_at >= to_timestamp($1)`,
    [nowS - DAY_S],
  );
  return {
    router_fees_msat: account.rows[0]?.available ?? 0,
    last_24h: day.rows[0] ?? { requests: 0, charged_msat: 0, node_msat: 0, router_msat: 0 },
  };
}

async function largestTabs(db: Queryable, limit: number): Promise<Overview['tabs']['largest']> {
  const prefix = ACCOUNTS.tab('');
  const { rows } = await db.query<{ id: string; balance_msat: number; reserved_msat: number }>(
    `SELECT id, (${AVAILABLE})::bigint AS balance_msat, (debits_pending + ${leasedMsatSql('a.id')})::bigint AS reserved_msat
     FROM ledger_accounts a WHERE starts_with(id, $1) ORDER BY 2 DESC, id LIMIT $2`,
    [prefix, limit],
  );
  return rows.map((r) => ({
    payer: r.id.slice(prefix.length),
    balance_msat: r.balance_msat,
    reserved_msat: r.reserved_msat,
  }));
}

async function recentPayouts(db: Queryable, limit: number): Promise<Overview['payouts']['recent']> {
  const { rows } = await db.query<Overview['payouts']['recent'][number]>(
    `SELECT p.payout_id, p.node, p.state, m.amount_msat, m.fee_msat, p.created_at_s
     FROM payouts p JOIN payments m ON m.payment_hash = p.payment_hash
     ORDER BY p.created_at_s DESC, p.payout_id LIMIT $1`,
    [limit],
  );
  return rows;
}

/** The overview at `nowS`, with at most `limit` rows per list. */
export async function readOverview(db: Queryable, nowS: number, limit = DEFAULT_ROWS): Promise<Overview> {
  const [fee, tabs, leased, largest, owed, recent] = await Promise.all([
    fees(db, nowS),
    sums(db, ACCOUNTS.tab('')),
    sums(db, ACCOUNTS.lease('')),
    largestTabs(db, limit),
    sums(db, ACCOUNTS.earnings('')),
    recentPayouts(db, limit),
  ]);
  // Money in open leases left the tabs' accounts but is still theirs: counted as reserved.
  const reservedMsat = Number(tabs.reserved_msat) + Number(leased.balance_msat);
  return { fees: fee, tabs: { ...tabs, reserved_msat: reservedMsat, largest }, payouts: { owed, recent } };
}
