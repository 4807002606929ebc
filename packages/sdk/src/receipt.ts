// Offline receipt verification: a receipt is the node-signed metering record (kind 28117). It is
// checked as of its own signing time (a receipt stays valid evidence after its freshness window).
import {
  type ChatMessage,
  costMsat,
  type Envelope,
  KIND,
  type MeteringRecord,
  outputSha256,
  promptSha256,
  verifyEnvelope,
} from '@fed-ai/protocol';

export interface ReceiptCheck {
  /** The node you expect signed it (optional). */
  node?: string;
  /** The router it was addressed to (optional). */
  router?: string;
  /** The full output text you received: its hash must match. */
  text?: string;
  /** The messages you sent: their hash must match. */
  messages?: ChatMessage[];
}

export type ReceiptVerdict = { ok: true; record: MeteringRecord } | { ok: false; reason: string };

export async function verifyReceipt(
  receipt: Envelope | string,
  check: ReceiptCheck = {},
): Promise<ReceiptVerdict> {
  let event: Envelope;
  try {
    event = typeof receipt === 'string' ? (JSON.parse(receipt) as Envelope) : receipt;
  } catch {
    return { ok: false, reason: 'BAD_JSON' };
  }
  const signedAt = typeof event?.created_at === 'number' ? event.created_at : 0;
  const verified = await verifyEnvelope(event, {
    me: check.router ?? null,
    kinds: [KIND.meteringRecord],
    nowS: signedAt,
  });
  if (!verified.ok) return { ok: false, reason: verified.code };
  const record = verified.payload;
  if (check.node && verified.envelope.pubkey !== check.node) return { ok: false, reason: 'WRONG_SIGNER' };
  if (check.text !== undefined && outputSha256(check.text) !== record.output_sha256) {
    return { ok: false, reason: 'OUTPUT_HASH_MISMATCH' };
  }
  if (check.messages && promptSha256(check.messages) !== record.prompt_sha256) {
    return { ok: false, reason: 'PROMPT_HASH_MISMATCH' };
  }
  if (costMsat(record.tokens_in, record.tokens_out, record.price) !== record.cost_msat) {
    return { ok: false, reason: 'COST_MISMATCH' };
  }
  return { ok: true, record };
}
