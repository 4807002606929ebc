// The chunked NIP-44 payload of an offloaded job: round trips at every slice border (multi-byte
// characters cut by a slice included), and refusals of tampered, reordered, misaddressed and
// malformed chunk lists.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  base64Encode,
  conversationKey,
  decryptOffloadPayload,
  encryptOffloadPayload,
  generateSecretKey,
  nip44Encrypt,
  OFFLOAD_MAX_CHUNKS,
  OFFLOAD_SLICE_BYTES,
  publicKeyOf,
  utf8Encode,
} from '../src/index';

const sender = generateSecretKey();
const receiver = generateSecretKey();
const senderPub = publicKeyOf(sender);
const receiverPub = publicKeyOf(receiver);

const roundTrip = (json: string) =>
  decryptOffloadPayload(encryptOffloadPayload(json, sender, receiverPub), receiver, senderPub);

test('offload: the slice fits one NIP-44 plaintext once base64-encoded', () => {
  assert.equal(OFFLOAD_SLICE_BYTES, 49_149);
  assert.ok((OFFLOAD_SLICE_BYTES / 3) * 4 <= 65_535);
});

test('offload: round trips of 1 byte, exactly one slice, one slice + 1', () => {
  for (const [size, chunks] of [
    [1, 1],
    [OFFLOAD_SLICE_BYTES - 1, 1],
    [OFFLOAD_SLICE_BYTES, 1],
    [OFFLOAD_SLICE_BYTES + 1, 2],
    [2 * OFFLOAD_SLICE_BYTES, 2],
  ] as const) {
    const json = 'x'.repeat(size);
    const encrypted = encryptOffloadPayload(json, sender, receiverPub);
    assert.equal(encrypted.length, chunks, `${size} bytes`);
    assert.equal(decryptOffloadPayload(encrypted, receiver, senderPub), json);
  }
  // The empty string is no request (a request's JSON is never empty): NIP-44 refuses it.
  assert.throws(() => encryptOffloadPayload('', sender, receiverPub), RangeError);
});

test('offload: a 200 KB prompt of multi-byte characters survives slice borders inside a character', () => {
  // Emoji (4 bytes), CJK (3 bytes), accented (2 bytes), ASCII: the borders land inside characters.
  const unit = '😀漢字é a🎉中文';
  const prompt = unit.repeat(Math.ceil(200_000 / utf8Encode(unit).length));
  const json = JSON.stringify({ model: 'm', messages: [{ role: 'user', content: prompt }], max_tokens: 5 });
  const bytes = utf8Encode(json).length;
  assert.ok(bytes >= 200_000);
  const chunks = encryptOffloadPayload(json, sender, receiverPub);
  assert.equal(chunks.length, Math.ceil(bytes / OFFLOAD_SLICE_BYTES));
  // At least one border falls inside a multi-byte character (the byte there is a continuation byte).
  const raw = utf8Encode(json);
  const inside = [1, 2, 3, 4]
    .map((i) => i * OFFLOAD_SLICE_BYTES)
    .filter((at) => at < raw.length)
    .some((at) => (raw[at]! & 0xc0) === 0x80);
  assert.ok(inside, 'a slice border cuts a character');
  assert.equal(decryptOffloadPayload(chunks, receiver, senderPub), json);
});

test('offload: a tampered chunk throws', () => {
  const chunks = encryptOffloadPayload('y'.repeat(OFFLOAD_SLICE_BYTES + 10), sender, receiverPub);
  const first = chunks[0]!;
  // Flip one character in the middle of the base64 ciphertext (MAC covers it).
  const at = Math.floor(first.length / 2);
  const flipped = first[at] === 'A' ? 'B' : 'A';
  const tampered = [first.slice(0, at) + flipped + first.slice(at + 1), ...chunks.slice(1)];
  assert.throws(() => decryptOffloadPayload(tampered, receiver, senderPub));
  assert.throws(() => decryptOffloadPayload([chunks[0]!, 'not a nip44 payload'], receiver, senderPub));
});

test('offload: swapped chunk order never decodes to the original', () => {
  const json = JSON.stringify({ a: 'é'.repeat(OFFLOAD_SLICE_BYTES), b: '漢'.repeat(10) });
  const chunks = encryptOffloadPayload(json, sender, receiverPub);
  assert.ok(chunks.length >= 2);
  const swapped = [chunks[1]!, chunks[0]!, ...chunks.slice(2)];
  let decoded: string | undefined;
  try {
    decoded = decryptOffloadPayload(swapped, receiver, senderPub);
  } catch {
    decoded = undefined;
  }
  assert.notEqual(decoded, json);
});

test('offload: slices that are not valid UTF-8 throw instead of decoding to replacement characters', () => {
  const key = conversationKey(sender, receiverPub);
  const badUtf8 = [nip44Encrypt(base64Encode(new Uint8Array([0x7b, 0xff, 0xfe, 0x7d])), key)];
  assert.throws(() => decryptOffloadPayload(badUtf8, receiver, senderPub));
  // A character cut in half and its halves swapped is not valid UTF-8 either.
  const cut = utf8Encode('😀');
  const halves = [cut.subarray(2), cut.subarray(0, 2)].map((s) => nip44Encrypt(base64Encode(s), key));
  assert.throws(() => decryptOffloadPayload(halves, receiver, senderPub));
});

test('offload: the wrong key throws (receiver, sender, or a third party)', () => {
  const chunks = encryptOffloadPayload('{"secret":true}', sender, receiverPub);
  const stranger = generateSecretKey();
  assert.throws(() => decryptOffloadPayload(chunks, stranger, senderPub));
  assert.throws(() => decryptOffloadPayload(chunks, receiver, publicKeyOf(stranger)));
  // Chunks encrypted to another key do not decrypt at the intended receiver.
  const toStranger = encryptOffloadPayload('{"secret":true}', sender, publicKeyOf(stranger));
  assert.throws(() => decryptOffloadPayload(toStranger, receiver, senderPub));
});

test('offload: zero chunks, too many chunks, and a payload over the chunk limit throw', () => {
  assert.throws(() => decryptOffloadPayload([], receiver, senderPub), RangeError);
  const one = encryptOffloadPayload('z', sender, receiverPub)[0]!;
  const tooMany = Array.from({ length: OFFLOAD_MAX_CHUNKS + 1 }, () => one);
  assert.throws(() => decryptOffloadPayload(tooMany, receiver, senderPub), RangeError);
  // The most chunks allowed do decrypt (here 64 copies of one slice).
  const max = Array.from({ length: OFFLOAD_MAX_CHUNKS }, () => one);
  assert.equal(decryptOffloadPayload(max, receiver, senderPub), 'z'.repeat(OFFLOAD_MAX_CHUNKS));
  assert.throws(
    () =>
      encryptOffloadPayload('w'.repeat(OFFLOAD_MAX_CHUNKS * OFFLOAD_SLICE_BYTES + 1), sender, receiverPub),
    RangeError,
  );
});

test('offload: any string round-trips (property)', () => {
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 300 }), (text) => {
      assert.equal(roundTrip(text), text);
    }),
    { numRuns: 60 },
  );
  fc.assert(
    // Every code point (no lone surrogates: they have no UTF-8 form).
    fc.property(fc.string({ unit: 'binary', minLength: 1, maxLength: 200 }), (text) => {
      assert.equal(roundTrip(text), text);
    }),
    { numRuns: 60 },
  );
});
