// NIP-44 v2 encryption (offload payloads, wallet connect). Delegates to nostr-tools' audited
// implementation; this module only fixes the names we use and bounds the input size.
// The subpath, not the package index: the index loads every NIP's code (AES tables built at import).
import * as nip44 from 'nostr-tools/nip44';
import { utf8ByteLength } from './encoding';

export const NIP44_MAX_PAYLOAD_CHARS = 8_000_000;

export function conversationKey(secretKey: Uint8Array, peerPublicKeyHex: string): Uint8Array {
  return nip44.v2.utils.getConversationKey(secretKey, peerPublicKeyHex);
}

/** NIP-44 v2 plaintexts are 1..65535 bytes of UTF-8. */
export const NIP44_MAX_PLAINTEXT_BYTES = 65_535;

export function nip44Encrypt(plaintext: string, key: Uint8Array, nonce?: Uint8Array): string {
  const length = utf8ByteLength(plaintext);
  if (length < 1 || length > NIP44_MAX_PLAINTEXT_BYTES) {
    throw new RangeError(`NIP-44 plaintext must be 1..${NIP44_MAX_PLAINTEXT_BYTES} bytes, got ${length}`);
  }
  return nip44.v2.encrypt(plaintext, key, nonce);
}

export function nip44Decrypt(payload: string, key: Uint8Array): string {
  if (payload.length > NIP44_MAX_PAYLOAD_CHARS) throw new Error('NIP-44 payload too large');
  return nip44.v2.decrypt(payload, key);
}

export const nip44CalcPaddedLen = (length: number): number => nip44.v2.utils.calcPaddedLen(length);
