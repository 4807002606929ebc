// One agent payment, race-free: in ONE transaction the wallet row is locked (FOR UPDATE) and the
// switches read FOR SHARE, the wallet's state is read from the database (never from memory), the
// pure policy decides, the decision is audited, and an allowed live payment places pending holds on
// the wallet and on each calendar budget's allowance account (no-overdraft flags) and is marked
// `sending`. Only then does the backend pay; the holds are posted on success and voided on a
// definite failure. An unknown outcome stays `sending` until the backend can say (recoverPayments).
import { randomUUID } from 'node:crypto';
import type { Queryable } from '@fed-ai/kit';
import { ACCOUNT_FLAGS, type TransferInput, type TransferResult } from '@fed-ai/ledger';
import { decodeInvoice, LightningPaymentError, type PaymentStatus, sha256Hex } from '@fed-ai/lightning';
import { FedAiError } from '@fed-ai/protocol';
import { WF_ACCOUNTS, WF_TRANSFERS } from './accounts';
import type { AuditInput } from './audit';
import type { Fleet, WalletRow } from './fleet';
import { periodBounds, periodKey } from './periods';
import { type Decision, decide, type WalletState } from './policy';

export type PayOutcome =
  | { kind: 'paid'; paymentHash: string; preimage: string; amountMsat: number; feeMsat: number }
  | { kind: 'denied'; decision: Decision }
  | { kind: 'challenged'; decision: Decision; approvalId: string }
  | { kind: 'dry-run'; decision: Decision }
  | { kind: 'failed'; paymentHash: string; message: string }
  | { kind: 'pending'; paymentHash: string }
  | { kind: 'refused'; code: RefusalCode; message: string };

export type RefusalCode = 'INVALID_INVOICE' | 'INVOICE_EXPIRED' | 'ALREADY_PAID' | 'OWN_INVOICE';

interface PaymentRow {
  payment_hash: string;
  wallet_id: string;
  bolt11: string;
  amount_msat: number;
  max_fee_msat: number;
  budget_ids: string[];
  created_at_s: number;
}

type Start = { kind: 'send'; row: PaymentRow; accounts: string[] } | { kind: 'done'; outcome: PayOutcome };

/**
 * A payment still `sending` this long after it started may be resolved from the backend's answer:
 * longer than a send's timeout (the backend adapter's 10 s), so a send on its way is not raced.
 */
const DEFAULT_RECOVER_AFTER_S = 30;

export class Payments {
  /** Most payments in flight in this process: more wait for the backend's answer elsewhere. */
  private inFlight = new Set<string>();

  constructor(
    private readonly fleet: Fleet,
    private readonly options: { maxFeeMsat?: number; maxInFlight?: number; recoverAfterS?: number } = {},
  ) {}

  /**
   * `rerun`: this is the same request again (a crashed process had taken it): if the fleet already
   * started paying this invoice from this wallet, answer that payment's outcome instead of
   * ALREADY_PAID. A new request for a paid invoice is still refused.
   */
  async pay(
    walletId: string,
    bolt11: string,
    actor: string,
    options: { rerun?: boolean } = {},
  ): Promise<PayOutcome> {
    let decoded: ReturnType<typeof decodeInvoice>;
    try {
      decoded = decodeInvoice(bolt11);
    } catch (error) {
      return {
        kind: 'refused',
        code: 'INVALID_INVOICE',
        message: `not a payable BOLT11 invoice: ${(error as Error).message}`,
      };
    }
    if (options.rerun) {
      const prior = await this.priorOutcome(walletId, decoded.paymentHash);
      if (prior) return prior;
    }
    if (decoded.expiresAtS <= this.fleet.nowS())
      return { kind: 'refused', code: 'INVOICE_EXPIRED', message: 'the invoice has expired' };
    if (this.inFlight.size >= (this.options.maxInFlight ?? 256))
      throw new FedAiError('OVERLOADED', 'Too many payments in flight; retry shortly.');
    // Audit entries are appended last in the transaction: every transaction here takes row and
    // ledger locks before the audit log's lock, so no two can wait on each other in a cycle.
    const start = await retryOnConflict(() =>
      this.fleet.db.transaction(async (tx) => {
        const audits: AuditInput[] = [];
        const result = await this.start(tx, walletId, bolt11.trim(), decoded, actor, audits);
        for (const entry of audits) await this.fleet.audit.append(tx, entry);
        return result;
      }),
    );
    if (start.kind === 'done') return start.outcome;
    return this.send(start.row, start.accounts);
  }

