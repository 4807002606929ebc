// MAC envelopes (channel-mac.ts): both ends of a pair derive the same key; a MAC envelope verifies
// only for a verifier that takes MACs from its author and holds the pair's key; anything changed,
// another pair's key, a stripped tag, or no channel at all is BAD_SIGNATURE or BAD_ID. Signed
// envelopes verify as before with a channel configured.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  ChannelKeys,
  createEnvelope,
  createMacEnvelope,
  eventHash,
  generateSecretKey,
  isMacEnvelope,
  KIND,
  MAC_AUTH_TAG,
  publicKeyOf,
  type VerifyOptions,
  verifyEnvelope,
} from '../src/index';

const routerKey = generateSecretKey();
const nodeKey = generateSecretKey();
const router = publicKeyOf(routerKey);
const node = publicKeyOf(nodeKey);
const routerKeys = new ChannelKeys(routerKey);
const nodeKeys = new ChannelKeys(nodeKey);
const payload = { request_id: 'req-mac-1' };
const atNode = (from = new Set([router])) => ({
  me: node,
  kinds: [KIND.inferenceCancel],
  channel: { keys: nodeKeys, from },
});

test('a MAC envelope from a router the node takes MACs from verifies, with the tag inside its id', async () => {
  const envelope = createMacEnvelope(KIND.inferenceCancel, payload, { audience: node }, routerKeys);
  assert.equal(envelope.pubkey, router);
  assert.ok(isMacEnvelope(envelope));
  assert.deepEqual(envelope.tags.at(-1), [...MAC_AUTH_TAG]);
  assert.equal(eventHash(envelope), envelope.id);
  assert.match(envelope.sig, /^[0-9a-f]{128}$/);
  const verified = await verifyEnvelope(JSON.stringify(envelope), atNode());
  assert.ok(verified.ok, JSON.stringify(verified));
  assert.deepEqual(verified.payload, payload);
});

test('refused: no channel, an author not taken, another pair, a changed MAC or content, a stripped tag', async () => {
  const envelope = createMacEnvelope(KIND.inferenceCancel, payload, { audience: node }, routerKeys);
  const code = async (event: unknown, options: VerifyOptions<typeof KIND.inferenceCancel> = atNode()) => {
    const verified = await verifyEnvelope(JSON.stringify(event), options);
    return verified.ok ? 'OK' : verified.code;
  };
  const { channel: _none, ...noChannel } = atNode();
  assert.equal(await code(envelope, noChannel), 'BAD_SIGNATURE', 'a verifier without channels');
  assert.equal(await code(envelope, atNode(new Set())), 'BAD_SIGNATURE', 'an author it takes no MAC from');
  // Another router's MAC for the same node, claiming to be this router.
  const stranger = new ChannelKeys(generateSecretKey());
  const forged = createMacEnvelope(KIND.inferenceCancel, payload, { audience: node }, stranger);
  const claimed = { ...forged, pubkey: router };
  assert.equal(await code({ ...claimed, id: eventHash(claimed) }, atNode()), 'BAD_SIGNATURE');
  // The right pair's key, but for another node: the MAC is of another channel.
  const other = generateSecretKey();
  const toOther = createMacEnvelope(
    KIND.inferenceCancel,
    payload,
    { audience: publicKeyOf(other) },
    routerKeys,
  );
  const readdressed = { ...toOther, tags: toOther.tags.map((t) => (t[0] === 'p' ? ['p', node] : t)) };
  assert.equal(await code({ ...readdressed, id: eventHash(readdressed) }), 'BAD_SIGNATURE');
  const flipped = `${envelope.sig[0] === '0' ? '1' : '0'}${envelope.sig.slice(1)}`;
  assert.equal(await code({ ...envelope, sig: flipped }), 'BAD_SIGNATURE');
  assert.equal(await code({ ...envelope, content: JSON.stringify({ request_id: 'req-mac-2' }) }), 'BAD_ID');
  // Without the tag the MAC is read as a BIP-340 signature, which it is not.
  const stripped = { ...envelope, tags: envelope.tags.slice(0, -1) };
  assert.equal(await code({ ...stripped, id: eventHash(stripped) }), 'BAD_SIGNATURE');
});

