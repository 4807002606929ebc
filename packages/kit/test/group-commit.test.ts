import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FedAiError } from '@fed-ai/protocol';
import { GroupCommit } from '../src/group-commit';

test('a lone item is written at once; items arriving meanwhile share the next batch, in order', async () => {
  const batches: number[][] = [];
  let release: () => void = () => {};
  const gate = new Promise<void>((done) => {
    release = done;
  });
  const gc = new GroupCommit<number, number>(async (items) => {
    batches.push(items);
    if (batches.length === 1) await gate;
    return items.map((i) => ({ ok: true, value: i * 10 }));
  });
  const first = gc.submit(1);
  await new Promise((done) => setImmediate(done));
  assert.deepEqual(batches, [[1]], 'the first item did not wait for company');
  const rest = [2, 3, 4].map((i) => gc.submit(i));
  release();
  assert.deepEqual(await Promise.all([first, ...rest]), [10, 20, 30, 40]);
  assert.deepEqual(batches, [[1], [2, 3, 4]]);
});

test('with gatherTurn, items reached later in the same turn (after awaits) share the first batch', async () => {
  const batches: number[][] = [];
  const gc = new GroupCommit<number, number>(
    async (items) => {
      batches.push(items);
      return items.map((i) => ({ ok: true, value: i }));
    },
    { gatherTurn: true },
  );
  // Each caller reaches submit after a different number of microtask hops, as the ops of one
  // envelope do after their own async checks.
  const hops = async (n: number) => {
    for (let i = 0; i < n; i++) await Promise.resolve();
    return gc.submit(n);
  };
  assert.deepEqual(await Promise.all([hops(0), hops(3), hops(10)]), [0, 3, 10]);
  assert.deepEqual(batches, [[0, 3, 10]]);
  // Without it, the first goes alone.
  const plain: number[][] = [];
  const eager = new GroupCommit<number, number>(async (items) => {
    plain.push(items);
    return items.map((i) => ({ ok: true, value: i }));
  });
  await Promise.all(
    [0, 3, 10].map(async (n) => {
      for (let i = 0; i < n; i++) await Promise.resolve();
      return eager.submit(n);
    }),
  );
  assert.deepEqual(plain[0], [0]);
});

test('a batch that throws is retried item by item: only the poisonous item fails', async () => {
  const gc = new GroupCommit<number, number>(async (items) => {
    if (items.includes(13)) throw new Error('poison');
    return items.map((i) => ({ ok: true, value: i }));
  });
  const blocker = gc.submit(0); // occupies the writer so the next three are batched together
  const results = await Promise.allSettled([gc.submit(12), gc.submit(13), gc.submit(14)]);
  await blocker;
  assert.deepEqual(
    results.map((r) => (r.status === 'fulfilled' ? r.value : (r.reason as Error).message)),
    [12, 'poison', 14],
  );
});

test('per-item failures reach their own caller; a full queue refuses with OVERLOADED', async () => {
  const gc = new GroupCommit<number, number>(
    async (items) =>
      items.map((i) => (i % 2 ? { ok: false, error: new Error(`odd ${i}`) } : { ok: true, value: i })),
    { maxQueued: 2, maxBatch: 2 },
  );
  const a = gc.submit(2); // taken by the writer at once
  const b = gc.submit(3);
  const c = gc.submit(4);
  await assert.rejects(gc.submit(6), (e: unknown) => e instanceof FedAiError && e.code === 'OVERLOADED');
  assert.equal(await a, 2);
  await assert.rejects(b, /odd 3/);
  assert.equal(await c, 4);
});

test('a write that returns the wrong number of outcomes fails its items', async () => {
  const gc = new GroupCommit<number, number>(async () => []);
  await assert.rejects(gc.submit(1), /one outcome per item/);
});

test('with lingerMs a batch waits for company, and a full batch goes at once', async (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const batches: number[][] = [];
  const gc = new GroupCommit<number, number>(
    async (items) => {
      batches.push(items);
      return items.map((i) => ({ ok: true, value: i }));
    },
    { lingerMs: 20, maxBatch: 3 },
  );
  const first = gc.submit(1);
  await Promise.resolve();
  const second = gc.submit(2);
  await Promise.resolve();
  assert.deepEqual(batches, [], 'nothing is written before the linger ends');
  t.mock.timers.tick(20);
  assert.deepEqual(await Promise.all([first, second]), [1, 2]);
  assert.deepEqual(batches, [[1, 2]]);
  const full = [3, 4, 5].map((i) => gc.submit(i));
  assert.deepEqual(await Promise.all(full), [3, 4, 5], 'a full batch did not wait for the timer');
  assert.deepEqual(batches, [
    [1, 2],
    [3, 4, 5],
  ]);
});
