// Spending leases (spending-leases.ts): a lease is opened at settlement before anything is drawn
// from it; what its draws hold plus what they spent never exceeds it; a small tab gets none;
// leases close once idle and drained, on demand and on close; a refused opening holds nothing.
// Settlement here is a double of the router's two lease calls that keeps each lease's money and
// refuses a capture the lease cannot cover, as settlement's ledger does.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FedAiError } from '@fed-ai/protocol';
import fc from 'fast-check';
import { bucketOf, type Draw, isLeaseId, mayLease, SpendingLeases } from '../src/spending-leases';

/** Settlement's side of leases: a tab that openings draw down and closes fill back up. */
function settlementDouble(balanceMsat: number) {
  const leases = new Map<string, { payer: string; amountMsat: number; spentMsat: number; closed: boolean }>();
  const state = { balanceMsat, opens: 0, closes: 0, overdrawn: 0 };
  return {
    leases,
    state,
    open: async (leaseId: string, payer: string, amountMsat: number) => {
      await new Promise((done) => setImmediate(done));
      state.opens += 1;
      if (amountMsat > state.balanceMsat) throw new FedAiError('INSUFFICIENT_BALANCE');
      state.balanceMsat -= amountMsat;
      leases.set(leaseId, { payer, amountMsat, spentMsat: 0, closed: false });
      return { balanceMsat: state.balanceMsat };
    },
    close: async (leaseId: string) => {
      await new Promise((done) => setImmediate(done)); // a round trip
      state.closes += 1;
      const lease = leases.get(leaseId);
      if (!lease || lease.closed) return;
      lease.closed = true;
      state.balanceMsat += lease.amountMsat - lease.spentMsat;
    },
    /** A capture from the lease: refused (the tab pays) when it does not fit. */
    capture(draw: Draw, costMsat: number): void {
      const lease = leases.get(draw.leaseId);
      if (!lease || lease.closed || lease.spentMsat + costMsat > lease.amountMsat) {
        state.overdrawn += 1;
        state.balanceMsat -= costMsat;
        return;
      }
      lease.spentMsat += costMsat;
    },
  };
}

/**
 * Lets the double's round trips (one setImmediate each, a few in a chain) run. Counted in event-loop
 * turns, not milliseconds: a 5 ms timer could fire before a queued setImmediate on a loaded machine
 * (a fresh-clone run failed so in session 15).
 */
const turn = async () => {
  for (let i = 0; i < 20; i++) await new Promise((done) => setImmediate(done));
};

test('bucketOf, mayLease and lease ids', () => {
  for (let amount = 1; amount < 5_000; amount += 7) {
    const bucket = bucketOf(amount);
    assert.ok(bucket >= amount && bucket < 2 * amount + 1, `${amount} -> ${bucket}`);
    assert.equal(bucket & (bucket - 1), 0);
  }
  assert.equal(mayLease(undefined, 1024, 10), false);
  assert.equal(mayLease(10_240, 1024, 10), true);
  assert.equal(mayLease(10_239, 1024, 10), false);
  assert.equal(isLeaseId('ls-1234'), true);
  assert.equal(isLeaseId('rq-1234'), false);
});

test('a small tab gets no lease: every request reserves on the spot', async () => {
  const s = settlementDouble(5_000);
  const leases = new SpendingLeases({ ...s, leaseRequests: 8, balanceMultiple: 10, maxDrawAgeMs: 60_000 });
  leases.noteBalance('p', 100, 5_000); // 5,000 < 10 x 8 x 128
  await turn();
  assert.equal(s.state.opens, 0);
  assert.equal(leases.take('p', 100), null);
});

