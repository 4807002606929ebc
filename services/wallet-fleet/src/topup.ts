// The top-up loop: a wallet below its low watermark gets funds moved from the owner's treasury up to
// its high watermark, within a top-up budget of its own per UTC day. The decision is pure
// (`topupAmount`); the shell runs each wallet in one transaction under the wallet row lock, with a
// transfer id from (wallet, day, sequence), so two replicas ticking at once move money once.
import type { Queryable } from '@fed-ai/kit';
import { availableMsat } from '@fed-ai/ledger';
import { FedAiError } from '@fed-ai/protocol';
import { z } from 'zod';
import { WF_ACCOUNTS, WF_TRANSFERS } from './accounts';
import type { Fleet } from './fleet';

export const topupSettingsSchema = z
  .strictObject({
    low_msat: z.number().int().min(0).max(100_000_000_000),
    high_msat: z.number().int().positive().max(100_000_000_000),
    budget_msat_per_day: z.number().int().positive().max(100_000_000_000),
  })
  .refine((t) => t.high_msat > t.low_msat, 'high_msat must be above low_msat')
  .nullable();
export type TopupSettings = z.infer<typeof topupSettingsSchema>;

export interface TopupInput {
  balanceMsat: number;
  lowMsat: number;
  highMsat: number;
  /** Moved by top-ups today (UTC). */
  movedTodayMsat: number;
  budgetMsatPerDay: number;
  treasuryMsat: number;
}

/** How much to move now: up to the high watermark, never past today's budget or the treasury. */
export function topupAmount(t: TopupInput): number {
  if (t.balanceMsat >= t.lowMsat) return 0;
  const wanted = t.highMsat - t.balanceMsat;
  const budgetLeft = Math.max(0, t.budgetMsatPerDay - t.movedTodayMsat);
  return Math.max(0, Math.min(wanted, budgetLeft, t.treasuryMsat));
}

/** Most wallets one tick looks at (the rest wait for the next tick). */
const WALLETS_PER_TICK = 100;

interface TopupWallet {
  id: string;
  owner: string;
  topup_low_msat: string;
  topup_high_msat: string;
  topup_budget_msat_per_day: string;
}

export async function setTopup(
  fleet: Fleet,
  owner: string,
  walletId: string,
  input: unknown,
): Promise<TopupSettings> {
  const settings = topupSettingsSchema.parse(input);
  await fleet.db.transaction(async (tx) => {
    const wallet = await fleet.walletIn(tx, walletId, true);
    if (!wallet || wallet.owner !== owner)
      throw new FedAiError('NOT_FOUND', 'No wallet of yours has this id.');
    await tx.query(
      'UPDATE wf_wallets SET topup_low_msat = $2, topup_high_msat = $3, topup_budget_msat_per_day = $4 WHERE id = $1',
      [
        walletId,
        settings?.low_msat ?? null,
        settings?.high_msat ?? null,
        settings?.budget_msat_per_day ?? null,
      ],
    );
    await fleet.audit.append(tx, {
      actor: owner,
      action: 'topup.set',
      subject: walletId,
      data: { settings },
    });
  });
  return settings;
}

/** One tick over wallets with top-up settings; returns how many were topped up. */
export async function runTopups(fleet: Fleet): Promise<number> {
  const wallets = await fleet.db.query<TopupWallet>(
    `SELECT id, owner, topup_low_msat, topup_high_msat, topup_budget_msat_per_day FROM wf_wallets
     WHERE topup_low_msat IS NOT NULL AND status = 'active' ORDER BY id LIMIT $1`,
    [WALLETS_PER_TICK],
  );
  let done = 0;
  for (const w of wallets.rows) if (await topupOne(fleet, w)) done += 1;
  return done;
}

async function topupOne(fleet: Fleet, w: TopupWallet): Promise<boolean> {
  const day = new Date(fleet.nowS() * 1000).toISOString().slice(0, 10);
  return fleet.db.transaction(async (tx) => {
    // The wallet row lock orders this against payments and other replicas' ticks.
    const wallet = await fleet.walletIn(tx, w.id, true);
    if (!wallet || (await fleet.effectiveStatus(tx, wallet)) !== 'active') return false;
    const today = await tx.query<{ n: string; total: string | null }>(
      'SELECT count(*) AS n, sum(amount_msat) AS total FROM wf_topups WHERE wallet_id = $1 AND day = $2',
      [w.id, day],
    );
    const [walletAccount = 0, treasury = 0] = await balances(tx, [
      WF_ACCOUNTS.wallet(w.id),
      WF_ACCOUNTS.treasury(w.owner),
    ]);
    const amountMsat = topupAmount({
      balanceMsat: walletAccount,
      lowMsat: Number(w.topup_low_msat),
      highMsat: Number(w.topup_high_msat),
      movedTodayMsat: Number(today.rows[0]?.total ?? 0),
      budgetMsatPerDay: Number(w.topup_budget_msat_per_day),
      treasuryMsat: treasury,
    });
    if (amountMsat === 0) return false;
    const seq = Number(today.rows[0]?.n ?? 0) + 1;
    const [result] = await fleet.ledger.createTransfersIn(tx, [
      {
        id: WF_TRANSFERS.move(`${w.owner}:auto:${w.id}:${day}:${seq}`),
        kind: 'single',
        debitAccountId: WF_ACCOUNTS.treasury(w.owner),
        creditAccountId: WF_ACCOUNTS.wallet(w.id),
        amountMsat,
        userData: `topup:${day}:${seq}`,
      },
    ]);
    if (result?.code !== 'OK') return false; // EXISTS: another replica did it; EXCEEDS_CREDITS: treasury moved
    await tx.query(
      'INSERT INTO wf_topups (wallet_id, day, seq, amount_msat, created_at_s) VALUES ($1,$2,$3,$4,$5)',
      [w.id, day, seq, amountMsat, fleet.nowS()],
    );
    await fleet.audit.append(tx, {
      actor: 'system',
      action: 'funding.topup',
      subject: w.id,
      data: { amount_msat: amountMsat, day, seq, balance_before_msat: walletAccount },
    });
    fleet.metrics?.topups.inc();
    fleet.metrics?.topupMsat.inc(amountMsat);
    return true;
  });
}

async function balances(tx: Queryable, ids: string[]): Promise<number[]> {
  const rows = await tx.query<{
    id: string;
    flags: number;
    debits_pending: string;
    debits_posted: string;
    credits_pending: string;
    credits_posted: string;
  }>('SELECT * FROM ledger_accounts WHERE id = ANY($1)', [ids]);
  return ids.map((id) => {
    const r = rows.rows.find((row) => row.id === id);
    return r
      ? availableMsat({
          id,
          flags: r.flags,
          debitsPending: Number(r.debits_pending),
          debitsPosted: Number(r.debits_posted),
          creditsPending: Number(r.credits_pending),
          creditsPosted: Number(r.credits_posted),
        })
      : 0;
  });
}
