// Disputes of charges (docs/disputes.md): storage, state and money around the pure rules in
// dispute-rules.ts. A case is one per charge and claimant (its id derives from both), moves
// opened -> evidence -> decided -> closed, and every transition writes a `dispute_events` row in
// the same transaction. Deciding is ONE transaction: lock the case and the charge, decide, the
// refund as ONE linked ledger batch with ids from the case (`dsp:<case>:node`, `dsp:<case>:fee`),
// the signed verdict, then the audit rows (last, as everywhere in the books). Deciding again
// answers the stored verdict and moves nothing.
import type { Db, Queryable } from '@fed-ai/kit';
import type { Ledger, TransferInput } from '@fed-ai/ledger';
import {
  createEnvelope,
  type DisputeVerdict,
  type Envelope,
  FedAiError,
  KIND,
  sha256Hex,
} from '@fed-ai/protocol';
import { ACCOUNTS } from './books';
import {
  type DisputedCharge,
  type DisputeRule,
  type DisputeVerdictName,
  decideDispute,
  refundSplit,
} from './dispute-rules';

type DisputeState = 'opened' | 'evidence' | 'decided' | 'closed';
type DisputeRole = 'payer' | 'node';

export interface DisputesOptions {
  /** How long after a charge it may be disputed (DISPUTE_WINDOW_S). */
  windowS: number;
  /** Cases of one party not yet closed. */
  maxOpenPerParty?: number;
  nowS?: () => number;
}

export const DISPUTE_LIMITS = {
  /** Most bytes of evidence (receipt + response) one case stores. */
  maxEvidenceBytes: 256 * 1024,
  maxOpenPerParty: 8,
  /** Most other charges on the same signed record looked at (duplicates). */
  maxSiblings: 16,
} as const;

/** Ledger transfer ids of a case's refund (deterministic: a retry can never move money twice). */
export const DISPUTE_IDS = {
  node: (caseId: string) => `dsp:${caseId}:node`,
  fee: (caseId: string) => `dsp:${caseId}:fee`,
} as const;

/** One case per charge and claiming party. */
function disputeCaseId(chargeOpId: string, role: DisputeRole, party: string): string {
  return `dsp_${sha256Hex(`${chargeOpId}\n${role}\n${party}`).slice(0, 32)}`;
}

interface DisputeEvent {
  seq: number;
  from: DisputeState | null;
  to: DisputeState;
  at: number;
  actor: string;
}

/** A case as the API answers it (the evidence stays here: it may hold the delivered text). */
export interface DisputeCase {
  case_id: string;
  charge_op_id: string;
  role: DisputeRole;
  party: string;
  claimant: string;
  node: string;
  account: string;
  state: DisputeState;
  verdict: DisputeVerdictName | null;
  rule: DisputeRule | null;
  detail: string | null;
  refund_msat: number;
  node_refund_msat: number;
  router_refund_msat: number;
  /** Settlement's signed verdict (kind 28127), once decided. */
  verdict_envelope: Envelope | null;
  opened_at: number;
  decided_at: number | null;
  closed_at: number | null;
  events: DisputeEvent[];
}

interface CaseRow {
  case_id: string;
  charge_op_id: string;
  role: DisputeRole;
  party: string;
  claimant: string;
  state: DisputeState;
  evidence: { receipt: string; response?: string };
  verdict: DisputeVerdictName | null;
  rule: DisputeRule | null;
  detail: string | null;
  refund_msat: number;
  node_refund_msat: number;
  router_refund_msat: number;
  verdict_envelope: Envelope | null;
  opened_at_s: number;
  decided_at_s: number | null;
  closed_at_s: number | null;
}

interface ChargeRow {
  op_id: string;
  account: string;
  node: string;
  amount_msat: number;
  node_msat: number;
  router_msat: number;
  metering: Envelope;
  created_at_s: number;
  payout_id: string | null;
}

export interface OpenDispute {
  chargeOpId: string;
  role: DisputeRole;
  /** The payer id (role payer) or the node's key (role node). */
  party: string;
  /** The key that signed the request: the node, or the router acting for its client. */
  claimant: string;
  /** Evidence as the JSON text the claimant sent. */
  receipt: string;
  response?: string | undefined;
}

// `payout_id` through to_jsonb: the column belongs to payouts (migration 4).
const CHARGE_SELECT = `SELECT op_id, account, node, amount_msat, node_msat, router_msat, metering,
  floor(extract(epoch FROM created_at))::bigint AS created_at_s, to_jsonb(c) ->> 'payout_id' AS payout_id
  FROM charges c`;

