import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createNip98Header,
  generateSecretKey,
  MemoryReplayStore,
  publicKeyOf,
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