test('a signed envelope verifies as before where MACs are taken; a MAC claimed by a key off the curve is refused', async () => {
  const signed = createEnvelope(KIND.inferenceCancel, payload, { audience: node }, routerKey);
  assert.equal(isMacEnvelope(signed), false);
  assert.ok((await verifyEnvelope(JSON.stringify(signed), atNode())).ok);
  const envelope = createMacEnvelope(KIND.inferenceCancel, payload, { audience: node }, routerKeys);
  const offCurve = 'f'.repeat(64);
  const moved = { ...envelope, pubkey: offCurve };
  assert.equal(nodeKeys.opens({ ...moved, id: eventHash(moved) }), false);
  const verified = await verifyEnvelope(
    JSON.stringify({ ...moved, id: eventHash(moved) }),
    atNode(new Set([offCurve])),
  );
  assert.equal(verified.ok ? 'OK' : verified.code, 'BAD_SIGNATURE');
});

test('both ends derive the same key, and keys are kept for at most maxPeers peers', () => {
  const small = new ChannelKeys(nodeKey, 2);
  for (let i = 0; i < 5; i++) {
    const peer = new ChannelKeys(generateSecretKey());
    const sealed = peer.seal({ kind: KIND.inferenceCancel, created_at: 1, tags: [], content: '{}' }, node);
    assert.ok(small.opens(sealed), `peer ${i}`);
  }
  assert.equal((small as unknown as { keys: Map<string, Uint8Array> }).keys.size, 2);
});

test("an attested signed event: the author's channel MAC of its id stands in for the signature, and nothing else does", async () => {
  // A node's metering record (signed for third parties) with a broken signature, and the node's MAC of it.
  const record = createEnvelope(KIND.inferenceCancel, payload, { audience: router }, nodeKey);
  const garbled = { ...record, sig: record.sig.replace(/.$/, (c) => (c === '0' ? '1' : '0')) };
  const atRouter = (mac: string, keys = routerKeys) => ({
    me: router,
    kinds: [KIND.inferenceCancel],
    attestation: { keys, mac },
  });
  const mac = nodeKeys.attest(record.id, router);
  assert.equal((await verifyEnvelope(garbled, atRouter(mac))).ok, true);
  const codeOf = async (event: unknown, options: ReturnType<typeof atRouter>) => {
    const result = await verifyEnvelope(event, options);
    return result.ok ? 'ok' : result.code;
  };
  assert.equal(
    await codeOf(garbled, atRouter(mac.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')))),
    'BAD_SIGNATURE',
  );
  // Another pair's MAC, a MAC for another id, or a MAC checked with another party's keys.
  const stranger = new ChannelKeys(generateSecretKey());
  assert.equal(await codeOf(garbled, atRouter(stranger.attest(record.id, router))), 'BAD_SIGNATURE');
  assert.equal(
    await codeOf(garbled, atRouter(nodeKeys.attest(eventHash({ ...record, content: '{}' }), router))),
    'BAD_SIGNATURE',
  );
  assert.equal(await codeOf(garbled, atRouter(mac, stranger)), 'BAD_SIGNATURE');
  // The id is still checked first: changed content with the old MAC.
  assert.equal(
    await codeOf({ ...garbled, content: JSON.stringify({ request_id: 'req-mac-2' }) }, atRouter(mac)),
    'BAD_ID',
  );
  // Without the attestation the broken signature is refused.
  assert.equal(
    await codeOf(garbled, { me: router, kinds: [KIND.inferenceCancel] } as never),
    'BAD_SIGNATURE',
  );
});