export class Disputes {
  private readonly nowS: () => number;

  constructor(
    private readonly db: Db,
    private readonly ledger: Ledger,
    private readonly secretKey: Uint8Array,
    private readonly options: DisputesOptions,
  ) {
    this.nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
  }

  /** The node and account a charge names (who may dispute it), or null. */
  async chargeParties(
    opId: string,
  ): Promise<{ node: string; account: string; router: string | null } | null> {
    const rows = await this.db.query<{ node: string; account: string; metering: Envelope }>(
      'SELECT node, account, metering FROM charges WHERE op_id = $1',
      [opId],
    );
    const row = rows.rows[0];
    if (!row) return null;
    return { node: row.node, account: row.account, router: recordRouter(row.metering) };
  }

  /**
   * Opens a case with its evidence (opened -> evidence) and decides it. Opening the same case again
   * answers it as it stands (and finishes a decision a crash interrupted).
   */
  async open(input: OpenDispute): Promise<DisputeCase> {
    const evidence = { receipt: input.receipt, ...(input.response ? { response: input.response } : {}) };
    const bytes = new TextEncoder().encode(JSON.stringify(evidence)).length;
    if (bytes > DISPUTE_LIMITS.maxEvidenceBytes)
      throw new FedAiError('BODY_TOO_LARGE', `evidence is over ${DISPUTE_LIMITS.maxEvidenceBytes} bytes`);
    const caseId = disputeCaseId(input.chargeOpId, input.role, input.party);
    const now = this.nowS();
    await this.db.transaction(async (tx) => {
      // The charge row first: a payout marking it paid and this case serialise on it.
      const charge = (
        await tx.query<ChargeRow>(`${CHARGE_SELECT} WHERE op_id = $1 FOR UPDATE`, [input.chargeOpId])
      ).rows[0];
      if (!charge) throw new FedAiError('NOT_FOUND', 'No charge with that request id.');
      if (input.role === 'payer' && charge.account !== ACCOUNTS.tab(input.party))
        throw new FedAiError('FORBIDDEN', 'This charge is not on that tab.');
      if (input.role === 'node' && charge.node !== input.party)
        throw new FedAiError('FORBIDDEN', 'This charge is not of that node.');
      const existing = await tx.query('SELECT 1 FROM disputes WHERE case_id = $1', [caseId]);
      if (existing.rows.length > 0) return;
      if (charge.payout_id !== null)
        throw new FedAiError('DISPUTE_WINDOW_CLOSED', 'The node was already paid for this charge.');
      if (now - charge.created_at_s > this.options.windowS)
        throw new FedAiError(
          'DISPUTE_WINDOW_CLOSED',
          `Charges can be disputed for ${this.options.windowS} s; this one is older.`,
        );
      const open = await tx.query<{ n: number | string }>(
        `SELECT count(*) AS n FROM disputes WHERE role = $1 AND party = $2 AND state <> 'closed'`,
        [input.role, input.party],
      );
      const max = this.options.maxOpenPerParty ?? DISPUTE_LIMITS.maxOpenPerParty;
      if (Number(open.rows[0]?.n ?? 0) >= max)
        throw new FedAiError('DISPUTE_LIMIT_REACHED', `At most ${max} cases of one party may be open.`);
      await tx.query(
        `INSERT INTO disputes (case_id, charge_op_id, role, party, claimant, state, evidence, opened_at_s)
         VALUES ($1, $2, $3, $4, $5, 'opened', $6, $7)`,
        [caseId, input.chargeOpId, input.role, input.party, input.claimant, JSON.stringify(evidence), now],
      );
      await tx.query(`UPDATE disputes SET state = 'evidence' WHERE case_id = $1`, [caseId]);
      await appendEvents(tx, caseId, [
        { from: null, to: 'opened', at: now, actor: input.claimant },
        { from: 'opened', to: 'evidence', at: now, actor: input.claimant },
      ]);
    });
    return this.decide(caseId);
  }

