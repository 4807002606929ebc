import assert from 'node:assert/strict';
import { test } from 'node:test';
import { getEventHash } from 'nostr-tools/pure';
import {
  createEnvelope,
  ENVELOPE_DEFAULTS,
  type Envelope,
  finalizeEvent,
  generateSecretKey,
  initCrypto,
  KIND,
  MemoryReplayStore,
  publicKeyOf,
  type ReasonCode,
  useCryptoBackend,
  verifyEnvelope,
} from '../src/index';

const routerKey = generateSecretKey();
const nodeKey = generateSecretKey();
const router = publicKeyOf(routerKey);
const node = publicKeyOf(nodeKey);
const NOW = 1_800_000_000;

const heartbeat = { free_slots: 2, queue_depth: 0, models_loaded: ['m1'], ready: true };

function signedHeartbeat(overrides: Partial<Parameters<typeof createEnvelope>[2]> = {}) {
  return createEnvelope(
    KIND.nodeHeartbeat,
    heartbeat,
    { audience: router, nowS: NOW, ...overrides },
    nodeKey,
  );
}

function resign(event: Omit<Envelope, 'id' | 'sig' | 'pubkey'>): Envelope {
  return finalizeEvent(event, nodeKey);
}

const verifyAsRouter = (raw: unknown, extra: { replayStore?: MemoryReplayStore; nowS?: number } = {}) =>
  verifyEnvelope(raw, { me: router, kinds: [KIND.nodeHeartbeat], nowS: NOW, ...extra });

for (const backend of ['wasm', 'pure'] as const) {
  test(`[${backend}] a valid envelope verifies and yields its typed payload`, async () => {
    await initCrypto('wasm');
    useCryptoBackend(backend);
    const envelope = signedHeartbeat();
    assert.equal(envelope.pubkey, node);
    const result = await verifyAsRouter(JSON.stringify(envelope), { replayStore: new MemoryReplayStore() });
    assert.equal(result.ok, true);
    if (result.ok) {
      assert.deepEqual(result.payload, heartbeat);
      assert.equal(result.envelope.pubkey, node);
    }
  });

  test(`[${backend}] envelope ids agree with nostr-tools getEventHash on generated events`, async () => {
    await initCrypto('wasm');
    useCryptoBackend(backend);
    for (let i = 0; i < 50; i++) {
      const envelope = createEnvelope(
        KIND.nodeHeartbeat,
        { ...heartbeat, free_slots: i, models_loaded: [`model-${i}`, 'ünïcødé-😀'.replace(/[^\w-]/g, 'x')] },
        { audience: router, refs: [`req-${i}-abcdefgh`], tags: [['note', `"quoted" \\ \n ${i} ü 😀`]] },
        nodeKey,
      );
      assert.equal(getEventHash(envelope), envelope.id);
    }
  });

  test(`[${backend}] every reason code has a negative test`, async () => {
    await initCrypto('wasm');
    useCryptoBackend(backend);
    const good = signedHeartbeat();
    const cases: [string, () => Promise<{ ok: boolean; code?: ReasonCode }>, ReasonCode][] = [
      ['oversize', () => verifyAsRouter('x'.repeat(ENVELOPE_DEFAULTS.maxBytes + 1)), 'ENVELOPE_TOO_LARGE'],
      ['not json', () => verifyAsRouter('{"id":'), 'BAD_JSON'],
      ['missing sig', () => verifyAsRouter({ ...good, sig: undefined }), 'BAD_SHAPE'],
      ['tags not arrays', () => verifyAsRouter({ ...good, tags: ['p'] }), 'BAD_SHAPE'],
      [
        'unknown kind',
        () => verifyAsRouter(resign({ kind: 1, created_at: NOW, tags: [['p', router]], content: '{}' })),
        'UNKNOWN_KIND',
      ],
      ['too old', () => verifyAsRouter(signedHeartbeat({ nowS: NOW - 121 })), 'STALE'],
      ['from the future', () => verifyAsRouter(signedHeartbeat({ nowS: NOW + 121 })), 'STALE'],
      ['other audience', () => verifyAsRouter(signedHeartbeat({ audience: node })), 'WRONG_AUDIENCE'],
      ['no audience', () => verifyAsRouter(signedHeartbeat({ audience: undefined })), 'WRONG_AUDIENCE'],
      ['expired', () => verifyAsRouter(signedHeartbeat({ nowS: NOW - 10, expiresInS: 5 })), 'EXPIRED'],
      [
        'payload schema',
        () =>
          verifyAsRouter(
            resign({
              kind: KIND.nodeHeartbeat,
              created_at: NOW,
              tags: [['p', router]],
              content: JSON.stringify({ ...heartbeat, free_slots: -1 }),
            }),
          ),
        'BAD_PAYLOAD',
      ],
      [
        'content not json',
        () =>
          verifyAsRouter(
            resign({ kind: KIND.nodeHeartbeat, created_at: NOW, tags: [['p', router]], content: '{' }),
          ),
        'BAD_PAYLOAD',
      ],
      [
        'id mismatch',
        () => verifyAsRouter({ ...good, id: good.id.replace(/^./, (c) => (c === 'a' ? 'b' : 'a')) }),
        'BAD_ID',
      ],
      [
        'content changed after signing',
        () => verifyAsRouter({ ...good, content: JSON.stringify({ ...heartbeat, free_slots: 9 }) }),
        'BAD_ID',
      ],
      [
        'signature of another key',
        () => {
          const other = createEnvelope(
            KIND.nodeHeartbeat,
            heartbeat,
            { audience: router, nowS: NOW },
            routerKey,
          );
          // Claim node's pubkey with a correct id but the router's signature.
          const forged = { ...other, pubkey: node };
          return verifyAsRouter({ ...forged, id: getEventHash(forged) });
        },
        'BAD_SIGNATURE',
      ],
      [
        'corrupt signature',
        () =>
          verifyAsRouter({ ...good, sig: `${good.sig.slice(0, 127)}${good.sig.endsWith('0') ? '1' : '0'}` }),
        'BAD_SIGNATURE',
      ],
    ];
    for (const [name, run, code] of cases) {
      const result = await run();
      assert.equal(result.ok, false, name);
      assert.equal(result.code, code, name);
    }
    const replayStore = new MemoryReplayStore();
    assert.equal((await verifyAsRouter(good, { replayStore })).ok, true);
    const again = await verifyAsRouter(good, { replayStore });
    assert.equal(again.ok, false);
    assert.equal(again.ok === false && again.code, 'REPLAYED');
  });
}

