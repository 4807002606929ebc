// Reservations held ahead: each slot is a settlement reservation made before it is handed out,
// handed to one request only, never for a small tab, and given back when idle or on close.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FedAiError } from '@fed-ai/protocol';
import { bucketOf, mayHoldAhead, ReserveAhead } from '../src/reserve-ahead';

/** Settlement as the pool sees it: a balance that reservations draw down and releases give back. */
function fakeSettlement(balanceMsat: number) {
  const held = new Map<string, number>();
  const released: string[] = [];
  const state = { balanceMsat };
  return {
    held,
    released,
    state,
    reserve: async (opId: string, _payer: string, amountMsat: number) => {
      await new Promise((done) => setImmediate(done));
      if (amountMsat > state.balanceMsat) throw new FedAiError('INSUFFICIENT_BALANCE');
      state.balanceMsat -= amountMsat;
      held.set(opId, amountMsat);
      return { balanceMsat: state.balanceMsat };
    },
    release: async (opId: string) => {
      released.push(opId);
      const amount = held.get(opId);
      if (amount === undefined) return;
      held.delete(opId);
      state.balanceMsat += amount;
    },
  };
}

const settle = () => new Promise((done) => setTimeout(done, 20));

test('bucketOf: the smallest power of two that covers the amount', () => {
  for (let amount = 1; amount < 5_000; amount += 7) {
    const bucket = bucketOf(amount);
    assert.ok(bucket >= amount && bucket < 2 * amount + 1, `${amount} -> ${bucket}`);
    assert.equal(bucket & (bucket - 1), 0);
  }
  assert.equal(mayHoldAhead(undefined, 8, 128, 10), false);
  assert.equal(mayHoldAhead(8 * 128 * 10, 8, 128, 10), true);
  assert.equal(mayHoldAhead(8 * 128 * 10 - 1, 8, 128, 10), false);
});

test('a small tab gets no slots: every request reserves on the spot', async () => {
  const s = fakeSettlement(5_000);
  const pool = new ReserveAhead({ ...s, slotsPerBucket: 8, balanceMultiple: 10 });
  pool.noteBalance('p', 100, 5_000); // 5,000 < 10 x 8 x 128
  await settle();
  assert.equal(pool.held, 0);
  assert.equal(pool.take('p', 100), null);
  assert.equal(s.held.size, 0);
});

test('a well-funded payer: slots are held first, each handed out once, covering the request', async () => {
  const s = fakeSettlement(10_000_000);
  const pool = new ReserveAhead({ ...s, slotsPerBucket: 8, balanceMultiple: 10 });
  pool.noteBalance('p', 100, s.state.balanceMsat);
  await settle();
  assert.equal(pool.held, 8);
  const taken = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const slot = pool.take('p', 90 + (i % 30)); // amounts 90..119, all in the 128 bucket
    if (slot) {
      assert.ok(slot.amountMsat >= 119);
      assert.ok(s.held.has(slot.opId), 'handed out only once it is held at settlement');
      assert.ok(!taken.has(slot.opId), 'never handed out twice');
      taken.add(slot.opId);
    }
    if (i % 5 === 0) await settle(); // refills run meanwhile
  }
  assert.ok(taken.size > 8, 'taking refills the bucket in the background');
  assert.equal(pool.take('other', 100), null, 'another payer has its own (empty) pool');
  assert.equal(pool.take('p', 200), null, 'a larger request is another bucket');
  await pool.close();
});

test('idle slots are given back; a payer’s slots are given back on demand; close gives back all', async () => {
  let nowMs = 0;
  const s = fakeSettlement(10_000_000);
  const pool = new ReserveAhead({
    ...s,
    slotsPerBucket: 4,
    balanceMultiple: 10,
    idleMs: 1_000,
    now: () => nowMs,
  });
  pool.noteBalance('a', 100, s.state.balanceMsat);
  pool.noteBalance('b', 100, s.state.balanceMsat);
  await settle();
  assert.equal(s.held.size, 8);
  nowMs = 500;
  await pool.releaseIdle();
  assert.equal(s.held.size, 8, 'not idle yet');
  await pool.releaseIdle('a');
  assert.equal(pool.take('a', 100), null);
  assert.equal(s.held.size, 4, "a's slots went back at once");
  nowMs = 1_001;
  await pool.releaseIdle();
  assert.equal(s.held.size, 0, 'idle slots went back');
  assert.equal(s.state.balanceMsat, 10_000_000, 'every msat is back');
  pool.noteBalance('a', 100, s.state.balanceMsat);
  await settle();
  await pool.close();
  assert.equal(s.held.size, 0, 'close gives back every slot');
  pool.noteBalance('a', 100, s.state.balanceMsat);
  await settle();
  assert.equal(s.held.size, 0, 'no refill after close');
});

test('a refused or failed reservation adds no slot and is released', async () => {
  const s = fakeSettlement(10_000_000);
  const errors: unknown[] = [];
  let fail = 0;
  const pool = new ReserveAhead({
    reserve: async (opId, payer, amount) => {
      fail += 1;
      if (fail % 2 === 0) throw new FedAiError('SETTLEMENT_UNAVAILABLE');
      return s.reserve(opId, payer, amount);
    },
    release: s.release,
    slotsPerBucket: 6,
    balanceMultiple: 10,
    onError: (e) => errors.push(e),
  });
  pool.noteBalance('p', 100, s.state.balanceMsat);
  await settle();
  assert.equal(pool.held, 3);
  assert.equal(s.held.size, 3, 'only the reservations that were made are held');
  assert.equal(s.released.length, 3, 'each failed one is released (it may have been made)');
  assert.equal(errors.length, 3);
  await pool.close();
});

test('a bucket found empty while in use grows (doubling, capped), only as far as the balance covers; idle resets it', async () => {
  // Available balance covers 10 × 32 slots of the 128 bucket after the first bursts, never 10 × 64.
  const s = fakeSettlement(10 * 48 * 128);
  let now = 0;
  const pool = new ReserveAhead({
    ...s,
    slotsPerBucket: 8,
    maxSlotsPerBucket: 64,
    balanceMultiple: 10,
    idleMs: 1_000,
    now: () => now,
  });
  pool.noteBalance('p', 100, s.state.balanceMsat);
  await settle();
  assert.equal(pool.held, 8);
  // A burst takes every slot and finds the bucket empty: the next refill holds twice as many.
  const burst = () => {
    let taken = 0;
    while (pool.take('p', 100)) taken += 1;
    return taken;
  };
  assert.equal(burst(), 8);
  await settle();
  assert.equal(pool.held, 16, 'doubled after the bucket ran dry');
  assert.equal(burst(), 16);
  await settle();
  assert.equal(pool.held, 32);
  assert.equal(burst(), 32);
  await settle();
  assert.equal(pool.held, 32, '64 were wanted, but the balance covers 10 × 32 only');
  assert.ok(s.state.balanceMsat >= 10 * 32 * 128 - 32 * 128, 'the balance rule held at every refill');
  now += 5_000;
  await pool.releaseIdle();
  assert.equal(pool.held, 0);
  for (const opId of [...s.held.keys()]) await s.release(opId);
  pool.noteBalance('p', 100, s.state.balanceMsat);
  await settle();
  assert.equal(pool.held, 8, 'after idling the bucket starts small again');
  await pool.close();
});