  private async start(
    tx: Queryable,
    walletId: string,
    bolt11: string,
    invoice: ReturnType<typeof decodeInvoice>,
    actor: string,
    audits: AuditInput[],
  ): Promise<Start> {
    const wallet = await this.fleet.walletIn(tx, walletId, true);
    if (!wallet) throw new FedAiError('NOT_FOUND', 'No such wallet.');
    const hash = invoice.paymentHash;
    const prior = await tx.query('SELECT state FROM wf_payments WHERE payment_hash = $1', [hash]);
    if (prior.rows.length > 0)
      return done({
        kind: 'refused',
        code: 'ALREADY_PAID',
        message: 'this invoice was already paid (or is being paid) by the fleet',
      });
    const own = await tx.query('SELECT 1 FROM wf_invoices WHERE payment_hash = $1', [hash]);
    if (own.rows.length > 0)
      return done({
        kind: 'refused',
        code: 'OWN_INVOICE',
        message: "the invoice is one of this fleet's own (move funds with the owner API instead)",
      });
    const amountMsat = invoice.amountMsat + this.maxFeeMsat();
    // The BOLT11 payee is a compressed secp256k1 key; policies name x-only (Nostr-style) keys.
    const payee = /^0[23][0-9a-f]{64}$/.test(invoice.payee) ? invoice.payee.slice(2) : null;
    const state = await this.walletState(tx, wallet);
    const approval = await tx.query<{ id: string }>(
      `SELECT id FROM wf_approvals WHERE wallet_id = $1 AND payment_hash = $2 AND amount_msat = $3
       AND state = 'approved' AND expires_at_s > $4 LIMIT 1 FOR UPDATE`,
      [wallet.id, hash, invoice.amountMsat, state.nowS],
    );
    const approvalId = approval.rows[0]?.id;
    const decision = decide(
      wallet.policy,
      state,
      {
        method: 'pay_invoice',
        amountMsat,
        payee,
        paymentHash: hash,
        approved: approvalId !== undefined,
      },
      wallet.policy_hash,
    );
    audits.push({
      actor,
      action: 'decision',
      subject: wallet.id,
      data: {
        payment_hash: hash,
        amount_msat: amountMsat,
        payee,
        outcome: decision.outcome,
        code: decision.code,
        policy_hash: decision.policyHash,
        dry_run: decision.dryRun,
      },
    });
    this.fleet.metrics?.decisions.inc({
      outcome: decision.dryRun ? `${decision.outcome}-dry-run` : decision.outcome,
      code: decision.code,
    });
    if (decision.outcome === 'deny') return done({ kind: 'denied', decision });
    if (decision.outcome === 'challenge') {
      const id = await this.parkForApproval(tx, wallet.id, hash, invoice.amountMsat, state.nowS, audits);
      return done({ kind: 'challenged', decision, approvalId: id });
    }
    if (decision.dryRun) return done({ kind: 'dry-run', decision });
    return this.hold(
      tx,
      wallet,
      { hash, bolt11, amountMsat, payee, description: invoice.description, approvalId },
      audits,
    );
  }

