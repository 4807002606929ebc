import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createNip98Header,
  finalizeEvent,
  generateSecretKey,
  MemoryReplayStore,
  publicKeyOf,
  sha256Hex,
  verifyNip98,
} from '../src/index';

const key = generateSecretKey();
const url = 'http://127.0.0.1:8080/admin/apikeys';
const body = '{"name":"ci"}';

test('NIP-98: a valid header verifies once and names the signer', async () => {
  const replayStore = new MemoryReplayStore();
  const header = createNip98Header(url, 'post', body, key);
  const result = await verifyNip98(header, { url, method: 'POST', body, replayStore });
  assert.deepEqual(result, { ok: true, pubkey: publicKeyOf(key) });
  const again = await verifyNip98(header, { url, method: 'POST', body, replayStore });
  assert.equal(again.ok === false && again.code, 'REPLAYED');
});

test('NIP-98: tampered URL, method, body, age or signature are refused with reason codes', async () => {
  const header = createNip98Header(url, 'POST', body, key);
  const check = { url, method: 'POST', body, replayStore: new MemoryReplayStore() };
  const cases: [string, Promise<{ ok: boolean; code?: string }>, string][] = [
    ['missing', verifyNip98(undefined, check), 'UNAUTHORIZED'],
    ['garbage', verifyNip98('Nostr !!!', check), 'BAD_JSON'],
    ['url', verifyNip98(header, { ...check, url: `${url}?x=1` }), 'AUTH_URL_MISMATCH'],
    ['method', verifyNip98(header, { ...check, method: 'DELETE' }), 'AUTH_METHOD_MISMATCH'],
    ['body', verifyNip98(header, { ...check, body: '{"name":"evil"}' }), 'AUTH_PAYLOAD_MISMATCH'],
    ['stale', verifyNip98(createNip98Header(url, 'POST', body, key, 1000), check), 'STALE'],
  ];
  for (const [name, pending, code] of cases) {
    const result = await pending;
    assert.equal(result.ok, false, name);
    assert.equal(result.code, code, name);
  }
  const event = JSON.parse(Buffer.from(header.slice(6), 'base64').toString());
  event.sig = `${event.sig.slice(0, 120)}00000000`;
  const forged = `Nostr ${Buffer.from(JSON.stringify(event)).toString('base64')}`;
  const result = await verifyNip98(forged, check);
  assert.equal(result.ok === false && result.code, 'BAD_SIGNATURE');
});

test('NIP-98: without a body the payload tag may be left out; when present it must hash the exact body', async () => {
  const replayStore = new MemoryReplayStore();
  const plain = createNip98Header(url, 'POST', undefined, key);
  assert.equal((await verifyNip98(plain, { url, method: 'POST', body: '', replayStore })).ok, true);
  const withTag = (payload: string) => {
    const event = finalizeEvent(
      {
        kind: 27235,
        created_at: Math.floor(Date.now() / 1000),
        tags: [
          ['u', url],
          ['method', 'POST'],
          ['payload', payload],
          ['nonce', String(Math.random())],
        ],
        content: '',
      },
      key,
    );
    return `Nostr ${Buffer.from(JSON.stringify(event)).toString('base64')}`;
  };
  const empty = await verifyNip98(withTag(sha256Hex('')), { url, method: 'POST', body: '', replayStore });
  assert.equal(empty.ok, true);
  const nullHash = await verifyNip98(withTag(sha256Hex('null')), {
    url,
    method: 'POST',
    body: '',
    replayStore,
  });
  assert.equal(nullHash.ok === false && nullHash.code, 'AUTH_PAYLOAD_MISMATCH');
  const exact = await verifyNip98(withTag(sha256Hex(body)), { url, method: 'POST', body, replayStore });
  assert.equal(exact.ok, true);
  const spaced = await verifyNip98(withTag(sha256Hex(body)), {
    url,
    method: 'POST',
    body: `${body} `,
    replayStore,
  });
  assert.equal(spaced.ok === false && spaced.code, 'AUTH_PAYLOAD_MISMATCH');
  // A body without a payload tag is refused.
  const untagged = createNip98Header(url, 'POST', undefined, key);
  const refused = await verifyNip98(untagged, { url, method: 'POST', body, replayStore });
  assert.equal(refused.ok === false && refused.code, 'AUTH_PAYLOAD_MISMATCH');
});

test('NIP-98: a signer outside `allowed` is refused before its id is recorded', async () => {
  const replayStore = new MemoryReplayStore();
  const stranger = generateSecretKey();
  const header = createNip98Header(url, 'POST', body, stranger);
  const result = await verifyNip98(header, {
    url,
    method: 'POST',
    body,
    replayStore,
    allowed: new Set([publicKeyOf(key)]),
  });
  assert.equal(result.ok === false && result.code, 'FORBIDDEN');
  assert.equal(replayStore.size, 0);
  const own = await verifyNip98(createNip98Header(url, 'POST', body, key), {
    url,
    method: 'POST',
    body,
    replayStore,
    allowed: new Set([publicKeyOf(key)]),
  });
  assert.equal(own.ok, true);
  assert.equal(replayStore.size, 1);
});