test('a well-funded payer draws from one lease; draws never exceed it, and it is renewed before it runs out', async () => {
  const s = settlementDouble(10_000_000);
  const leases = new SpendingLeases({ ...s, leaseRequests: 8, balanceMultiple: 10, maxDrawAgeMs: 60_000 });
  assert.equal(leases.take('p', 100), null, 'no lease before the balance is known');
  leases.noteBalance('p', 100, s.state.balanceMsat);
  await turn();
  assert.equal(s.leases.size, 1);
  const [leaseId, lease] = [...s.leases][0]!;
  assert.equal(lease.amountMsat, 8 * 128);
  // Ten draws of 100 fit in 1,024 msat; the eleventh does not.
  const draws = Array.from({ length: 10 }, () => leases.take('p', 100));
  assert.ok(draws.every((d) => d?.leaseId === leaseId && d.amountMsat === 100));
  assert.equal(leases.take('p', 100), null, 'no draw past the lease');
  // Each request spent 40 of its 100: their bounds come back, less what they spent.
  for (const d of draws) {
    s.capture(d!, 40);
    leases.settle(d!, 40, true);
    leases.confirmed(d!);
  }
  await turn();
  assert.equal(s.leases.size, 2, 'a new lease was opened when the first ran short');
  assert.ok(s.leases.get(leaseId)!.closed, 'the first, drained, was closed');
  assert.equal(s.state.balanceMsat, 10_000_000 - 400 - 8 * 128, 'the first gave back all but its 400');
  assert.equal(s.state.overdrawn, 0);
  assert.equal(leases.take('other', 100), null, 'another payer has its own leases');
  await leases.close();
  assert.equal(s.state.balanceMsat, 10_000_000 - 400, 'close gives back every lease');
});

test('property: whatever the order of draws, costs, failures and confirmations, no lease is ever overdrawn', async () => {
  await fc.assert(
    fc.asyncProperty(
      fc.array(
        fc.record({
          kind: fc.constantFrom('take', 'take', 'take', 'end', 'fail', 'confirm', 'wait', 'idle', 'release'),
          bound: fc.integer({ min: 1, max: 600 }),
          costShare: fc.double({ min: 0, max: 1, noNaN: true }),
          pick: fc.nat(),
        }),
        { maxLength: 120 },
      ),
      async (steps) => {
        let nowMs = 0;
        const s = settlementDouble(100_000);
        const leases = new SpendingLeases({
          ...s,
          leaseRequests: 4,
          maxLeaseRequests: 16,
          balanceMultiple: 10,
          idleMs: 1_000,
          maxDrawAgeMs: 30_000,
          now: () => nowMs,
        });
        leases.noteBalance('p', 100, 100_000);
        const running: Draw[] = [];
        const capturing: Draw[] = [];
        // Not awaited in the loop: a release waits for its idle leases' captures to be confirmed,
        // and only this loop confirms them (awaiting it there hung the run when one was pending).
        const releases: Promise<void>[] = [];
        for (const step of steps) {
          if (step.kind === 'take') {
            const draw = leases.take('p', step.bound);
            if (draw) running.push(draw);
          } else if ((step.kind === 'end' || step.kind === 'fail') && running.length > 0) {
            const [draw] = running.splice(step.pick % running.length, 1);
            const cost = step.kind === 'fail' ? 0 : Math.floor(draw!.amountMsat * step.costShare);
            if (cost > 0) s.capture(draw!, cost);
            leases.settle(draw!, cost, cost > 0);
            if (cost > 0) capturing.push(draw!);
          } else if (step.kind === 'confirm' && capturing.length > 0) {
            leases.confirmed(capturing.splice(step.pick % capturing.length, 1)[0]!);
          } else if (step.kind === 'wait') {
            await turn();
          } else if (step.kind === 'idle') {
            nowMs += 1_500;
            leases.retireIdle();
          } else if (step.kind === 'release') {
            releases.push(leases.releasePayer('p'));
          }
          // Every open lease covers what its running draws may still spend plus what it spent.
          for (const [id, lease] of s.leases) {
            const bounds = running.filter((d) => d.leaseId === id).reduce((sum, d) => sum + d.amountMsat, 0);
            if (!lease.closed)
              assert.ok(lease.spentMsat + bounds <= lease.amountMsat, `lease ${id} over-drawn`);
          }
        }
        assert.equal(s.state.overdrawn, 0, 'no capture ever found its lease short or closed');
        for (const d of capturing) leases.confirmed(d);
        for (const d of running) leases.settle(d, 0, false);
        await Promise.all(releases);
        await leases.close(); // returns once every opening and close on its way has ended
        assert.ok(
          [...s.leases.values()].every((l) => l.closed),
          'every lease closed',
        );
        const spent = [...s.leases.values()].reduce((sum, l) => sum + l.spentMsat, 0);
        assert.equal(s.state.balanceMsat, 100_000 - spent, 'every msat not spent came back');
      },
    ),
    { numRuns: 150 },
  );
});

