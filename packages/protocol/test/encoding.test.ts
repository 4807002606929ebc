// The browser-safe text and base64 helpers behave exactly as Node's Buffer did (the oracle here).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  base64Decode,
  base64Encode,
  base64UrlEncode,
  decodeEnvelopeHeader,
  utf8ByteLength,
  utf8Decode,
  utf8Encode,
  utf8Exceeds,
} from '../src/index';

const bytes = (value: Uint8Array) => Buffer.from(value.buffer, value.byteOffset, value.length);

test('utf8ByteLength equals Buffer.byteLength, lone surrogates included', () => {
  for (const text of ['', 'a', 'é', '⚡', '😀', '\ud800', '\udc00x', 'a\ud83d', '\ud83d\ude00\ud83d']) {
    assert.equal(utf8ByteLength(text), Buffer.byteLength(text, 'utf8'), JSON.stringify(text));
  }
  fc.assert(
    fc.property(fc.string({ unit: 'binary', maxLength: 200 }), (text) => {
      assert.equal(utf8ByteLength(text), Buffer.byteLength(text, 'utf8'));
      assert.equal(utf8ByteLength(text), utf8Encode(text).length);
    }),
    { numRuns: 2000 },
  );
});

test('utf8Exceeds says whether the UTF-8 length is over the limit, at every limit near it', () => {
  fc.assert(
    fc.property(
      fc.string({ unit: 'binary', maxLength: 120 }),
      fc.integer({ min: -4, max: 4 }),
      fc.integer({ min: 1, max: 3 }),
      (text, offset, scale) => {
        const bytes = Buffer.byteLength(text, 'utf8');
        // Limits around the byte length and around the length times 1..3 (where the shortcut applies).
        for (const maxBytes of [bytes + offset, text.length * scale + offset]) {
          if (maxBytes < 0) continue;
          assert.equal(
            utf8Exceeds(text, maxBytes),
            bytes > maxBytes,
            `${JSON.stringify(text)} / ${maxBytes}`,
          );
        }
      },
    ),
    { numRuns: 3000 },
  );
});

test('utf8Exceeds answers the same above the 1 MiB it encodes into (the offload limit is 6 MiB)', () => {
  // 2- and 4-byte characters ending exactly at the limit, then one byte over it, on both sides of
  // the size where the count moves from the encoder to JS.
  for (const maxBytes of [(1 << 20) - 2, (1 << 20) + 6, 6 * 1024 * 1024]) {
    const fits = `${'é'.repeat((maxBytes - 4) / 2)}😀`;
    assert.equal(Buffer.byteLength(fits, 'utf8'), maxBytes);
    assert.equal(utf8Exceeds(fits, maxBytes), false, `${maxBytes}: exactly at the limit`);
    assert.equal(utf8Exceeds(`${fits}a`, maxBytes), true, `${maxBytes}: one byte over`);
    assert.equal(utf8Exceeds(`a${fits.slice(1)}`, maxBytes), false, `${maxBytes}: one byte under`);
    assert.equal(utf8Exceeds('a'.repeat(maxBytes / 2 + 1), maxBytes), false, `${maxBytes}: ASCII, counted`);
  }
});

test('base64 and base64url encode as Buffer does', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (data) => {
      assert.equal(base64Encode(data), bytes(data).toString('base64'));
      assert.equal(base64UrlEncode(data), bytes(data).toString('base64url'));
    }),
    { numRuns: 2000 },
  );
});

test('base64Decode is as forgiving as Buffer: both alphabets, no padding, junk skipped, stops at =', () => {
  for (const text of [
    'aGVsbG8=',
    'aGVsbG8',
    'aGV sbG8',
    'aGV$sbG8',
    'aGVs=bG8',
    'a',
    'aG',
    'aGVsbG8-_w',
    '+/+/',
    'é€x',
  ]) {
    assert.deepEqual(bytes(base64Decode(text)), Buffer.from(text, 'base64'), text);
    assert.deepEqual(bytes(base64Decode(text)), Buffer.from(text, 'base64url'), text);
  }
  // Any Latin-1 text (all an HTTP header can hold), junk and padding in random places.
  const latin1 = fc.string({
    unit: fc.oneof(
      fc.constantFrom(...'ABCxyz019+/-_= \n'.split('')),
      fc.nat(255).map((n) => String.fromCharCode(n)),
    ),
    maxLength: 120,
  });
  fc.assert(
    fc.property(latin1, (text) => {
      assert.deepEqual(bytes(base64Decode(text)), Buffer.from(text, 'base64'));
    }),
    { numRuns: 3000 },
  );
  // Above Latin-1, Buffer reads only a character's low byte; the helper skips the character.
  assert.deepEqual([...base64Decode('aGVs\u012bbG8')], [...base64Decode('aGVsbG8')]);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), (data) => {
      assert.deepEqual(bytes(base64Decode(base64Encode(data))), bytes(data));
      assert.deepEqual(bytes(base64Decode(base64UrlEncode(data))), bytes(data));
    }),
    { numRuns: 1000 },
  );
});

test('utf8Decode replaces invalid sequences as Buffer does; envelope headers decode as before', () => {
  for (const raw of [[0xc3], [0xe2, 0x9a], [0xff, 0x41], [0xed, 0xa0, 0x80], [0xf0, 0x9f, 0x98, 0x80]]) {
    const data = Uint8Array.from(raw);
    assert.equal(utf8Decode(data), bytes(data).toString('utf8'), JSON.stringify(raw));
  }
  const json = JSON.stringify({ content: 'héllo ⚡' });
  assert.equal(decodeEnvelopeHeader(Buffer.from(json).toString('base64url')), json);
  assert.equal(decodeEnvelopeHeader(Buffer.from(json).toString('base64')), json);
});
