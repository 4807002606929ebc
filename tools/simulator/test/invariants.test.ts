// Invariants over every simulated request, checked from the outside (the per-request trace and
// slot records), not only through the engine's own counters.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { splitCharge } from '@fed-ai/protocol';
import { runScenario } from '../src/run';
import type { Scenario } from '../src/scenario';
import { peakConcurrency, shortScenario } from './scenarios';

const TRACE = 1_000_000;

function checkRun(scenario: Scenario): {
  requests: number;
  failovers: number;
  refundedMsat: number;
  refused: number;
} {
  const { report, sims } = runScenario(scenario, { traceLimit: TRACE });
  let requests = 0;
  let failovers = 0;
  let refundedMsat = 0;
  let refused = 0;
  for (const [i, sim] of sims.entries()) {
    const v = report.variants[i]!;
    const label = `${scenario.name}/${v.variant}`;
    assert.ok(sim.trace.length < TRACE, `${label}: trace not cut`);
    assert.equal(sim.trace.length, v.totals.requests, `${label}: one record per request`);
    // No node ever ran more generations at once than its max_concurrency.
    const limits = new Map(sim.nodes.map((n) => [n.id, n.group.spec.capacity.maxConcurrency]));
    for (const [node, peak] of peakConcurrency(sim.slots))
      assert.ok(peak <= limits.get(node)!, `${label}: ${node} ran ${peak} at once`);
    // Utilisation is busy slot time within the simulated duration over capacity: never above 1.
    for (const row of [...v.nodes, ...v.groups])
      assert.ok(row.utilisation >= 0 && row.utilisation <= 1, `${label}: utilisation ${row.utilisation}`);
    for (const point of v.timeline) assert.ok(point.utilisation <= 1, `${label}: ${point.tS} s`);
    let paid = 0;
    let earned = 0;
    let fees = 0;
    for (const r of sim.trace) {
      assert.ok(r.servesModel, `${label}: request ${r.id} went to a node without its model`);
      if (r.code === 'OK') {
        const price = r.price!;
        if (r.maxInputPrice !== null) assert.ok(price.input_msat_per_1k <= r.maxInputPrice, label);
        if (r.maxOutputPrice !== null) assert.ok(price.output_msat_per_1k <= r.maxOutputPrice, label);
      }
      // Each charge splits exactly as settlement splits it; pay-before never charges above the hold.
      assert.equal(r.nodeMsat + r.routerMsat, r.clientPaidMsat, `${label}: request ${r.id}`);
      assert.deepEqual(splitCharge(r.clientPaidMsat, scenario.routers.feeBps), {
        nodeMsat: r.nodeMsat,
        routerMsat: r.routerMsat,
      });
      if (v.payment === 'before' && r.clientPaidMsat > 0)
        assert.ok(r.reservedMsat !== null && r.clientPaidMsat <= r.reservedMsat, `${label}: ${r.id}`);
      paid += r.clientPaidMsat;
      earned += r.nodeMsat;
      fees += r.routerMsat;
    }
    // Money conserved: client payments = node earnings + router fees, and the totals agree.
    assert.equal(paid, earned + fees, label);
    assert.equal(paid, v.money.clientPaidMsat, label);
    assert.equal(
      earned,
      sim.nodes.reduce((s, n) => s + n.earningsMsat, 0),
      label,
    );
    assert.equal(
      fees,
      sim.routers.reduce((s, r) => s + r.feeMsat, 0),
      label,
    );
    assert.equal(v.money.conserved, true, label);
    if (v.payment === 'before') assert.equal(v.money.refundedMsat, v.money.reservedMsat - paid, label);
    const inv = v.invariants;
    assert.deepEqual(
      { ...inv, checkedRequests: 0 },
      {
        overCapacity: 0,
        overQueue: 0,
        filterViolations: 0,
        splitMismatches: 0,
        chargeOverReservation: 0,
        negativeBalances: 0,
        reservationMismatches: 0,
        leaks: 0,
        heldAfterDrainMsat: 0,
        balanceMismatches: 0,
        checkedRequests: 0,
      },
      label,
    );
    assert.equal(inv.checkedRequests, v.totals.requests, label);
    requests += v.totals.requests;
    failovers += v.totals.failovers;
    refundedMsat += v.money.refundedMsat;
    refused += v.groups.reduce((sum, g) => sum + g.refused, 0);
  }
  return { requests, failovers, refundedMsat, refused };
}

test('steady market with a max-price population: filters hold, money is conserved', () => {
  const r = checkRun(shortScenario('steady-market', 90));
  assert.ok(r.requests > 1_000);
  assert.ok(r.refundedMsat > 0);
});

test('a flaky node with crashes: failover happens and every invariant still holds', () => {
  const r = checkRun(shortScenario('flaky-giant', 180));
  assert.ok(r.failovers > 0, 'the scenario must exercise failover');
});

test('herding routers overload nodes: capacity is never exceeded', () => {
  const r = checkRun(shortScenario('herding', 40));
  assert.ok(r.refused > 0, 'the scenario must overload nodes (429)');
});

test('limited prepaid tabs, pay-before and pay-after: balances and holds add up', () => {
  checkRun(shortScenario('pay-before-vs-after', 120));
});

test('a fleet crash and recovery: nothing leaks', () => {
  checkRun(shortScenario('fleet-outage', 120));
});

test('the capacity check itself catches an overlap', () => {
  const peaks = peakConcurrency([
    { node: 'a', startMs: 0, endMs: 10 },
    { node: 'a', startMs: 5, endMs: 15 },
    { node: 'a', startMs: 10, endMs: 20 },
    { node: 'b', startMs: 0, endMs: 1 },
  ]);
  assert.equal(peaks.get('a'), 2);
  assert.equal(peaks.get('b'), 1);
});
