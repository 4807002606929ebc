// The rules that decide a disputed charge (docs/disputes.md). Pure: no I/O, no clock. The evidence
// is signed envelopes only, never a party's word: the node-signed metering record the charge was
// made on (the receipt the claimant sends must be that very envelope), and optionally the
// router-signed native-API response for the same request. The first rule that matches decides;
// rules that refund more come first. A refund never exceeds what is left of the charge.
import {
  costMsat,
  type Envelope,
  type InferenceResponse,
  KIND,
  type MeteringRecord,
  outputSha256,
  verifyEnvelope,
} from '@fed-ai/protocol';

export type DisputeVerdictName = 'refund_full' | 'refund_partial' | 'charge_stands' | 'rejected';

/** Every rule code a verdict can carry, in the order the rules run. */
export const DISPUTE_RULES = [
  'UNSUPPORTED_CHARGE',
  'BAD_EVIDENCE',
  'EVIDENCE_MISMATCH',
  'DISPUTE_WINDOW_CLOSED',
  'OUTPUT_MISMATCH',
  'DUPLICATE_CHARGE',
  'PARTIAL_DELIVERY',
  'OVERCHARGED',
  'ALREADY_REFUNDED',
  'NO_FAULT',
] as const;
export type DisputeRule = (typeof DISPUTE_RULES)[number];

/** The charge as the books recorded it (the `charges` row) and what other cases already did. */
export interface DisputedCharge {
  op_id: string;
  account: string;
  node: string;
  amount_msat: number;
  node_msat: number;
  router_msat: number;
  /** The signed envelope the charge was made on, as stored. */
  metering: unknown;
  created_at_s: number;
  /** Refunded on this charge by other, decided cases (one charge is refunded at most once in total). */
  refunded_msat: number;
  /** Other charges made on the same signed record (id), with when they were made. */
  siblings: readonly { op_id: string; created_at_s: number }[];
}

export interface DisputeEvidence {
  /** The receipt the claimant holds: must be the charge's own metering envelope. */
  receipt: unknown;
  /** The router-signed inference response (native API) for the same request, if the claimant has it. */
  response?: unknown;
}

export interface DisputeDecision {
  verdict: DisputeVerdictName;
  refund_msat: number;
  rule: DisputeRule;
  detail: string;
}

export interface DecideOptions {
  /** The time the case was opened (not the time of deciding: a decision resumed later is the same). */
  nowS: number;
  windowS: number;
}

const decision = (
  verdict: DisputeVerdictName,
  refundMsat: number,
  rule: DisputeRule,
  detail: string,
): DisputeDecision => ({ verdict, refund_msat: refundMsat, rule, detail: detail.slice(0, 512) });

const rejected = (rule: DisputeRule, detail: string) => decision('rejected', 0, rule, detail);

/** An envelope as evidence: its own created_at is the reference time (it is read after the fact). */
async function verifiedAsEvidence<K extends typeof KIND.meteringRecord | typeof KIND.inferenceResponse>(
  value: unknown,
  kind: K,
) {
  const createdAtS = (value as { created_at?: unknown } | null)?.created_at;
  return verifyEnvelope(value, {
    me: null,
    kinds: [kind],
    ...(typeof createdAtS === 'number' ? { nowS: createdAtS } : {}),
  });
}

function parseJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}

/** A refund of `refundMsat` of a charge, split like the charge was: never more than either part. */
export function refundSplit(
  refundMsat: number,
  charge: Pick<DisputedCharge, 'amount_msat' | 'router_msat'>,
): { nodeMsat: number; routerMsat: number } {
  if (!Number.isSafeInteger(refundMsat) || refundMsat < 0 || refundMsat > charge.amount_msat)
    throw new RangeError(`refund ${refundMsat} outside 0..${charge.amount_msat}`);
  if (charge.amount_msat === 0) return { nodeMsat: 0, routerMsat: 0 };
  // Floor on the router's part: the node's part is the rest, so a full refund is the exact split.
  const routerMsat = Number((BigInt(refundMsat) * BigInt(charge.router_msat)) / BigInt(charge.amount_msat));
  return { nodeMsat: refundMsat - routerMsat, routerMsat };
}

/**
 * The verdict on a disputed charge. Deterministic: the same charge and evidence give the same
 * decision. Never throws on hostile evidence (it is rejected with a rule code).
 */