test('close waits for an opening on its way and closes its lease: nothing is opened or left open after it returns', async () => {
  const s = settlementDouble(10_000_000);
  const leases = new SpendingLeases({ ...s, leaseRequests: 8, balanceMultiple: 10, maxDrawAgeMs: 60_000 });
  leases.noteBalance('p', 100, s.state.balanceMsat); // the opening is on its way (a round trip)
  await leases.close();
  const after = { opens: s.state.opens, leases: s.leases.size, balanceMsat: s.state.balanceMsat };
  assert.equal(after.opens, 1, 'the opening had reached settlement');
  assert.ok(
    [...s.leases.values()].every((l) => l.closed),
    'and its lease is closed',
  );
  for (let i = 0; i < 3; i++) await turn();
  assert.deepEqual(
    { opens: s.state.opens, leases: s.leases.size, balanceMsat: s.state.balanceMsat },
    after,
    'nothing happens after close returned',
  );
  assert.equal(s.state.balanceMsat, 10_000_000, 'every msat came back');
});

test('an idle lease closes; one with a request running closes when it ends and its capture is confirmed; close closes the rest', async () => {
  let nowMs = 0;
  const s = settlementDouble(10_000_000);
  const leases = new SpendingLeases({
    ...s,
    leaseRequests: 4,
    balanceMultiple: 10,
    idleMs: 1_000,
    maxDrawAgeMs: 60_000,
    now: () => nowMs,
  });
  for (const payer of ['a', 'b']) leases.noteBalance(payer, 100, s.state.balanceMsat);
  await turn();
  const [aLease, bLease] = [...s.leases.values()];
  const running = leases.take('a', 100)!;
  nowMs = 1_500;
  leases.retireIdle();
  await turn();
  assert.equal(bLease!.closed, true, "b's idle lease closed");
  assert.equal(aLease!.closed, false, "a's lease is not idle: a request is running");
  const another = leases.take('a', 100);
  assert.equal(another?.leaseId, running.leaseId, 'and it still takes draws');
  leases.settle(another!, 0, false);
  await leases.releasePayer('a');
  assert.equal(aLease!.closed, false, 'releasePayer does not wait for a running request');
  assert.equal(leases.take('a', 100), null, 'but the lease takes no more draws');
  s.capture(running, 60);
  leases.settle(running, 60, true);
  await turn();
  assert.equal(aLease!.closed, false, 'not before its capture is confirmed');
  leases.confirmed(running);
  await turn();
  assert.equal(aLease!.closed, true, 'closed once drained');
  // A request that ended but whose capture is still on its way: releasePayer waits for it.
  leases.noteBalance('d', 100, s.state.balanceMsat);
  await turn();
  const dLease = [...s.leases.values()].find((l) => l.payer === 'd');
  const ended = leases.take('d', 100)!;
  s.capture(ended, 30);
  leases.settle(ended, 30, true);
  let released = false;
  const releasing = leases.releasePayer('d').then(() => {
    released = true;
  });
  await turn();
  assert.equal(released, false);
  leases.confirmed(ended);
  await releasing;
  assert.equal(dLease!.closed, true);
  leases.noteBalance('c', 100, s.state.balanceMsat);
  await turn();
  const cLease = [...s.leases.values()].find((l) => l.payer === 'c');
  await leases.releasePayer('c');
  assert.equal(cLease?.closed, true, 'an idle lease is closed by the time releasePayer resolves');
  leases.noteBalance('c', 100, s.state.balanceMsat);
  await turn();
  await leases.close();
  assert.ok([...s.leases.values()].every((l) => l.closed));
  const leasesAtClose = s.leases.size;
  leases.noteBalance('e', 100, s.state.balanceMsat);
  await turn();
  assert.equal(s.leases.size, leasesAtClose, 'no lease opened after close');
  assert.equal(s.state.balanceMsat, 10_000_000 - 90);
});

