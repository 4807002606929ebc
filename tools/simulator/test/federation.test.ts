// Federation in the simulator: the router's real auction core decides (rfbFor, bidTermsFor,
// checkBid, rankBids); these tests check determinism, the invariants over every request including
// offloads, and that a router without local nodes gets its work served by the cheapest peer.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { offloadFeeMsat, splitCharge } from '@fed-ai/protocol';
import { renderFiles, runScenario } from '../src/run';
import { parseScenario, type Scenario } from '../src/scenario';
import { SCENARIO_DIR } from '../src/shell';
import { peakConcurrency, shortScenario } from './scenarios';

const TRACE = 1_000_000;

test('the federation scenario: the same seed reproduces every report file byte for byte', () => {
  const files = () => renderFiles(runScenario(shortScenario('federation', 60), { seed: 3 }).report);
  const a = files();
  const b = files();
  assert.ok(a.has('five-routers-federation.svg') && a.has('twenty-routers-federation.svg'));
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  for (const [name, text] of a) assert.equal(b.get(name), text, name);
  const report = JSON.parse(a.get('report.json')!);
  assert.deepEqual(
    report.variants.map((v: { routers: number }) => v.routers),
    [5, 3, 20],
  );
});

/** Every request, offloaded or not, checked from the trace; returns what the run exercised. */
function checkFederatedRun(scenario: Scenario) {
  const { report, sims } = runScenario(scenario, { traceLimit: TRACE });
  const bps = scenario.federation!.offloadFeeBps;
  let offloaded = 0;
  let refusedBids = 0;
  for (const [i, sim] of sims.entries()) {
    const v = report.variants[i]!;
    const label = `${scenario.name}/${v.variant}`;
    const fed = v.federation!;
    assert.equal(sim.trace.length, v.totals.requests, label);
    const limits = new Map(sim.nodes.map((n) => [n.id, n.group.spec.capacity.maxConcurrency]));
    for (const [node, peak] of peakConcurrency(sim.slots))
      assert.ok(peak <= limits.get(node)!, `${label}: ${node} ran ${peak} at once`);
    let paid = 0;
    let earned = 0;
    let routerFees = 0;
    let offloadFees = 0;
    for (const r of sim.trace) {
      assert.ok(r.servesModel, `${label}: ${r.id}`);
      // runChat offloads at most once per try, and offloaded work is never passed on.
      assert.ok((r.maxAuctionsInTry ?? 0) <= 1, `${label}: request ${r.id} auctioned twice in a try`);
      if (r.code === 'OK') {
        const price = r.price!;
        if (r.maxInputPrice !== null)
          assert.ok(price.input_msat_per_1k <= r.maxInputPrice, `${label}: ${r.id}`);
        if (r.maxOutputPrice !== null)
          assert.ok(price.output_msat_per_1k <= r.maxOutputPrice, `${label}: ${r.id}`);
        // The node that served belongs to the router that served it: the peer when offloaded.
        const server = sim.routers[r.offload ? r.offload.peer : r.router!]!;
        assert.ok(server.entries.has(r.node!), `${label}: ${r.id} served by a node its router does not own`);
        if (r.offload) assert.ok(!sim.routers[r.offload.origin]!.entries.has(r.node!), `${label}: ${r.id}`);
      }
      const peerCost = r.nodeMsat + r.routerMsat;
      assert.deepEqual(splitCharge(peerCost, scenario.routers.feeBps), {
        nodeMsat: r.nodeMsat,
        routerMsat: r.routerMsat,
      });
      const fee = r.offload?.offloadFeeMsat ?? 0;
      if (r.offload) {
        assert.equal(r.offload.peerCostMsat, peerCost, `${label}: ${r.id}`);
        assert.equal(fee, offloadFeeMsat(peerCost, bps), `${label}: ${r.id}`);
        assert.notEqual(r.offload.origin, r.offload.peer, `${label}: ${r.id}`);
        offloaded += 1;
      }
      assert.equal(r.clientPaidMsat, peerCost + fee, `${label}: ${r.id}`);
      if (r.clientPaidMsat > 0)
        assert.ok(
          r.reservedMsat !== null && r.clientPaidMsat <= r.reservedMsat,
          `${label}: ${r.id} over its hold`,
        );
      paid += r.clientPaidMsat;
      earned += r.nodeMsat;
      routerFees += r.routerMsat;
      offloadFees += fee;
    }
    // Client paid = node earnings + (peer and local) router fees + origin offload fees.
    assert.equal(paid, earned + routerFees + offloadFees, label);
    assert.equal(paid, v.money.clientPaidMsat, label);
    assert.equal(earned, v.money.nodeEarnedMsat, label);
    assert.equal(routerFees, v.money.routerFeeMsat, label);
    assert.equal(offloadFees, fed.offloadFeeMsat, label);
    assert.equal(
      offloadFees,
      fed.routers.reduce((s, r) => s + r.offloadFeeMsat, 0),
      label,
    );
    assert.equal(v.money.conserved, true, label);
    assert.equal(v.money.refundedMsat, v.money.reservedMsat - paid, label);
    assert.deepEqual(fed.invariants, { reoffloads: 0, offloadOverBid: 0 }, label);
    const inv = v.invariants;
    for (const key of [
      'overCapacity',
      'overQueue',
      'filterViolations',
      'splitMismatches',
      'chargeOverReservation',
      'negativeBalances',
      'leaks',
      'heldAfterDrainMsat',
      'balanceMismatches',
    ] as const)
      assert.equal(inv[key], 0, `${label}: ${key}`);
    assert.equal(inv.checkedRequests, v.totals.requests, label);
    assert.equal(fed.offloadsServed, sim.trace.filter((r) => r.offload).length, label);
    refusedBids += Object.values(fed.bids.refused).reduce((s, n) => s + (n ?? 0), 0);
  }
  return { offloaded, refusedBids };
}