  /** The wallet's state from the database, inside the payment's transaction (the row is locked). */
  private async walletState(tx: Queryable, wallet: WalletRow): Promise<WalletState> {
    const nowS = this.fleet.nowS();
    const spentSince = async (startS: number, endS: number) => {
      const rows = await tx.query<{ total: string | null; n: string; last: string | null }>(
        `SELECT sum(amount_msat + COALESCE(fee_msat, max_fee_msat)) AS total, count(*) AS n, max(created_at_s) AS last
         FROM wf_payments WHERE wallet_id = $1 AND state IN ('sending', 'succeeded') AND created_at_s >= $2 AND created_at_s < $3`,
        [wallet.id, startS, endS],
      );
      const r = rows.rows[0];
      return {
        msat: Number(r?.total ?? 0),
        count: Number(r?.n ?? 0),
        lastS: r?.last == null ? null : Number(r.last),
      };
    };
    const spentByBudgetMsat: Record<string, number> = {};
    for (const budget of wallet.policy.budgets) {
      const bounds = periodBounds(budget.period, nowS);
      // A rolling window ends now: include this second's payments.
      spentByBudgetMsat[budget.id] = (await spentSince(bounds.startS, Math.max(bounds.endS, nowS + 1))).msat;
    }
    const windowS = wallet.policy.maxPayments?.windowS ?? 0;
    const window = await spentSince(nowS - windowS, nowS + 1);
    const last = await spentSince(0, nowS + 1);
    const account = await tx.query<{ credits_posted: string; debits_posted: string; debits_pending: string }>(
      'SELECT credits_posted, debits_posted, debits_pending FROM ledger_accounts WHERE id = $1',
      [WF_ACCOUNTS.wallet(wallet.id)],
    );
    const a = account.rows[0];
    return {
      nowS,
      lastPaymentAtS: last.lastS,
      paymentsInWindow: windowS > 0 ? window.count : 0,
      spentByBudgetMsat,
      balanceMsat: a ? Number(a.credits_posted) - Number(a.debits_posted) - Number(a.debits_pending) : 0,
      status: await this.fleet.effectiveStatus(tx, wallet),
    };
  }

