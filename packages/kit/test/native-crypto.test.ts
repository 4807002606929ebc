// The native BIP-340 backend (bcrypto's libsecp256k1 binding) against the official vectors and
// the other two backends: events signed by any one verify under all three, and tampered or
// malformed ones under none.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { test } from 'node:test';
import {
  cryptoBackend,
  eventHash,
  finalizeEvent,
  hexToBytes,
  hmacSha512Hex,
  initCrypto,
  type SignedEvent,
  sha256Hex,
  useCryptoBackend,
  verifyEventSignature,
} from '@fed-ai/protocol';
import { bcryptoNativeCrypto, initServiceCrypto } from '../src/native-crypto';

const vectorsFile = new URL('../../protocol/test/fixtures/bip340-test-vectors.csv', import.meta.url);
const rows = readFileSync(vectorsFile, 'utf8')
  .trim()
  .split('\n')
  .slice(1)
  .map((line) => {
    const [index, secretKey, publicKey, auxRand, message, signature, result] = line.toLowerCase().split(',');
    return { index, secretKey, publicKey, auxRand, message, signature, result: result === 'true' };
  });

const schnorr = createRequire(import.meta.url)('bcrypto/lib/schnorr');
const native = bcryptoNativeCrypto(schnorr);
const warnings: object[] = [];

test('the native backend loads on this machine (bcrypto built by pnpm install)', async () => {
  const backend = await initServiceCrypto({ warn: (fields) => warnings.push(fields) });
  assert.equal(
    backend,
    'native',
    `bcrypto's binding did not load (${JSON.stringify(warnings)}): it needs python3, make and g++ at install`,
  );
  assert.equal(cryptoBackend(), 'native');
});

test('BIP-340 vectors: native signs each row exactly and verifies every row as the vector says', () => {
  assert.ok(rows.length >= 15);
  for (const row of rows) {
    if (row.secretKey) {
      const secret = hexToBytes(row.secretKey);
      assert.equal(native.publicKeyHex(secret), row.publicKey, `row ${row.index} public key`);
      assert.equal(
        native.signHex(row.message!, secret, hexToBytes(row.auxRand!)),
        row.signature,
        `row ${row.index} signature`,
      );
    }
    assert.equal(
      native.verifyHex(row.signature!, row.message!, row.publicKey!),
      row.result,
      `row ${row.index}`,
    );
  }
});

test('malformed hex is refused, never truncated into a check of other bytes', () => {
  const row = rows.find((r) => r.result && r.secretKey && /[a-f]/.test(r.message!))!;
  const good = [row.signature!, row.message!, row.publicKey!] as const;
  assert.equal(native.verifyHex(...good), true);
  const variants: [string, string, string][] = [
    [good[0].toUpperCase(), good[1], good[2]],
    [good[0], good[1].toUpperCase(), good[2]],
    [`${good[0]}00`, good[1], good[2]],
    [good[0], good[1].slice(0, 62), good[2]],
    [good[0], good[1], `${good[2].slice(0, 63)}g`],
    [`${good[0].slice(0, 127)}z`, good[1], good[2]],
  ];
  for (const args of variants) assert.equal(native.verifyHex(...args), false, args.join(' '));
  assert.throws(() => native.signHex('ab', hexToBytes(row.secretKey!), new Uint8Array(32)));
});

test('events signed by each backend verify under all three; a changed signature under none', async () => {
  assert.equal((await initCrypto('wasm')).backend, 'wasm', 'wasm loads for the cross-checks');
  assert.equal((await initCrypto()).backend, 'native', 'initCrypto() goes back to the native backend');
  const backends = ['native', 'wasm', 'pure'] as const;
  for (const row of rows.filter((r) => r.secretKey)) {
    for (const signer of backends) {
      useCryptoBackend(signer);
      const event = finalizeEvent(
        { kind: 1, created_at: 1_700_000_000, tags: [['t', 'ü😀']], content: `row ${row.index} "ü" \\ 😀` },
        hexToBytes(row.secretKey!),
      );
      assert.equal(event.pubkey, row.publicKey);
      for (const verifier of backends) {
        useCryptoBackend(verifier);
        assert.equal(eventHash(event), event.id, `${verifier} hashes ${signer}'s event`);
        assert.equal(verifyEventSignature(event), true, `${signer} -> ${verifier}`);
        const flipped: SignedEvent = {
          ...event,
          sig: event.sig.replace(/^./, (c) => (c === '0' ? '1' : '0')),
        };
        assert.equal(verifyEventSignature(flipped), false, `${signer} -> ${verifier}, tampered`);
        const otherId: SignedEvent = { ...event, id: eventHash({ ...event, content: 'other' }) };
        assert.equal(verifyEventSignature(otherId), false, `${signer} -> ${verifier}, other id`);
      }
    }
  }
  useCryptoBackend('native');
});

test('native sha256 of text equals the JS one (UTF-8, long and empty)', () => {
  for (const text of ['', 'abc', 'ü😀\u0000\n', 'x'.repeat(100_000)]) {
    useCryptoBackend('native');
    const nativeHash = sha256Hex(text);
    useCryptoBackend('pure');
    assert.equal(nativeHash, sha256Hex(text));
  }
  assert.equal(sha256Hex('abc'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  useCryptoBackend('native');
});

test('a secret key changed in place does not keep its cached public key', () => {
  const secret = hexToBytes(rows[1]!.secretKey!);
  assert.equal(native.publicKeyHex(secret), rows[1]!.publicKey);
  secret.set(hexToBytes(rows[2]!.secretKey!));
  assert.equal(native.publicKeyHex(secret), rows[2]!.publicKey);
});

test('HMAC-SHA512 (channel MACs): RFC 4231 case 2 on both, equal to the JS one, malformed hex throws', () => {
  const key = new TextEncoder().encode('Jefe');
  const data = Buffer.from('what do ya want for nothing?').toString('hex');
  const rfc4231 =
    '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737';
  for (const backend of ['native', 'pure'] as const) {
    useCryptoBackend(backend);
    assert.equal(hmacSha512Hex(key, data), rfc4231, backend);
    assert.equal(hmacSha512Hex(key, ''), hmacSha512Hex(key, ''));
    assert.throws(() => hmacSha512Hex(key, 'abc'), `${backend}: odd length`);
    assert.throws(() => hmacSha512Hex(key, 'zz'), `${backend}: not hex`);
  }
  const id = 'ab'.repeat(32);
  useCryptoBackend('pure');
  const js = hmacSha512Hex(key, id);
  useCryptoBackend('native');
  assert.equal(hmacSha512Hex(key, id), js);
});

test('each native signature has its own auxiliary randomness, across refills of the pool it comes from', () => {
  useCryptoBackend('native');
  const secret = hexToBytes(rows[1]!.secretKey!);
  const event = { kind: 1, created_at: 1_700_000_000, tags: [], content: 'same event every time' };
  // 300 signatures span three 128-signature pools: BIP-340 with the same aux bytes would give the
  // same signature, so 300 distinct ones mean no aux bytes were handed out twice.
  const signed = Array.from({ length: 300 }, () => finalizeEvent(event, secret));
  assert.equal(new Set(signed.map((e) => e.sig)).size, 300);
  assert.equal(new Set(signed.map((e) => e.id)).size, 1);
  for (const e of signed) assert.ok(verifyEventSignature(e));
});
