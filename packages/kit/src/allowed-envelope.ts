// Envelopes from a closed set of signers (routers calling a node or the settlement service): the
// signer is checked before the id is written to the replay store, so a stranger's validly signed
// envelopes are refused without leaving rows behind (the store stays the allowed signers' own).
import {
  ENVELOPE_DEFAULTS,
  type PayloadKind,
  type ReasonCode,
  type ReplayStore,
  type VerifyOptions,
  type VerifyResult,
  verifyEnvelope,
} from '@fed-ai/protocol';

export interface AllowedEnvelopeOptions<K extends PayloadKind> extends Omit<VerifyOptions<K>, 'replayStore'> {
  replayStore: ReplayStore;
  /** Signers allowed to send this envelope. */
  allowed: ReadonlySet<string>;
  /** Reason code for a signer not in `allowed`. */
  notAllowed: ReasonCode;
  notAllowedMessage?: string;
}

/**
 * verifyEnvelope in the documented order (size ... signature, then replay), with the signer
 * check between the signature and the replay-store write.
 */
export async function verifyAllowedEnvelope<K extends PayloadKind>(
  raw: string | unknown,
  options: AllowedEnvelopeOptions<K>,
): Promise<VerifyResult<K>> {
  const { replayStore, allowed, notAllowed, notAllowedMessage, ...check } = options;
  const verified = await verifyEnvelope(raw, check);
  if (!verified.ok) return verified;
  if (!allowed.has(verified.envelope.pubkey))
    return { ok: false, code: notAllowed, detail: notAllowedMessage ?? 'signer not allowed here' };
  // Same expiry verifyEnvelope uses: after created_at + window the id is refused as STALE anyway.
  const windowS = check.windowS ?? ENVELOPE_DEFAULTS.windowS;
  const fresh = await replayStore.checkAndRecord(
    verified.envelope.id,
    verified.envelope.created_at + windowS + 1,
    verified.envelope.created_at,
  );
  if (!fresh) return { ok: false, code: 'REPLAYED', detail: `id ${verified.envelope.id} was seen before` };
  return verified;
}
