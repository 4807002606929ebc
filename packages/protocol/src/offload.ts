// The encrypted payload of an offloaded job (kind 28120). One NIP-44 v2 plaintext holds at most
// 65,535 bytes, and a prompt can be far larger (200 KB and more), so the request's UTF-8 JSON is cut
// into byte slices; each slice is base64-encoded (NIP-44 encrypts strings, and a byte slice can end
// inside a multi-byte character) and encrypted on its own with the conversation key. The chunk
// order is authenticated by the envelope's signature over the whole array.
import { base64Decode, base64Encode, utf8Encode } from './encoding';
import { conversationKey, NIP44_MAX_PLAINTEXT_BYTES, nip44Decrypt, nip44Encrypt } from './nip44';

/** Bytes per slice: its base64 (4/3 larger) stays within one NIP-44 plaintext. */
export const OFFLOAD_SLICE_BYTES = Math.floor((NIP44_MAX_PLAINTEXT_BYTES * 3) / 4 / 3) * 3;
export const OFFLOAD_MAX_CHUNKS = 64;
// Fatal: bad UTF-8 (reordered or forged slices) throws instead of decoding to U+FFFD (test/offload.test.ts).
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

export function encryptOffloadPayload(json: string, secretKey: Uint8Array, peerPubkey: string): string[] {
  const bytes = utf8Encode(json);
  const sliceCount = Math.max(1, Math.ceil(bytes.length / OFFLOAD_SLICE_BYTES));
  if (sliceCount > OFFLOAD_MAX_CHUNKS)
    throw new RangeError(`offload payload of ${bytes.length} bytes is over ${OFFLOAD_MAX_CHUNKS} chunks`);
  const key = conversationKey(secretKey, peerPubkey);
  const chunks: string[] = [];
  for (let i = 0; i < sliceCount; i++) {
    const slice = bytes.subarray(i * OFFLOAD_SLICE_BYTES, (i + 1) * OFFLOAD_SLICE_BYTES);
    chunks.push(nip44Encrypt(base64Encode(slice), key));
  }
  return chunks;
}

/** Throws on a chunk that does not decrypt (wrong key, tampered) or decodes to bad UTF-8. */
export function decryptOffloadPayload(
  chunks: readonly string[],
  secretKey: Uint8Array,
  senderPubkey: string,
): string {
  if (chunks.length === 0 || chunks.length > OFFLOAD_MAX_CHUNKS) throw new RangeError('bad chunk count');
  const key = conversationKey(secretKey, senderPubkey);
  const slices = chunks.map((c) => base64Decode(nip44Decrypt(c, key)));
  const total = slices.reduce((n, s) => n + s.length, 0);
  const bytes = new Uint8Array(total);
  let at = 0;
  for (const s of slices) {
    bytes.set(s, at);
    at += s.length;
  }
  return strictUtf8.decode(bytes);
}
