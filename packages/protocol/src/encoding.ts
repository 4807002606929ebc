// Text and base64 helpers that run the same in Node and in a browser (no Buffer). Decoding is as
// forgiving as Node's Buffer was: both alphabets, padding optional, other characters skipped, and
// the first `=` ends the data (identical for Latin-1 text, all an HTTP header holds; above it
// Buffer read a character's low byte, this skips the character). Encoding is standard (RFC 4648: base64 padded, base64url unpadded).

const textEncoder = new TextEncoder();
const textDecoder = new TextDecoder('utf-8');

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';
const ALPHABET_URL = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
/** Character code -> 6-bit value, -1 for characters outside both alphabets. */
const DECODE = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i += 1) {
  DECODE[ALPHABET.charCodeAt(i)] = i;
  DECODE[ALPHABET_URL.charCodeAt(i)] = i;
}

export function utf8Encode(text: string): Uint8Array {
  return textEncoder.encode(text);
}

/** Invalid sequences become U+FFFD, as with Buffer#toString('utf8'). */
export function utf8Decode(bytes: Uint8Array): string {
  return textDecoder.decode(bytes);
}

/**
 * Whether `text` takes more than `maxBytes` bytes in UTF-8. Counted only when it could: a UTF-16
 * code unit never takes more than 3 bytes, so most texts are answered by their length alone.
 */
export function utf8Exceeds(text: string, maxBytes: number): boolean {
  if (text.length > maxBytes) return true;
  if (text.length * 3 <= maxBytes) return false;
  if (maxBytes > MAX_SCRATCH_BYTES) return utf8ByteLength(text) > maxBytes;
  // The platform's encoder into a reused buffer 4 bytes past the limit: a 40 kB settlement batch
  // is answered in ~3 µs instead of ~100 counted in JS (issue 15). It stops only before a
  // character that does not fit (at most 4 bytes), so a text it could not finish wrote more than
  // the limit already.
  const room = Math.floor(maxBytes) + 4;
  if (scratch.length < room) scratch = new Uint8Array(room);
  return textEncoder.encodeInto(text, scratch.subarray(0, room)).written > maxBytes;
}

/** Limits above this are counted in JS rather than holding a larger scratch buffer. */
const MAX_SCRATCH_BYTES = 1 << 20;
let scratch = new Uint8Array(0);

/**
 * UTF-8 length of a string without encoding it (equals Buffer.byteLength(text, 'utf8')): a lone
 * surrogate counts 3 bytes, the length of the U+FFFD it is encoded as.
 */
export function utf8ByteLength(text: string): number {
  let bytes = 0;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code < 0x80) bytes += 1;
    else if (code < 0x800) bytes += 2;
    else if (code >= 0xd800 && code <= 0xdbff && i + 1 < text.length) {
      const next = text.charCodeAt(i + 1);
      if (next >= 0xdc00 && next <= 0xdfff) {
        bytes += 4;
        i += 1;
      } else bytes += 3;
    } else bytes += 3;
  }
  return bytes;
}

function encode(bytes: Uint8Array, alphabet: string, pad: boolean): string {
  let out = '';
  let i = 0;
  for (; i + 2 < bytes.length; i += 3) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8) | bytes[i + 2]!;
    out += alphabet[n >> 18]! + alphabet[(n >> 12) & 63]! + alphabet[(n >> 6) & 63]! + alphabet[n & 63]!;
  }
  const rest = bytes.length - i;
  if (rest === 1) {
    const n = bytes[i]! << 16;
    out += alphabet[n >> 18]! + alphabet[(n >> 12) & 63]! + (pad ? '==' : '');
  } else if (rest === 2) {
    const n = (bytes[i]! << 16) | (bytes[i + 1]! << 8);
    out += alphabet[n >> 18]! + alphabet[(n >> 12) & 63]! + alphabet[(n >> 6) & 63]! + (pad ? '=' : '');
  }
  return out;
}

export function base64Encode(bytes: Uint8Array): string {
  return encode(bytes, ALPHABET, true);
}

export function base64UrlEncode(bytes: Uint8Array): string {
  return encode(bytes, ALPHABET_URL, false);
}

/** Decodes base64 or base64url, forgivingly (see the top of this file). Never throws. */
export function base64Decode(text: string): Uint8Array {
  const out = new Uint8Array(Math.floor((text.length * 3) / 4) + 3);
  let length = 0;
  let bits = 0;
  let count = 0;
  for (let i = 0; i < text.length; i += 1) {
    const code = text.charCodeAt(i);
    if (code === 61) break; // '='
    const value = code < 128 ? DECODE[code]! : -1;
    if (value < 0) continue;
    bits = (bits << 6) | value;
    count += 1;
    if (count === 4) {
      out[length++] = (bits >> 16) & 255;
      out[length++] = (bits >> 8) & 255;
      out[length++] = bits & 255;
      bits = 0;
      count = 0;
    }
  }
  // A tail of 2 or 3 characters carries 1 or 2 bytes; a single leftover character carries none.
  if (count === 2) out[length++] = (bits >> 4) & 255;
  else if (count === 3) {
    out[length++] = (bits >> 10) & 255;
    out[length++] = (bits >> 2) & 255;
  }
  return out.subarray(0, length);
}

/** Lowercase hex of 32 bytes (ids, public keys) and of 64 bytes (BIP-340 signatures). */
export const HEX64 = /^[0-9a-f]{64}$/;
export const HEX128 = /^[0-9a-f]{128}$/;