  /**
   * Decides a case that holds its evidence: the verdict, its refund and the state in one
   * transaction. A decided or closed case is answered as stored: nothing moves twice.
   */
  async decide(caseId: string): Promise<DisputeCase> {
    await this.db.transaction(async (tx) => {
      const row = (await tx.query<CaseRow>('SELECT * FROM disputes WHERE case_id = $1 FOR UPDATE', [caseId]))
        .rows[0];
      if (!row) throw new FedAiError('NOT_FOUND', 'No such dispute.');
      if (row.state !== 'evidence') return;
      const charge = (
        await tx.query<ChargeRow>(`${CHARGE_SELECT} WHERE op_id = $1 FOR UPDATE`, [row.charge_op_id])
      ).rows[0];
      if (!charge) throw new FedAiError('NOT_FOUND', 'The disputed charge is gone.');
      const refunded = await tx.query<{ n: number | string }>(
        `SELECT COALESCE(sum(refund_msat), 0) AS n FROM disputes
         WHERE charge_op_id = $1 AND case_id <> $2 AND state IN ('decided', 'closed')`,
        [row.charge_op_id, caseId],
      );
      const meteringId = typeof charge.metering?.id === 'string' ? charge.metering.id : '';
      const siblings = await tx.query<{ op_id: string; created_at_s: number }>(
        `SELECT op_id, floor(extract(epoch FROM created_at))::bigint AS created_at_s FROM charges
         WHERE metering ->> 'id' = $1 AND op_id <> $2 ORDER BY created_at LIMIT $3`,
        [meteringId, charge.op_id, DISPUTE_LIMITS.maxSiblings],
      );
      const facts: DisputedCharge = {
        op_id: charge.op_id,
        account: charge.account,
        node: charge.node,
        amount_msat: charge.amount_msat,
        node_msat: charge.node_msat,
        router_msat: charge.router_msat,
        metering: charge.metering,
        created_at_s: Number(charge.created_at_s),
        refunded_msat: Number(refunded.rows[0]?.n ?? 0),
        siblings: siblings.rows.map((s) => ({ op_id: s.op_id, created_at_s: Number(s.created_at_s) })),
      };
      const evidence = row.evidence;
      const decided = await decideDispute(
        facts,
        {
          receipt: parseOrText(evidence.receipt),
          ...(evidence.response !== undefined ? { response: parseOrText(evidence.response) } : {}),
        },
        { nowS: Number(row.opened_at_s), windowS: this.options.windowS },
      );
      let { nodeMsat, routerMsat } = refundSplit(decided.refund_msat, facts);
      let refused = false;
      let detail = decided.detail;
      if (decided.refund_msat > 0) {
        const refusal = await this.refundIn(tx, caseId, facts, nodeMsat, routerMsat);
        if (refusal) {
          refused = true;
          nodeMsat = 0;
          routerMsat = 0;
          detail = `${decided.detail}; refund refused: ${refusal}`.slice(0, 512);
        }
      }
      const now = this.nowS();
      const payload: DisputeVerdict = {
        case_id: caseId,
        charge_op_id: row.charge_op_id,
        metering_id: /^[0-9a-f]{64}$/.test(meteringId) ? meteringId : '0'.repeat(64),
        role: row.role,
        claimant: row.claimant,
        account: charge.account,
        node: charge.node,
        charged_msat: charge.amount_msat,
        verdict: decided.verdict,
        rule: decided.rule,
        detail,
        refund_msat: nodeMsat + routerMsat,
        node_refund_msat: nodeMsat,
        router_refund_msat: routerMsat,
        refund_refused: refused,
        decided_at: now,
      };
      const signed = createEnvelope(
        KIND.disputeVerdict,
        payload,
        { audience: row.claimant, expiresInS: 0, refs: [row.charge_op_id], nowS: now },
        this.secretKey,
      );
      // Decided with the adjustment committed in this same transaction: closed at once.
      await tx.query(
        `UPDATE disputes SET state = 'closed', verdict = $2, rule = $3, detail = $4, refund_msat = $5,
         node_refund_msat = $6, router_refund_msat = $7, verdict_envelope = $8, decided_at_s = $9, closed_at_s = $9
         WHERE case_id = $1`,
        [
          caseId,
          decided.verdict,
          decided.rule,
          detail,
          nodeMsat + routerMsat,
          nodeMsat,
          routerMsat,
          JSON.stringify(signed),
          now,
        ],
      );
      await appendEvents(tx, caseId, [
        { from: 'evidence', to: 'decided', at: now, actor: 'settlement' },
        { from: 'decided', to: 'closed', at: now, actor: 'settlement' },
      ]);
    });
    const answer = await this.get(caseId);
    if (!answer) throw new FedAiError('NOT_FOUND', 'No such dispute.');
    return answer;
  }