test('the replay store is written only after the signature is valid', async () => {
  const replayStore = new MemoryReplayStore();
  const good = signedHeartbeat();
  const forged = { ...good, sig: '0'.repeat(128) };
  const first = await verifyAsRouter(forged, { replayStore });
  assert.equal(first.ok === false && first.code, 'BAD_SIGNATURE');
  assert.equal(replayStore.size, 0, 'a forged message must not poison the replay store');
  assert.equal((await verifyAsRouter(good, { replayStore })).ok, true);
});

test('concurrent verification of one envelope succeeds exactly once', async () => {
  const replayStore = new MemoryReplayStore();
  const good = JSON.stringify(signedHeartbeat());
  const results = await Promise.all(Array.from({ length: 20 }, () => verifyAsRouter(good, { replayStore })));
  assert.equal(results.filter((r) => r.ok).length, 1);
});

test('broadcasts (me: null) skip the audience check but nothing else', async () => {
  const announce = createEnvelope(
    KIND.priceSheet,
    { model: 'm1', price: { input_msat_per_1k: 10, output_msat_per_1k: 20 }, context_window: 4096, nodes: 2 },
    { tags: [['d', 'm1']], nowS: NOW, expiresInS: 0 },
    routerKey,
  );
  const ok = await verifyEnvelope(announce, { me: null, kinds: [KIND.priceSheet], nowS: NOW });
  assert.equal(ok.ok, true);
  const wrongKind = await verifyEnvelope(announce, { me: null, kinds: [KIND.nodeHeartbeat], nowS: NOW });
  assert.equal(wrongKind.ok === false && wrongKind.code, 'UNKNOWN_KIND');
});

test('createEnvelope refuses to sign a payload that breaks its own schema', () => {
  assert.throws(() =>
    createEnvelope(KIND.nodeHeartbeat, { ...heartbeat, free_slots: -5 }, { audience: router }, nodeKey),
  );
});

test('the memory replay store is bounded and fails closed when full', async () => {
  let now = 100;
  const store = new MemoryReplayStore(3, () => now);
  assert.equal(await store.checkAndRecord('a', 110), true);
  assert.equal(await store.checkAndRecord('b', 110), true);
  assert.equal(await store.checkAndRecord('c', 110), true);
  await assert.rejects(store.checkAndRecord('d', 110), /full/);
  now = 111; // all expired: a sweep frees room
  assert.equal(await store.checkAndRecord('d', 120), true);
  assert.equal(store.size, 1);
});

test('asOfCreation checks evidence as of its own created_at: no freshness window, expiration against creation', async () => {
  const daysOld = signedHeartbeat({ nowS: NOW - 3 * 86_400, expiresInS: 60 });
  const text = JSON.stringify(daysOld);
  assert.equal((await verifyAsRouter(text)).ok, false, 'stale (and expired) by the clock');
  for (const raw of [text, daysOld]) {
    const asOf = await verifyEnvelope(raw, {
      me: router,
      kinds: [KIND.nodeHeartbeat],
      nowS: NOW,
      asOfCreation: true,
    });
    assert.equal(asOf.ok, true, JSON.stringify(asOf));
  }
  // Expired at its own creation: refused even as of then.
  const bornExpired = resign({
    ...daysOld,
    tags: [
      ['p', router],
      ['expiration', String(NOW - 3 * 86_400)],
    ],
  });
  const refused = await verifyEnvelope(bornExpired, {
    me: router,
    kinds: [KIND.nodeHeartbeat],
    asOfCreation: true,
  });
  assert.deepEqual(refused.ok ? 'ok' : refused.code, 'EXPIRED');
  // Everything else is still checked: a tampered copy fails.
  const tampered = await verifyEnvelope(
    { ...daysOld, content: daysOld.content.replace('2', '3') },
    {
      me: router,
      kinds: [KIND.nodeHeartbeat],
      asOfCreation: true,
    },
  );
  assert.deepEqual(tampered.ok ? 'ok' : tampered.code, 'BAD_ID');
});
