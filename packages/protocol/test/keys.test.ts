import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  FedAiError,
  generateSecretKey,
  parsePublicKey,
  parseSecretKey,
  publicKeyOf,
  secretKeyHex,
  toNpub,
  toNsec,
} from '../src/index';

test('secret keys round-trip through hex and nsec; public keys through hex and npub', () => {
  const secret = generateSecretKey();
  const hex = secretKeyHex(secret);
  assert.deepEqual(parseSecretKey(hex), secret);
  assert.deepEqual(parseSecretKey(hex.toUpperCase()), secret);
  assert.deepEqual(parseSecretKey(toNsec(secret)), secret);
  const pub = publicKeyOf(secret);
  assert.equal(parsePublicKey(pub), pub);
  assert.equal(parsePublicKey(toNpub(pub)), pub);
});

test('known NIP-19 vector decodes (NIP-19 spec example)', () => {
  assert.equal(
    parsePublicKey('npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg'),
    '7e7e9c42a91bfef19fa929e5fda1b72e0ebc1a4c1141673e2794234d86addf4e',
  );
  assert.equal(
    secretKeyHex(parseSecretKey('nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5')),
    '67dea2ed018072d675f5415ecfaed7d2597555e202d85b3d65ea4e58d2d92ffa',
  );
});

test('bad keys are refused with BAD_KEY and a clear message', () => {
  const bad = [
    '',
    'abc',
    'z'.repeat(64),
    '0'.repeat(64), // zero is not a valid secret key
    'ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff', // above the curve order
    'nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe6', // bad checksum
    'npub10elfcs4fr0l0r8af98jlmgdh9c8tcxjvz9qkw038js35mp4dma8qzvjptg', // npub where nsec is expected
  ];
  for (const input of bad) {
    assert.throws(
      () => parseSecretKey(input),
      (e: unknown) => e instanceof FedAiError && e.code === 'BAD_KEY' && e.message.length > 10,
      input,
    );
  }
  for (const input of [
    '',
    'f'.repeat(63),
    'nsec1vl029mgpspedva04g90vltkh6fvh240zqtv9k0t9af8935ke9laqsnlfe5',
    'ff'.repeat(32),
  ]) {
    assert.throws(
      () => parsePublicKey(input),
      (e: unknown) => e instanceof FedAiError && e.code === 'BAD_KEY',
      input,
    );
  }
});
