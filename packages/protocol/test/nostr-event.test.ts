// verifyNostrEvent: the NIP-01 check the relay pool and the NWC service use for any event.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { finalizeEvent as nostrToolsFinalize, verifyEvent as nostrToolsVerify } from 'nostr-tools/pure';
import { generateSecretKey, initCrypto, useCryptoBackend, verifyNostrEvent } from '../src/index';

const secret = generateSecretKey();
const draft = { kind: 23194, created_at: 1_700_000_000, tags: [['p', 'a'.repeat(64)]], content: 'ü 😀 "x"' };

for (const backend of ['wasm', 'pure'] as const) {
  test(`[${backend}] an event nostr-tools signed verifies; a changed one does not, even after a check`, async () => {
    await initCrypto('wasm');
    useCryptoBackend(backend);
    const event = nostrToolsFinalize({ ...draft, tags: draft.tags.map((t) => [...t]) }, secret);
    assert.equal(verifyNostrEvent(event), true);
    const changed = { ...event, content: 'other' };
    assert.equal(verifyNostrEvent(changed), false, 'content changed');
    // nostr-tools keeps its verdict on the object: the same object changed in place still passes it.
    assert.equal(nostrToolsVerify(event), true);
    event.content = 'changed in place';
    assert.equal(nostrToolsVerify(event), true, 'nostr-tools answers from its cached verdict');
    assert.equal(verifyNostrEvent(event), false, 'ours checks again');
  });

  test(`[${backend}] malformed events are refused without throwing`, async () => {
    await initCrypto('wasm');
    useCryptoBackend(backend);
    const good = { ...nostrToolsFinalize({ ...draft, tags: [['p', 'b'.repeat(64)]] }, secret) };
    assert.equal(verifyNostrEvent(good), true);
    const other = nostrToolsFinalize({ ...draft, content: 'another' }, secret);
    const cases: [string, unknown][] = [
      ['null', null],
      ['a string', JSON.stringify(good)],
      ['uppercase id', { ...good, id: good.id.toUpperCase() }],
      ['short sig', { ...good, sig: good.sig.slice(2) }],
      ['another event’s sig', { ...good, sig: other.sig }],
      ['no pubkey', { ...good, pubkey: undefined }],
      ['float kind', { ...good, kind: 1.5 }],
      ['string created_at', { ...good, created_at: '1700000000' }],
      ['tag value not a string', { ...good, tags: [['p', 5]] }],
      ['tags not arrays', { ...good, tags: ['p'] }],
      ['content not a string', { ...good, content: 7 }],
    ];
    for (const [name, event] of cases) assert.equal(verifyNostrEvent(event), false, name);
  });
}