test('a refused or failed opening holds no lease and is closed (it may have been made)', async () => {
  const s = settlementDouble(10_000_000);
  /** Leases whose every opening fails with `code`; errors reported go to `errors`. */
  const failingOpens = (code: 'SETTLEMENT_UNAVAILABLE' | 'INSUFFICIENT_BALANCE', errors: unknown[]) =>
    new SpendingLeases({
      open: async () => {
        throw new FedAiError(code);
      },
      close: s.close,
      leaseRequests: 4,
      balanceMultiple: 10,
      maxDrawAgeMs: 60_000,
      onError: (e) => errors.push(e),
    });
  const errors: unknown[] = [];
  const leases = failingOpens('SETTLEMENT_UNAVAILABLE', errors);
  leases.noteBalance('p', 100, s.state.balanceMsat);
  await turn();
  assert.equal(leases.take('p', 100), null);
  assert.equal(s.state.closes, 1, 'the unknown opening is closed');
  assert.equal(errors.length, 1);
  // A refusal for the balance is expected, not an error.
  const quiet: unknown[] = [];
  const refused = failingOpens('INSUFFICIENT_BALANCE', quiet);
  refused.noteBalance('p', 100, 10_000_000);
  await turn();
  assert.equal(quiet.length, 0);
});

test('leases found short while in use grow (doubling, capped, only as far as the balance covers); an old lease stops taking draws', async () => {
  let nowMs = 0;
  const run = async (balanceMsat: number) => {
    const s = settlementDouble(balanceMsat);
    const leases = new SpendingLeases({
      ...s,
      leaseRequests: 4,
      maxLeaseRequests: 16,
      balanceMultiple: 10,
      maxDrawAgeMs: 10_000,
      now: () => nowMs,
    });
    leases.noteBalance('p', 128, s.state.balanceMsat);
    await turn();
    // Bursts that take everything there is and then find it short, again and again.
    for (let burst = 0; burst < 8; burst++) {
      const drawn: Draw[] = [];
      for (let d = leases.take('p', 128); d; d = leases.take('p', 128)) drawn.push(d);
      for (const d of drawn) leases.settle(d, 0, false);
      await turn();
    }
    return { s, leases, sizes: [...s.leases.values()].map((l) => l.amountMsat / 128) };
  };
  const rich = await run(10_000_000);
  assert.equal(rich.sizes[0], 4);
  assert.ok(rich.sizes.includes(8) && rich.sizes.includes(16), `${rich.sizes}`);
  assert.ok(Math.max(...rich.sizes) === 16, 'capped at maxLeaseRequests');
  await rich.leases.close();
  // 10 x 8 x 128 = 10,240 fits in 12,000, 10 x 16 x 128 does not: never more than 8.
  const modest = await run(12_000);
  assert.ok(Math.max(...modest.sizes) === 8, `${modest.sizes}`);
  assert.ok(
    modest.sizes.length >= 6,
    `smaller leases keep coming when a bigger one is not covered: ${modest.sizes}`,
  );
  // At half the draw age a new lease is opened; at the draw age the old one takes nothing.
  nowMs = 0;
  const aging = await run(10_000_000);
  const before = aging.s.leases.size;
  nowMs = 5_000;
  assert.notEqual(aging.leases.take('p', 128), null);
  await turn();
  assert.equal(aging.s.leases.size, before + 1, 'renewed at half the draw age');
  nowMs = 15_000;
  assert.equal(aging.leases.take('p', 128), null, 'too old to draw from');
  await turn();
  assert.notEqual(aging.leases.take('p', 128), null, 'a fresh lease');
  await aging.leases.close();
  for (const r of [rich, modest, aging]) assert.equal(r.s.state.overdrawn, 0);
});
