// Official vectors: BIP-340 (all rows) and NIP-44 v2, copied into test/fixtures.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  bip340,
  bytesToHex,
  conversationKey,
  finalizeEvent,
  hexToBytes,
  initCrypto,
  nip44CalcPaddedLen,
  nip44Decrypt,
  nip44Encrypt,
  sha256Hex,
  useCryptoBackend,
  verifyEventSignature,
} from '../src/index';

const fixtures = new URL('./fixtures/', import.meta.url);

interface Bip340Row {
  index: string;
  secretKey: string;
  publicKey: string;
  auxRand: string;
  message: string;
  signature: string;
  result: boolean;
  comment: string;
}

function bip340Rows(file = 'bip340-test-vectors.csv'): Bip340Row[] {
  const lines = readFileSync(new URL(file, fixtures), 'utf8').trim().split('\n').slice(1);
  return lines.map((line) => {
    const [index, secretKey, publicKey, auxRand, message, signature, result, ...comment] = line.split(',');
    return {
      index: index!,
      secretKey: secretKey!,
      publicKey: publicKey!,
      auxRand: auxRand!,
      message: message!,
      signature: signature!,
      result: result === 'TRUE',
      comment: comment.join(','),
    };
  });
}

test('BIP-340: every row signs (where a key is given) and verifies as expected', () => {
  const rows = bip340Rows();
  assert.ok(rows.length >= 15, 'all vector rows loaded');
  for (const row of rows) {
    const message = hexToBytes(row.message.toLowerCase());
    if (row.secretKey) {
      const secret = hexToBytes(row.secretKey.toLowerCase());
      assert.equal(
        bytesToHex(bip340.publicKey(secret)).toUpperCase(),
        row.publicKey,
        `row ${row.index} pubkey`,
      );
      const sig = bip340.sign(message, secret, hexToBytes(row.auxRand.toLowerCase()));
      assert.equal(bytesToHex(sig).toUpperCase(), row.signature, `row ${row.index} signature`);
    }
    let verified: boolean;
    try {
      verified = bip340.verify(
        hexToBytes(row.signature.toLowerCase()),
        message,
        hexToBytes(row.publicKey.toLowerCase()),
      );
    } catch {
      verified = false;
    }
    assert.equal(verified, row.result, `row ${row.index} verify (${row.comment})`);
  }
});

test('BIP-340 pre-final draft vectors (shared copy): FALSE rows refused, draft signatures refused too', () => {
  const rows = bip340Rows('bip340-draft-vectors.csv');
  assert.ok(
    rows.some((r) => r.comment.includes('has_square_y')),
    'this is the draft file',
  );
  for (const row of rows) {
    const ok = bip340.verify(
      hexToBytes(row.signature.toLowerCase()),
      hexToBytes(row.message.toLowerCase()),
      hexToBytes(row.publicKey.toLowerCase()),
    );
    assert.equal(ok, false, `draft row ${row.index} must not verify under final BIP-340`);
  }
});

test('BIP-340 rows with 32-byte messages verify identically on the wasm and pure event backends', async () => {
  // nostr-wasm signs/verifies events, not raw messages: cross-check both backends on events
  // signed with each vector secret key.
  const init = await initCrypto('wasm');
  assert.equal(init.backend, 'wasm', `wasm must load here: ${init.error ?? ''}`);
  for (const row of bip340Rows().filter((r) => r.secretKey)) {
    const secret = hexToBytes(row.secretKey.toLowerCase());
    for (const signer of ['wasm', 'pure'] as const) {
      useCryptoBackend(signer);
      const event = finalizeEvent(
        { kind: 1, created_at: 1_700_000_000, tags: [], content: row.index },
        secret,
      );
      assert.equal(event.pubkey, row.publicKey.toLowerCase());
      for (const verifier of ['wasm', 'pure'] as const) {
        useCryptoBackend(verifier);
        assert.equal(verifyEventSignature(event), true, `${signer}->${verifier} row ${row.index}`);
        const flipped = { ...event, sig: event.sig.replace(/^./, (c) => (c === '0' ? '1' : '0')) };
        assert.equal(
          verifyEventSignature(flipped),
          false,
          `${signer}->${verifier} tampered row ${row.index}`,
        );
      }
    }
  }
  useCryptoBackend('pure');
});

interface Nip44Vectors {
  v2: {
    valid: {
      get_conversation_key: { sec1: string; pub2: string; conversation_key: string }[];
      calc_padded_len: [number, number][];
      encrypt_decrypt: {
        sec1: string;
        sec2: string;
        conversation_key: string;
        nonce: string;
        plaintext: string;
        payload: string;
      }[];
      encrypt_decrypt_long_msg: unknown[];
    };
    invalid: {
      encrypt_msg_lengths: number[];
      get_conversation_key: { sec1: string; pub2: string; note: string }[];
      decrypt: {
        conversation_key: string;
        nonce: string;
        plaintext: string;
        payload: string;
        note: string;
      }[];
    };
  };
}

const nip44 = JSON.parse(readFileSync(new URL('nip44.vectors.json', fixtures), 'utf8')) as Nip44Vectors;

test('NIP-44 v2: conversation keys', () => {
  const cases = nip44.v2.valid.get_conversation_key;
  assert.ok(cases.length > 10);
  for (const c of cases) {
    assert.equal(bytesToHex(conversationKey(hexToBytes(c.sec1), c.pub2)), c.conversation_key);
  }
});

test('NIP-44 v2: padded lengths', () => {
  for (const [length, padded] of nip44.v2.valid.calc_padded_len)
    assert.equal(nip44CalcPaddedLen(length), padded);
});

test('NIP-44 v2: encrypt/decrypt vectors', () => {
  for (const c of nip44.v2.valid.encrypt_decrypt) {
    const key = conversationKey(hexToBytes(c.sec1), bytesToHex(bip340.publicKey(hexToBytes(c.sec2))));
    assert.equal(bytesToHex(key), c.conversation_key);
    assert.equal(nip44Encrypt(c.plaintext, key, hexToBytes(c.nonce)), c.payload);
    assert.equal(nip44Decrypt(c.payload, key), c.plaintext);
  }
});

test('NIP-44 v2: long messages', () => {
  const cases = nip44.v2.valid.encrypt_decrypt_long_msg as {
    conversation_key: string;
    nonce: string;
    pattern: string;
    repeat: number;
    plaintext_sha256: string;
    payload_sha256: string;
  }[];
  assert.ok(cases.length > 0);
  for (const c of cases) {
    const plaintext = c.pattern.repeat(c.repeat);
    assert.equal(sha256Hex(plaintext), c.plaintext_sha256);
    const payload = nip44Encrypt(plaintext, hexToBytes(c.conversation_key), hexToBytes(c.nonce));
    assert.equal(sha256Hex(payload), c.payload_sha256);
    assert.equal(nip44Decrypt(payload, hexToBytes(c.conversation_key)), plaintext);
  }
});

test('NIP-44 v2: invalid conversation keys, message lengths and payloads are refused', () => {
  for (const c of nip44.v2.invalid.get_conversation_key) {
    assert.throws(() => conversationKey(hexToBytes(c.sec1), c.pub2), Error, c.note);
  }
  const key = new Uint8Array(32).fill(1);
  for (const length of nip44.v2.invalid.encrypt_msg_lengths) {
    assert.throws(() => nip44Encrypt('a'.repeat(length), key), Error, `length ${length}`);
  }
  for (const c of nip44.v2.invalid.decrypt) {
    assert.throws(() => nip44Decrypt(c.payload, hexToBytes(c.conversation_key)), Error, c.note);
  }
});