  private async parkForApproval(
    tx: Queryable,
    walletId: string,
    hash: string,
    amountMsat: number,
    nowS: number,
    audits: AuditInput[],
  ): Promise<string> {
    const existing = await tx.query<{ id: string }>(
      `SELECT id FROM wf_approvals WHERE wallet_id = $1 AND payment_hash = $2 AND state = 'pending' AND expires_at_s > $3`,
      [walletId, hash, nowS],
    );
    if (existing.rows[0]) return existing.rows[0].id;
    const id = `ap_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
    await tx.query(
      `INSERT INTO wf_approvals (id, wallet_id, payment_hash, amount_msat, state, created_at_s, expires_at_s)
       VALUES ($1,$2,$3,$4,'pending',$5,$6)`,
      [id, walletId, hash, amountMsat, nowS, nowS + this.fleet.approvalTtl],
    );
    audits.push({
      actor: 'system',
      action: 'approval.request',
      subject: walletId,
      data: { approval_id: id, payment_hash: hash, amount_msat: amountMsat },
    });
    return id;
  }

  /** Holds on the wallet and every calendar budget, linked (all or nothing), then marks `sending`. */
  private async hold(
    tx: Queryable,
    wallet: WalletRow,
    p: {
      hash: string;
      bolt11: string;
      amountMsat: number;
      payee: string | null;
      description: string;
      approvalId: string | undefined;
    },
    audits: AuditInput[],
  ): Promise<Start> {
    const nowS = this.fleet.nowS();
    const budgetAccounts: { budgetId: string; account: string }[] = [];
    const fundings: TransferInput[] = [];
    for (const budget of wallet.policy.budgets) {
      if (budget.period.kind !== 'calendar') continue; // rolling windows: checked by decide() under the lock
      const account = WF_ACCOUNTS.budget(
        wallet.id,
        budget.id,
        periodKey(budget.period, nowS),
        wallet.policy_version,
      );
      const funding = await this.ensureBudgetAccount(tx, wallet, budget, account, nowS);
      if (funding) fundings.push(funding);
      budgetAccounts.push({ budgetId: budget.id, account });
    }
    const unlinked: TransferInput[] = [
      {
        id: WF_TRANSFERS.hold(p.hash),
        kind: 'pending',
        debitAccountId: WF_ACCOUNTS.wallet(wallet.id),
        creditAccountId: WF_ACCOUNTS.lightning,
        amountMsat: p.amountMsat,
        timeoutS: 30 * 24 * 3600,
        userData: p.hash,
      },
      ...budgetAccounts.map(
        (b): TransferInput => ({
          id: WF_TRANSFERS.budgetHold(p.hash, b.budgetId),
          kind: 'pending',
          debitAccountId: b.account,
          creditAccountId: WF_ACCOUNTS.budgetSpent,
          amountMsat: p.amountMsat,
          timeoutS: 30 * 24 * 3600,
          userData: p.hash,
        }),
      ),
    ];
    const chain: TransferInput[] = unlinked.map((t, i) => ({ ...t, linked: i < unlinked.length - 1 }));
    // One batch, so the ledger takes every account lock in one sorted pass (no lock-order cycles
    // with another payment's post); new allowances first, outside the linked chain.
    const results = (await this.fleet.ledger.createTransfersIn(tx, [...fundings, ...chain])).slice(
      fundings.length,
    );
    const failure = firstFailure(results);
    if (failure) {
      // The decision allowed it, the ledger did not (it is the last word): record and refuse.
      audits.push({
        actor: 'system',
        action: 'payment.refused',
        subject: wallet.id,
        data: { payment_hash: p.hash, ledger_code: failure.code, transfer: failure.id },
      });
      const code = failure.id.startsWith('bhold:') ? 'OVER_BUDGET' : 'INSUFFICIENT_BALANCE';
      return done({
        kind: 'denied',
        decision: {
          outcome: 'deny',
          code,
          message: `the ledger refused the hold (${failure.code})`,
          policyHash: wallet.policy_hash,
          dryRun: false,
        },
      });
    }
    const row: PaymentRow = {
      payment_hash: p.hash,
      wallet_id: wallet.id,
      bolt11: p.bolt11,
      amount_msat: p.amountMsat - this.maxFeeMsat(),
      max_fee_msat: this.maxFeeMsat(),
      budget_ids: budgetAccounts.map((b) => b.budgetId),
      created_at_s: nowS,
    };
    await tx.query(
      `INSERT INTO wf_payments (payment_hash, wallet_id, bolt11, amount_msat, max_fee_msat, payee, description, state, budget_ids, created_at_s)
       VALUES ($1,$2,$3,$4,$5,$6,$7,'sending',$8,$9)`,
      [
        p.hash,
        wallet.id,
        p.bolt11,
        row.amount_msat,
        row.max_fee_msat,
        p.payee,
        p.description.slice(0, 640),
        JSON.stringify(budgetAccounts),
        nowS,
      ],
    );
    if (p.approvalId) await tx.query(`UPDATE wf_approvals SET state = 'used' WHERE id = $1`, [p.approvalId]);
    return { kind: 'send', row, accounts: budgetAccounts.map((b) => b.account) };
  }

  /**
   * A calendar budget's allowance for this period and policy version: funded once with the limit
   * minus what the period already spent (a policy change mid-period opens a new account).
   */
  private async ensureBudgetAccount(
    tx: Queryable,
    wallet: WalletRow,
    budget: WalletRow['policy']['budgets'][number],
    account: string,
    nowS: number,
  ): Promise<TransferInput | null> {
    const created = await tx.query(
      'INSERT INTO ledger_accounts (id, flags) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING RETURNING id',
      [account, ACCOUNT_FLAGS.debitsMustNotExceedCredits],
    );
    if (created.rows.length === 0) return null;
    const bounds = periodBounds(budget.period, nowS);
    const spent = await tx.query<{ total: string | null }>(
      `SELECT sum(amount_msat + COALESCE(fee_msat, max_fee_msat)) AS total FROM wf_payments
       WHERE wallet_id = $1 AND state IN ('sending', 'succeeded') AND created_at_s >= $2 AND created_at_s < $3`,
      [wallet.id, bounds.startS, bounds.endS],
    );
    const allowance = budget.limitMsat - Number(spent.rows[0]?.total ?? 0);
    if (allowance <= 0) return null;
    return {
      id: WF_TRANSFERS.budgetFund(account),
      kind: 'single',
      debitAccountId: WF_ACCOUNTS.budgetSource,
      creditAccountId: account,
      amountMsat: allowance,
    };
  }

  private maxFeeMsat(): number {
    return this.options.maxFeeMsat ?? 0;
  }

  /** Pays through the backend, then posts or voids. */
  private async send(row: PaymentRow, accounts: string[]): Promise<PayOutcome> {
    this.inFlight.add(row.payment_hash);
    try {
      let status: PaymentStatus;
      try {
        const paid = await this.fleet.backend.payInvoice(row.bolt11, { maxFeeMsat: row.max_fee_msat });
        status = { state: 'succeeded', ...paid };
      } catch (error) {
        status =
          error instanceof LightningPaymentError && error.definite
            ? { state: 'failed', paymentHash: row.payment_hash, code: error.code }
            : { state: 'pending', paymentHash: row.payment_hash };
      }
      return await this.apply(row, accounts, status);
    } finally {
      this.inFlight.delete(row.payment_hash);
    }
  }

  /** Posts (succeeded) or voids (failed) every hold of a payment, with its row and audit. Idempotent. */
  private async apply(row: PaymentRow, accounts: string[], status: PaymentStatus): Promise<PayOutcome> {
    const hash = row.payment_hash;
    if (status.state === 'pending' || status.state === 'unknown')
      return { kind: 'pending', paymentHash: hash };
    const succeeded = status.state === 'succeeded';
    if (succeeded && sha256Hex(status.preimage) !== hash)
      throw new Error(`the backend returned a preimage that does not hash to ${hash}`);
    const feeMsat = succeeded ? Math.min(Math.max(status.feeMsat, 0), row.max_fee_msat) : 0;
    const spentMsat = row.amount_msat + feeMsat;
    const budgets = row.budget_ids.map((budgetId, i) => ({ budgetId, account: accounts[i]! }));
    const resolve = (kind: 'post' | 'void'): TransferInput[] => [
      {
        id: kind === 'post' ? WF_TRANSFERS.post(hash) : WF_TRANSFERS.void(hash),
        kind,
        pendingId: WF_TRANSFERS.hold(hash),
        debitAccountId: WF_ACCOUNTS.wallet(row.wallet_id),
        creditAccountId: WF_ACCOUNTS.lightning,
        amountMsat: kind === 'post' ? spentMsat : 0,
        userData: hash,
      },
      ...budgets.map(
        (b): TransferInput => ({
          id:
            kind === 'post'
              ? WF_TRANSFERS.budgetPost(hash, b.budgetId)
              : WF_TRANSFERS.budgetVoid(hash, b.budgetId),
          kind,
          pendingId: WF_TRANSFERS.budgetHold(hash, b.budgetId),
          debitAccountId: b.account,
          creditAccountId: WF_ACCOUNTS.budgetSpent,
          amountMsat: kind === 'post' ? spentMsat : 0,
          userData: hash,
        }),
      ),
    ];
    const changed = await this.fleet.db.transaction(async (tx) => {
      const updated = await tx.query(
        `UPDATE wf_payments SET state = $2, preimage = $3, fee_msat = $4, failure = $5, settled_at_s = $6
         WHERE payment_hash = $1 AND state = 'sending' RETURNING payment_hash`,
        [
          hash,
          succeeded ? 'succeeded' : 'failed',
          succeeded ? status.preimage : null,
          feeMsat,
          succeeded ? null : status.code,
          this.fleet.nowS(),
        ],
      );
      if (updated.rows.length === 0) return false; // another process resolved it first
      const results = await this.fleet.ledger.createTransfersIn(tx, resolve(succeeded ? 'post' : 'void'));
      const bad = results.find((r) => r.code !== 'OK' && r.code !== 'EXISTS');
      if (bad)
        throw new FedAiError(
          'LEDGER_REJECTED',
          `payment ${hash} ${succeeded ? 'post' : 'void'}: ${bad.id} ${bad.code}`,
        );
      await this.fleet.audit.append(tx, {
        actor: 'system',
        action: succeeded ? 'payment.sent' : 'payment.failed',
        subject: row.wallet_id,
        data: {
          payment_hash: hash,
          amount_msat: row.amount_msat,
          fee_msat: feeMsat,
          ...(succeeded ? {} : { code: status.code }),
        },
      });
      return true;
    });
    if (!changed) return this.outcomeOf(hash);
    this.fleet.metrics?.payments.inc({ result: succeeded ? 'succeeded' : 'failed' });
    return succeeded
      ? { kind: 'paid', paymentHash: hash, preimage: status.preimage, amountMsat: row.amount_msat, feeMsat }
      : { kind: 'failed', paymentHash: hash, message: `the payment failed (${status.code})` };
  }

  /** This wallet's payment of that invoice, if it has one (succeeded, failed or still in flight). */
  private async priorOutcome(walletId: string, hash: string): Promise<PayOutcome | null> {
    const rows = await this.fleet.db.query(
      'SELECT 1 FROM wf_payments WHERE payment_hash = $1 AND wallet_id = $2',
      [hash, walletId],
    );
    return rows.rows.length > 0 ? this.outcomeOf(hash) : null;
  }

  private async outcomeOf(hash: string): Promise<PayOutcome> {
    const rows = await this.fleet.db.query<{
      state: string;
      preimage: string | null;
      amount_msat: string;
      fee_msat: string | null;
    }>('SELECT state, preimage, amount_msat, fee_msat FROM wf_payments WHERE payment_hash = $1', [hash]);
    const r = rows.rows[0];
    if (r?.state === 'succeeded' && r.preimage)
      return {
        kind: 'paid',
        paymentHash: hash,
        preimage: r.preimage,
        amountMsat: Number(r.amount_msat),
        feeMsat: Number(r.fee_msat ?? 0),
      };
    if (r?.state === 'failed') return { kind: 'failed', paymentHash: hash, message: 'the payment failed' };
    return { kind: 'pending', paymentHash: hash };
  }

  /**
   * Resolves payments left `sending` (a crash, a backend that could not answer) from the backend's
   * answer. A payment the backend never saw is failed: nothing else will send it. Only payments older
   * than `recoverAfterS` (longer than any send's timeout), so a send still on its way is not raced.
   */
  async recoverPayments(limit = 100): Promise<number> {
    const rows = await this.fleet.db.query<
      Omit<PaymentRow, 'budget_ids'> & { budget_ids: { budgetId: string; account: string }[] }
    >(
      `SELECT payment_hash, wallet_id, bolt11, amount_msat, max_fee_msat, budget_ids, created_at_s FROM wf_payments
       WHERE state = 'sending' AND created_at_s <= $1 ORDER BY created_at_s LIMIT $2`,
      [
        this.fleet.nowS() - (this.options.recoverAfterS ?? DEFAULT_RECOVER_AFTER_S),
        Math.min(Math.max(limit, 1), 1000),
      ],
    );
    let resolved = 0;
    for (const r of rows.rows) {
      if (this.inFlight.has(r.payment_hash)) continue;
      let status = await this.fleet.backend
        .lookupPayment(r.payment_hash)
        .catch((): PaymentStatus => ({ state: 'pending', paymentHash: r.payment_hash }));
      if (status.state === 'unknown')
        status = { state: 'failed', paymentHash: r.payment_hash, code: 'BACKEND_ERROR' };
      const row: PaymentRow = {
        ...r,
        amount_msat: Number(r.amount_msat),
        max_fee_msat: Number(r.max_fee_msat),
        budget_ids: r.budget_ids.map((b) => b.budgetId),
      };
      const outcome = await this.apply(
        row,
        r.budget_ids.map((b) => b.account),
        status,
      );
      if (outcome.kind !== 'pending') resolved += 1;
    }
    return resolved;
  }
}

/** A serialization failure or deadlock rolled the whole transaction back: running it again is safe. */
async function retryOnConflict<T>(fn: () => Promise<T>, attempts = 3): Promise<T> {
  for (let attempt = 1; ; attempt++) {
    try {
      return await fn();
    } catch (error) {
      const code = (error as { code?: string }).code;
      if (attempt >= attempts || (code !== '40P01' && code !== '40001')) throw error;
    }
  }
}

function done(outcome: PayOutcome): Start {
  return { kind: 'done', outcome };
}

/** The transfer that failed a linked chain (not the ones that failed because of it). */
function firstFailure(results: TransferResult[]): TransferResult | undefined {
  return (
    results.find((r) => r.code !== 'OK' && r.code !== 'LINKED_EVENT_FAILED') ??
    results.find((r) => r.code !== 'OK')
  );
}