export async function decideDispute(
  charge: DisputedCharge,
  evidence: DisputeEvidence,
  options: DecideOptions,
): Promise<DisputeDecision> {
  const stored = charge.metering as Partial<Envelope> | null;
  if (typeof stored !== 'object' || stored === null || stored.kind !== KIND.meteringRecord)
    return rejected('UNSUPPORTED_CHARGE', 'the charge does not rest on a node-signed metering record');
  const own = await verifiedAsEvidence(stored, KIND.meteringRecord);
  if (!own.ok) return rejected('UNSUPPORTED_CHARGE', `the stored record does not verify (${own.code})`);
  const record: MeteringRecord = own.payload;

  // The receipt: the claimant must hold the very envelope the charge was made on.
  const receipt = await verifiedAsEvidence(evidence.receipt, KIND.meteringRecord);
  if (!receipt.ok) return rejected('BAD_EVIDENCE', `receipt: ${receipt.code}`);
  if (receipt.envelope.id !== own.envelope.id)
    return rejected('EVIDENCE_MISMATCH', 'the receipt is not the record this charge was made on');
  if (own.envelope.pubkey !== charge.node || record.request_id !== charge.op_id)
    return rejected('EVIDENCE_MISMATCH', 'the record names another node or request');

  let response: InferenceResponse | undefined;
  if (evidence.response !== undefined) {
    const verified = await verifiedAsEvidence(evidence.response, KIND.inferenceResponse);
    if (!verified.ok) return rejected('BAD_EVIDENCE', `response: ${verified.code}`);
    if (verified.envelope.pubkey !== record.router)
      return rejected('EVIDENCE_MISMATCH', 'the response is not signed by the router the record names');
    const answer = verified.payload;
    const answerReceipt = parseJson(answer.receipt) as { id?: unknown } | undefined;
    if (
      answer.request_id !== record.request_id ||
      answer.node !== charge.node ||
      answerReceipt?.id !== own.envelope.id
    )
      return rejected('EVIDENCE_MISMATCH', 'the response is for another request or carries another receipt');
    response = answer;
  }

  if (options.nowS - charge.created_at_s > options.windowS)
    return rejected('DISPUTE_WINDOW_CLOSED', `disputes open within ${options.windowS} s of the charge`);

  const left = Math.max(0, charge.amount_msat - charge.refunded_msat);
  const refund = (refundMsat: number, rule: DisputeRule, detail: string): DisputeDecision => {
    const capped = Math.min(Math.max(0, refundMsat), left);
    if (capped === 0)
      return refundMsat > 0
        ? decision('charge_stands', 0, 'ALREADY_REFUNDED', `${rule}: this charge was already refunded`)
        : decision('charge_stands', 0, 'NO_FAULT', `${rule}: nothing to refund`);
    return decision(capped === charge.amount_msat ? 'refund_full' : 'refund_partial', capped, rule, detail);
  };

  if (response && outputSha256(response.text) !== record.output_sha256)
    return refund(charge.amount_msat, 'OUTPUT_MISMATCH', 'what was delivered is not what was metered');

  const first = [...charge.siblings, { op_id: charge.op_id, created_at_s: charge.created_at_s }].sort(
    (a, b) => a.created_at_s - b.created_at_s || (a.op_id < b.op_id ? -1 : a.op_id > b.op_id ? 1 : 0),
  )[0];
  if (first && first.op_id !== charge.op_id)
    return refund(
      charge.amount_msat,
      'DUPLICATE_CHARGE',
      `the same record was charged first as ${first.op_id}`,
    );

  if (response && response.usage.completion_tokens < record.tokens_out) {
    const delivered = costMsat(record.tokens_in, response.usage.completion_tokens, record.price);
    return refund(
      charge.amount_msat - delivered,
      'PARTIAL_DELIVERY',
      `${response.usage.completion_tokens} of ${record.tokens_out} output tokens were delivered`,
    );
  }

  const due = costMsat(record.tokens_in, record.tokens_out, record.price);
  if (charge.amount_msat > due)
    return refund(
      charge.amount_msat - due,
      'OVERCHARGED',
      `charged ${charge.amount_msat} msat, the record costs ${due}`,
    );

  return decision('charge_stands', 0, 'NO_FAULT', 'the evidence shows no fault');
}
