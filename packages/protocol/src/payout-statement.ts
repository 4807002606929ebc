// A node's check of a payout statement against its own metering log: every charge rests on a
// record this node signed, at that record's cost, split at the stated router fee, and the totals
// add up to what was paid. Pure: the caller verified the statement's signature and read the log.
import { hexToBytes } from '@noble/hashes/utils.js';
import { sha256Hex } from './crypto';
import { splitCharge } from './money';
import type { MeteringRecord, PayoutStatement } from './payloads';

export type StatementProblemCode =
  | 'WRONG_NODE'
  | 'UNKNOWN_RECORD'
  | 'RECORD_MISMATCH'
  | 'FEE_MISMATCH'
  | 'DUPLICATE_CHARGE'
  | 'TOTALS_MISMATCH'
  | 'BAD_PREIMAGE';

export interface StatementProblem {
  code: StatementProblemCode;
  detail: string;
}

/**
 * Problems with `statement` for node `node`, whose signed metering records are `records` (by
 * envelope id). An empty list: the statement is right.
 */
export function checkPayoutStatement(
  statement: PayoutStatement,
  node: string,
  records: ReadonlyMap<string, MeteringRecord>,
): StatementProblem[] {
  const problems: StatementProblem[] = [];
  if (statement.node !== node)
    problems.push({ code: 'WRONG_NODE', detail: `the statement is for node ${statement.node}` });
  const seen = new Set<string>();
  let grossMsat = 0;
  for (const charge of statement.charges) {
    grossMsat += charge.node_msat;
    if (seen.has(charge.metering_id) || seen.has(charge.op_id))
      problems.push({ code: 'DUPLICATE_CHARGE', detail: `${charge.op_id} is listed twice` });
    seen.add(charge.metering_id);
    seen.add(charge.op_id);
    const record = records.get(charge.metering_id);
    if (!record) {
      problems.push({
        code: 'UNKNOWN_RECORD',
        detail: `${charge.op_id}: metering record ${charge.metering_id} is not in this node's log`,
      });
      continue;
    }
    if (record.request_id !== charge.request_id || record.cost_msat !== charge.cost_msat)
      problems.push({
        code: 'RECORD_MISMATCH',
        detail: `${charge.op_id}: the record says ${record.request_id} at ${record.cost_msat} msat, the statement ${charge.request_id} at ${charge.cost_msat} msat`,
      });
    const { nodeMsat } = splitCharge(charge.cost_msat, statement.router_fee_bps);
    if (charge.node_msat !== nodeMsat)
      problems.push({
        code: 'FEE_MISMATCH',
        detail: `${charge.op_id}: ${charge.node_msat} msat to the node, ${nodeMsat} at ${statement.router_fee_bps} bps`,
      });
  }
  const totals: [string, number, number][] = [
    ['gross_msat', statement.gross_msat, grossMsat],
    ['hold_msat', statement.hold_msat, statement.gross_msat + statement.carried_in_msat],
    [
      'amount + fee + returned',
      statement.amount_msat + statement.fee_msat + statement.returned_msat,
      statement.hold_msat,
    ],
  ];
  for (const [name, stated, computed] of totals)
    if (stated !== computed)
      problems.push({ code: 'TOTALS_MISMATCH', detail: `${name} is ${stated}, expected ${computed}` });
  if (sha256Hex(hexToBytes(statement.preimage)) !== statement.payment_hash)
    problems.push({ code: 'BAD_PREIMAGE', detail: 'the preimage does not hash to the payment hash' });
  return problems;
}