  /**
   * The refund as one linked batch from the node's earnings and the router fees to the tab.
   * Returns why the books refused it (the node's earnings were paid out), or null once made.
   */
  private async refundIn(
    tx: Queryable,
    caseId: string,
    charge: DisputedCharge,
    nodeMsat: number,
    routerMsat: number,
  ): Promise<string | null> {
    // The earnings account exists: the capture made it (no call outside this transaction here).
    const batch: TransferInput[] = [];
    if (nodeMsat > 0)
      batch.push({
        id: DISPUTE_IDS.node(caseId),
        kind: 'single',
        debitAccountId: ACCOUNTS.earnings(charge.node),
        creditAccountId: charge.account,
        amountMsat: nodeMsat,
        userData: charge.op_id,
      });
    if (routerMsat > 0)
      batch.push({
        id: DISPUTE_IDS.fee(caseId),
        kind: 'single',
        debitAccountId: ACCOUNTS.routerFees,
        creditAccountId: charge.account,
        amountMsat: routerMsat,
        userData: charge.op_id,
      });
    for (let i = 0; i < batch.length - 1; i++) batch[i]!.linked = true;
    const results = await this.ledger.createTransfersIn(tx, batch);
    if (results.every((r) => r.code === 'OK' || r.code === 'EXISTS')) return null;
    const failed = results.find(
      (r) => r.code !== 'OK' && r.code !== 'EXISTS' && r.code !== 'LINKED_EVENT_FAILED',
    );
    if (failed?.code === 'EXCEEDS_CREDITS') return 'the earnings no longer cover it (paid out)';
    throw new FedAiError('LEDGER_REJECTED', `dispute refund: ${failed?.code ?? results[0]?.code}`);
  }

  async get(caseId: string): Promise<DisputeCase | null> {
    const row = (await this.db.query<CaseRow>('SELECT * FROM disputes WHERE case_id = $1', [caseId])).rows[0];
    if (!row) return null;
    const charge = (
      await this.db.query<{ node: string; account: string }>(
        'SELECT node, account FROM charges WHERE op_id = $1',
        [row.charge_op_id],
      )
    ).rows[0];
    const events = await this.db.query<{
      seq: number;
      from_state: DisputeState | null;
      to_state: DisputeState;
      at_s: number;
      actor: string;
    }>('SELECT seq, from_state, to_state, at_s, actor FROM dispute_events WHERE case_id = $1 ORDER BY seq', [
      caseId,
    ]);
    return {
      case_id: row.case_id,
      charge_op_id: row.charge_op_id,
      role: row.role,
      party: row.party,
      claimant: row.claimant,
      node: charge?.node ?? '',
      account: charge?.account ?? '',
      state: row.state,
      verdict: row.verdict,
      rule: row.rule,
      detail: row.detail,
      refund_msat: Number(row.refund_msat),
      node_refund_msat: Number(row.node_refund_msat),
      router_refund_msat: Number(row.router_refund_msat),
      verdict_envelope: row.verdict_envelope,
      opened_at: Number(row.opened_at_s),
      decided_at: row.decided_at_s === null ? null : Number(row.decided_at_s),
      closed_at: row.closed_at_s === null ? null : Number(row.closed_at_s),
      events: events.rows.map((e) => ({
        seq: e.seq,
        from: e.from_state,
        to: e.to_state,
        at: Number(e.at_s),
        actor: e.actor,
      })),
    };
  }
}

/** Audit rows of a case, numbered after the ones it has. */
async function appendEvents(
  tx: Queryable,
  caseId: string,
  events: { from: DisputeState | null; to: DisputeState; at: number; actor: string }[],
): Promise<void> {
  const last = await tx.query<{ n: number | null }>(
    'SELECT max(seq) AS n FROM dispute_events WHERE case_id = $1',
    [caseId],
  );
  let seq = Number(last.rows[0]?.n ?? 0);
  for (const event of events) {
    seq += 1;
    await tx.query(
      'INSERT INTO dispute_events (case_id, seq, from_state, to_state, at_s, actor) VALUES ($1, $2, $3, $4, $5, $6)',
      [caseId, seq, event.from, event.to, event.at, event.actor],
    );
  }
}

/** The router a stored metering record names (who may act for the payer), or null. */
function recordRouter(metering: Envelope | null): string | null {
  if (metering?.kind !== KIND.meteringRecord || typeof metering.content !== 'string') return null;
  const content = parseOrText(metering.content) as { router?: unknown } | null;
  return typeof content?.router === 'string' ? content.router : null;
}

function parseOrText(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}