test('federation: no node over capacity, money conserved, max price kept, nothing offloaded twice', () => {
  const r = checkFederatedRun(shortScenario('federation', 90));
  assert.ok(r.offloaded > 100, `offloads ${r.offloaded}`);
  assert.ok(r.refusedBids > 0, 'the misbidding router must be refused by checkBid');
});

/** Three routers: 0 owns nothing, 1 a cheap fleet, 2 an expensive one (3x); light load. */
function noLocalNodes(): Scenario {
  const base = JSON.parse(readFileSync(join(SCENARIO_DIR, 'federation.json'), 'utf8'));
  const group = (name: string, home: number, out: number) => ({
    ...base.nodes[0],
    group: name,
    home,
    count: 2,
    // Room to spare: both peers always have free slots, so both always bid.
    capacity: { maxConcurrency: 32, queueMax: 0 },
    price: { inputMsatPer1k: out / 3, outputMsatPer1k: out },
    priceSpreadBps: 0,
  });
  return parseScenario(
    JSON.stringify({
      ...base,
      name: 'no-local-nodes',
      durationS: 60,
      routers: { count: 3 },
      // A fixed 100 ms round trip: every bid arrives inside the 400 ms window.
      federation: { auctionWindowMs: 400, rfbRttMs: { median: 100, sigma: 0 } },
      nodes: [group('cheap', 1, 600), group('dear', 2, 1800)],
      clients: [{ ...base.clients[1], maxPrice: undefined, sort: 'price', share: 1 }],
      arrivals: { ratePerS: 2 },
      variants: [],
    }),
  );
}

test('a router with no local nodes gets its requests served by peers: the cheapest bid wins on price', () => {
  const { report, sims } = runScenario(noLocalNodes(), { traceLimit: TRACE });
  const sim = sims[0]!;
  const fromZero = sim.trace.filter((r) => r.router === 0 && r.code === 'OK');
  assert.ok(fromZero.length > 20, `answers via router 0: ${fromZero.length}`);
  for (const r of fromZero) {
    assert.deepEqual({ origin: r.offload?.origin, peer: r.offload?.peer }, { origin: 0, peer: 1 }, `${r.id}`);
    assert.ok(r.node!.startsWith('cheap-'), r.node!);
  }
  // Routers 1 and 2 serve their own requests locally: only router 0 auctions.
  const fed = report.variants[0]!.federation!;
  assert.equal(fed.bids.late, 0);
  assert.equal(fed.bids.accepted, 2 * fed.auctions, 'both peers bid in every auction');
  // Both peers answered, so each auction closed early, one round trip after the RFB.
  assert.ok(fed.auctionMs.p99 < 110, `auction p99 ${fed.auctionMs.p99}`);
  assert.equal(fed.routers[0]!.auctions, fed.auctions);
  assert.equal(fed.routers[0]!.nodes, 0);
  assert.ok(fed.routers[1]!.servedForPeers >= fromZero.length);
});

test('a federation needs 2+ routers and pay-before; home only with a federation', () => {
  const base = JSON.parse(readFileSync(join(SCENARIO_DIR, 'federation.json'), 'utf8'));
  assert.throws(
    () => parseScenario(JSON.stringify({ ...base, variants: [{ name: 'one', routers: 1 }] })),
    /2 routers/,
  );
  assert.throws(() => parseScenario(JSON.stringify({ ...base, payment: 'after' })), /payment/);
  const { federation: _, ...plain } = base;
  assert.throws(() => parseScenario(JSON.stringify(plain)), /home/);
});
