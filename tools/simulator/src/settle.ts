// The money of a finished answer. Pay-before (what fed-ai does): the reservation held before
// dispatch is released and exactly the node-signed cost is charged. Pay-after (for comparison):
// the answer is delivered first and the payer is charged afterwards, so a payer without the funds,
// or one who walks away, leaves the node's work unpaid.
import type { Simulation } from './engine';
import { chargeOf } from './money';
import { unpaidWork } from './node-ops';
import { addMsat } from './stats';
import type { Job, Req } from './world';

/** Gives back whatever the request still holds on its payer's tab. */
export function releaseHold(sim: Simulation, req: Req): void {
  if (req.holdMsat === 0) return;
  sim.collector.releasedMsat = addMsat(sim.collector.releasedMsat, req.holdMsat);
  req.payer.heldMsat -= req.holdMsat;
  req.holdMsat = 0;
}

export function settleAnswer(sim: Simulation, job: Job): void {
  const req = job.req;
  const charge = chargeOf(req.promptTokens, job.outTokens, job.price, sim.scenario.routers.feeBps);
  const inv = sim.collector.invariants;
  if (charge.nodeMsat + charge.routerMsat !== charge.costMsat || charge.nodeMsat < 0 || charge.routerMsat < 0)
    inv.splitMismatches += 1;
  job.node.served += 1;
  sim.collector.costMsat.add(charge.costMsat);
  job.node.tokensOut += job.outTokens;
  if (sim.scenario.payment === 'before') {
    if (req.reservedMsat === undefined || charge.costMsat > req.reservedMsat) inv.chargeOverReservation += 1;
    releaseHold(sim, req);
    pay(sim, job, charge);
    return;
  }
  const payer = req.payer;
  const walksAway = sim.serviceRng() < req.client.spec.defaultRate;
  const canPay = payer.balanceMsat === null || payer.balanceMsat >= charge.costMsat;
  if (walksAway || !canPay) {
    sim.collector.unpaidAnswers += 1;
    unpaidWork(sim, job, job.outTokens);
    job.charge = { paidMsat: 0, nodeMsat: 0, routerMsat: 0 };
    return;
  }
  pay(sim, job, charge);
}

function pay(sim: Simulation, job: Job, charge: ReturnType<typeof chargeOf>): void {
  const payer = job.req.payer;
  if (payer.balanceMsat !== null) {
    payer.balanceMsat -= charge.costMsat;
    if (payer.balanceMsat < 0) sim.collector.invariants.negativeBalances += 1;
  }
  payer.paidMsat = addMsat(payer.paidMsat, charge.costMsat);
  job.node.earningsMsat = addMsat(job.node.earningsMsat, charge.nodeMsat);
  job.req.router.feeMsat = addMsat(job.req.router.feeMsat, charge.routerMsat);
  sim.collector.paid(sim.nowMs, charge);
  job.charge = { paidMsat: charge.costMsat, nodeMsat: charge.nodeMsat, routerMsat: charge.routerMsat };
}
