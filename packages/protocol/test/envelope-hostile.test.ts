// Issue #9 A: verifyEnvelope must never throw, whatever it is given; every refusal has a reason code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createEnvelope,
  generateSecretKey,
  isReasonCode,
  KIND,
  MemoryReplayStore,
  publicKeyOf,
  type ReplayStore,
  verifyEnvelope,
} from '../src/index';

const routerKey = generateSecretKey();
const nodeKey = generateSecretKey();
const router = publicKeyOf(routerKey);
const NOW = 1_800_000_000;
const DEPTH = 100_000;

const verify = (raw: unknown, replayStore?: ReplayStore) =>
  verifyEnvelope(raw, { me: router, kinds: [KIND.nodeHeartbeat], nowS: NOW, replayStore });

function deepArray(depth: number): unknown {
  let v: unknown = [];
  for (let i = 0; i < depth; i++) v = [v];
  return v;
}

function deepObject(depth: number): unknown {
  let v: unknown = {};
  for (let i = 0; i < depth; i++) v = { a: v };
  return v;
}

async function assertRefused(raw: unknown, name: string): Promise<string> {
  const result = await verify(raw);
  assert.equal(result.ok, false, name);
  if (result.ok) return '';
  assert.ok(isReasonCode(result.code), `${name}: ${result.code} is a reason code`);
  return result.code;
}

test('a 100,000-deep array or object, parsed or as text, is refused with a reason code (no RangeError)', async () => {
  const array = deepArray(DEPTH);
  const object = deepObject(DEPTH);
  assert.equal(await assertRefused(array, 'parsed array'), 'BAD_SHAPE');
  assert.equal(await assertRefused(object, 'parsed object'), 'BAD_SHAPE');
  // As text: 100,000 levels fit in 256 KiB only for arrays; both must be refused, never thrown.
  const arrayText = `${'['.repeat(DEPTH)}${']'.repeat(DEPTH)}`;
  assert.ok(['BAD_SHAPE', 'ENVELOPE_TOO_LARGE'].includes(await assertRefused(arrayText, 'array text')));
  const objectText = `${'{"a":'.repeat(DEPTH)}{}${'}'.repeat(DEPTH)}`;
  assert.equal(await assertRefused(objectText, 'object text'), 'ENVELOPE_TOO_LARGE');
  // With the size limit raised the deep text parses, and the depth bound still refuses it.
  const big = await verifyEnvelope(objectText, {
    me: router,
    kinds: [KIND.nodeHeartbeat],
    nowS: NOW,
    maxBytes: 4 * 1024 * 1024,
  });
  assert.equal(big.ok ? 'ok' : big.code, 'BAD_SHAPE');
});

test('a deep value hidden inside a well-formed envelope is refused', async () => {
  const good = createEnvelope(
    KIND.nodeHeartbeat,
    { free_slots: 1, queue_depth: 0, models_loaded: ['m'], ready: true },
    { audience: router, nowS: NOW },
    nodeKey,
  );
  assert.equal((await verify(good)).ok, true, 'the envelope itself verifies');
  assert.equal(await assertRefused({ ...good, extra: deepArray(DEPTH) }, 'extra field'), 'BAD_SHAPE');
  assert.equal(await assertRefused({ ...good, tags: deepArray(DEPTH) }, 'tags'), 'BAD_SHAPE');
  const text = JSON.stringify({ ...good, extra: deepArray(1000) });
  assert.equal(await assertRefused(text, 'extra field as text'), 'BAD_SHAPE');
});

test('cycles, BigInt, throwing getters, proxies and odd primitives are refused, never thrown', async () => {
  const cyclic: Record<string, unknown> = { id: 'x' };
  cyclic.self = cyclic;
  const getter = Object.defineProperty({}, 'id', {
    enumerable: true,
    get() {
      throw new Error('boom');
    },
  });
  const proxy = new Proxy(
    {},
    {
      ownKeys() {
        throw new Error('trap');
      },
    },
  );
  const wide = Object.fromEntries(Array.from({ length: 200_000 }, (_, i) => [`k${i}`, i]));
  const cases: [string, unknown][] = [
    ['cycle', cyclic],
    ['bigint', { id: 1n }],
    ['throwing getter', getter],
    ['proxy', proxy],
    ['wide object', wide],
    ['long array', new Array(300_000).fill(0)],
    ['undefined', undefined],
    ['symbol', Symbol('s')],
    ['function', () => 1],
    ['number', 42],
    ['lone surrogate text', '\ud800'],
  ];
  for (const [name, value] of cases) await assertRefused(value, name);
});

test('a failing replay store is a reason-coded refusal, not a throw', async () => {
  const good = createEnvelope(
    KIND.nodeHeartbeat,
    { free_slots: 1, queue_depth: 0, models_loaded: ['m'], ready: true },
    { audience: router, nowS: NOW },
    nodeKey,
  );
  const broken: ReplayStore = {
    checkAndRecord: async () => {
      throw new Error('db down');
    },
  } as unknown as ReplayStore;
  const result = await verify(JSON.stringify(good), broken);
  assert.equal(result.ok ? 'ok' : result.code, 'INTERNAL');
  assert.equal((await verify(JSON.stringify(good), new MemoryReplayStore())).ok, true);
});
