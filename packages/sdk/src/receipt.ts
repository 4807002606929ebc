// Offline receipt verification: a receipt is the node-signed metering record (kind 28117). Its
// signature is checked first (verifyEnvelope, as of its own signing time: a receipt stays valid
// evidence after its freshness window), then every field through the protocol's one checker,
// `checkMeteringRecord`, the same the router and settlement use; a refusal carries its code.
import {
  type ChatMessage,
  checkMeteringRecord,
  type DispatchId,
  dispatchId,
  type Envelope,
  KIND,
  type MeteringExpectations,
  type MeteringProblem,
  type MeteringRecord,
  type NodeId,
  nodeId,
  type Price,
  type ReasonCode,
  verifyEnvelope,
} from '@fed-ai/protocol';

export interface ReceiptCheck {
  /** The node you expect signed it (optional). */
  node?: string;
  /** The router it was addressed to (optional): the audience and the record's `router`. */
  router?: string;
  /** The router's dispatch id the record must name (`request_id`, optional). */
  requestId?: string;
  /** The model you asked for (optional). */
  model?: string;
  /** The price you agreed to (optional; from a quote). */
  price?: Price;
  /** The full output text you received: its hash must match. */
  text?: string;
  /** The messages you sent: their hash must match. */
  messages?: ChatMessage[];
}

export type ReceiptVerdict =
  | { ok: true; record: MeteringRecord; node: NodeId; dispatchId: DispatchId }
  /** `reason` is an envelope code (BAD_JSON, BAD_ID, BAD_SIGNATURE, ...) or the first METERING_* problem. */
  | { ok: false; reason: ReasonCode | MeteringProblem; problems?: MeteringProblem[] };

export async function verifyReceipt(
  receipt: Envelope | string,
  check: ReceiptCheck = {},
): Promise<ReceiptVerdict> {
  let event: unknown;
  try {
    event = typeof receipt === 'string' ? JSON.parse(receipt) : receipt;
  } catch {
    return { ok: false, reason: 'BAD_JSON' };
  }
  const signedAt = (event as { created_at?: unknown } | null)?.created_at;
  const verified = await verifyEnvelope(event, {
    me: check.router ?? null,
    kinds: [KIND.meteringRecord],
    nowS: typeof signedAt === 'number' ? signedAt : 0,
  });
  if (!verified.ok) return { ok: false, reason: verified.code };
  const record = verified.payload;
  const expect: MeteringExpectations = {
    ...(check.node !== undefined ? { signer: check.node } : {}),
    ...(check.requestId !== undefined ? { requestId: check.requestId } : {}),
    ...(check.router !== undefined ? { router: check.router } : {}),
    ...(check.model !== undefined ? { model: check.model } : {}),
    ...(check.messages !== undefined ? { messages: check.messages } : {}),
    ...(check.text !== undefined ? { outputText: check.text } : {}),
    ...(check.price !== undefined ? { price: check.price } : {}),
  };
  const checked = checkMeteringRecord(record, verified.envelope.pubkey, expect);
  if (!checked.ok) return { ok: false, reason: checked.problems[0]!, problems: checked.problems };
  return {
    ok: true,
    record,
    node: nodeId(verified.envelope.pubkey),
    dispatchId: dispatchId(record.request_id),
  };
}
