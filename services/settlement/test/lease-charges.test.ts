// The plan for a batch's captures from leases (lease-charges.ts), checked against its definition
// for any batch: each capture has exactly one fate (a repeat of an earlier one in the batch, or
// paid by its lease's chain); each lease's chain moves exactly the sum of its
// captures' parts to each receiving account, links its transfers together and nothing else.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { type LeaseCapture, planLeaseCharges, sameCharge } from '../src/lease-charges';

const capture = fc
  .record({
    op: fc.integer({ min: 0, max: 9 }),
    lease: fc.integer({ min: 0, max: 2 }),
    node: fc.integer({ min: 0, max: 1 }),
    nodeMsat: fc.integer({ min: 0, max: 5_000 }),
    feeMsat: fc.integer({ min: 0, max: 500 }),
  })
  .filter((c) => c.nodeMsat + c.feeMsat > 0)
  .map(
    (c): LeaseCapture => ({
      opId: `op-${c.op}`,
      leaseAccount: `lease:${c.lease}`,
      tab: `tab:payer-${c.lease}`,
      node: `node-${c.node}`,
      amountMsat: c.nodeMsat + c.feeMsat,
      parts: [
        { id: `pay:op-${c.op}`, account: `earnings:node-${c.node}`, amountMsat: c.nodeMsat },
        { id: `fee:op-${c.op}`, account: 'router_fees', amountMsat: c.feeMsat },
      ],
    }),
  );

test('every capture gets one fate and each lease chain moves exactly its captures parts (property)', () => {
  fc.assert(
    fc.property(fc.array(capture, { maxLength: 40 }), (captures) => {
      const plan = planLeaseCharges('b1', captures);
      assert.equal(plan.fates.length, captures.length);
      const firstAt = new Map<string, number>();
      captures.forEach((c, i) => {
        const fate = plan.fates[i]!;
        if (firstAt.has(c.opId)) {
          assert.equal(fate.kind, 'duplicate');
          assert.equal(fate.kind === 'duplicate' && fate.of, firstAt.get(c.opId));
        } else {
          firstAt.set(c.opId, i);
          assert.equal(fate.kind, 'group');
        }
      });
      const inGroups = plan.groups.flatMap((g) => g.captures).sort((a, b) => a - b);
      const grouped = plan.fates.flatMap((f, i) => (f.kind === 'group' ? [i] : []));
      assert.deepEqual(inGroups, grouped, 'each paid capture is in exactly one chain');
      assert.equal(new Set(plan.transfers.map((t) => t.id)).size, plan.transfers.length);
      let end = 0;
      plan.groups.forEach((g, k) => {
        assert.equal(g.from, end, 'chains are consecutive');
        end = g.to;
        const chain = plan.transfers.slice(g.from, g.to);
        assert.ok(chain.length > 0);
        chain.forEach((t, n) => {
          assert.equal(t.debitAccountId, g.leaseAccount);
          assert.equal(t.kind, 'single');
          assert.ok(t.amountMsat > 0);
          assert.equal(Boolean(t.linked), n < chain.length - 1, 'linked up to the last');
        });
        const want = new Map<string, number>();
        for (const i of g.captures) {
          assert.equal(captures[i]!.leaseAccount, g.leaseAccount);
          assert.deepEqual(plan.fates[i], { kind: 'group', group: k });
          for (const p of captures[i]!.parts)
            if (p.amountMsat > 0) want.set(p.account, (want.get(p.account) ?? 0) + p.amountMsat);
        }
        assert.deepEqual(new Map(chain.map((t) => [t.creditAccountId, t.amountMsat])), want);
      });
      assert.equal(end, plan.transfers.length);
    }),
    { numRuns: 300 },
  );
});

test('a repeat in the batch follows its first occurrence only when it is the same charge', () => {
  const [a] = fc.sample(capture, { numRuns: 1, seed: 7 });
  const other = { ...a!, amountMsat: a!.amountMsat + 1 };
  const otherLease = { ...a!, leaseAccount: 'lease:elsewhere' };
  const plan = planLeaseCharges('b2', [a!, a!, other, otherLease]);
  assert.deepEqual(plan.fates, [
    { kind: 'group', group: 0 },
    { kind: 'duplicate', of: 0, same: true },
    { kind: 'duplicate', of: 0, same: false },
    { kind: 'duplicate', of: 0, same: false },
  ]);
  assert.equal(plan.groups.length, 1);
  assert.equal(
    plan.transfers.reduce((sum, t) => sum + t.amountMsat, 0),
    a!.amountMsat,
    'moved once',
  );
});

test('a charge row is the same charge only with the same tab, node and amount', () => {
  const charge = { tab: 'tab:p', node: 'n', amountMsat: 5000 };
  assert.ok(sameCharge(charge, { account: 'tab:p', node: 'n', amountMsat: 5000 }));
  assert.ok(!sameCharge(charge, { account: 'tab:q', node: 'n', amountMsat: 5000 }));
  assert.ok(!sameCharge(charge, { account: 'tab:p', node: 'm', amountMsat: 5000 }));
  assert.ok(!sameCharge(charge, { account: 'tab:p', node: 'n', amountMsat: 5001 }));
});
