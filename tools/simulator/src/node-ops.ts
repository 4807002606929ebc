// A simulated node's side of an attempt: admission (the rule of services/node/src/admission.ts: at
// most max_concurrency generations, then a FIFO queue of queue_max waiting at most queueTimeoutMs,
// then 429 OVERLOADED with its Retry-After), generation timing, failures and crashes. The real
// Admission class cannot run on a virtual clock (it waits with setTimeout and Promises), so its
// rule is restated here; everything the router decides stays in the real router code.
import { costMsat } from '@fed-ai/protocol';
import type { Simulation } from './engine';
import { lognormal } from './prng';
import { addMsat } from './stats';
import { accrueBusy, type Job, type NodeState } from './world';

export interface Failure {
  code: 'NODE_FAILED' | 'NODE_TIMEOUT' | 'OVERLOADED';
  /** The client already saw output: no failover (Dispatcher.run never sends two answers). */
  afterOutput: boolean;
  retryAfterS?: number | undefined;
}

/** Admission.retryAfterS: roughly one slot's turn per queued request, at most a minute. */
function retryAfterS(node: NodeState): number {
  return Math.min(60, 1 + Math.ceil(node.queued / node.group.spec.capacity.maxConcurrency));
}

/** The request reaches the node: start it, queue it, or refuse it. */
export function admit(sim: Simulation, job: Job): void {
  const node = job.node;
  const spec = node.group.spec;
  const rttMs = spec.rttMs;
  if (!node.up) {
    job.state = 'done';
    sim.queue.at(sim.nowMs + rttMs, () =>
      sim.attemptFailed(job, { code: 'NODE_FAILED', afterOutput: false }),
    );
    return;
  }
  if (node.running.size < spec.capacity.maxConcurrency && node.queued === 0) {
    start(sim, job);
    return;
  }
  if (node.queued < spec.capacity.queueMax) {
    enqueue(sim, job);
    return;
  }
  node.refused += 1;
  job.state = 'done';
  const failure: Failure = { code: 'OVERLOADED', afterOutput: false, retryAfterS: retryAfterS(node) };
  sim.queue.at(sim.nowMs + rttMs, () => sim.attemptFailed(job, failure));
}

function enqueue(sim: Simulation, job: Job): void {
  const node = job.node;
  const spec = node.group.spec;
  if (node.queue.length > 2 * spec.capacity.queueMax + 16)
    node.queue = node.queue.filter((j) => j.state === 'queued');
  node.queue.push(job);
  node.queued += 1;
  if (node.queued > spec.capacity.queueMax) sim.collector.invariants.overQueue += 1;
  const queueDeadline = sim.nowMs + spec.capacity.queueTimeoutMs;
  const routerDeadline = sim.nowMs + sim.scenario.routers.firstTokenTimeoutMs;
  sim.queue.at(Math.min(queueDeadline, routerDeadline), () => {
    if (job.state !== 'queued' || job.life !== node.life) return;
    job.state = 'done';
    node.queued -= 1;
    if (routerDeadline < queueDeadline) {
      sim.attemptFailed(job, { code: 'NODE_TIMEOUT', afterOutput: false });
    } else {
      node.refused += 1;
      sim.attemptFailed(job, { code: 'OVERLOADED', afterOutput: false, retryAfterS: retryAfterS(node) });
    }
  });
}

/** A slot freed: start the next waiting request, if any. */
export function startNext(sim: Simulation, node: NodeState): void {
  const max = node.group.spec.capacity.maxConcurrency;
  while (node.running.size < max && node.queued > 0) {
    const job = node.queue.shift()!;
    if (job.state !== 'queued') continue;
    node.queued -= 1;
    start(sim, job);
  }
}

/** Starts generating: draws the timeline, schedules its one outcome. */
function start(sim: Simulation, job: Job): void {
  const node = job.node;
  const spec = node.group.spec;
  const rng = sim.serviceRng;
  const now = sim.nowMs;
  accrueBusy(node, now);
  node.running.add(job);
  if (node.running.size > spec.capacity.maxConcurrency) sim.collector.invariants.overCapacity += 1;
  job.state = 'running';
  job.startMs = now;
  const req = job.req;
  job.outTokens = Math.min(req.wantTokens, req.params.max_tokens, node.offer.max_output_tokens);
  const ttftMs = spec.rttMs + lognormal(rng, spec.ttftMs.median, spec.ttftMs.sigma);
  const tokensPerS = node.baseTokensPerS * lognormal(rng, 1, 0.1);
  const decodeMs = ((job.outTokens - 1) / tokensPerS) * 1000;
  job.firstTokenAtMs = now + ttftMs;
  const endMs = job.firstTokenAtMs + decodeMs;
  const routers = sim.scenario.routers;
  let at = endMs;
  let failure: Failure | null = null;
  if (rng() < spec.failure.perRequest) {
    const mid = rng() < spec.failure.midStreamShare;
    at = mid ? job.firstTokenAtMs + rng() * decodeMs : now + rng() * ttftMs;
    failure = { code: 'NODE_FAILED', afterOutput: mid };
  }
  const firstDeadline = job.sentMs + routers.firstTokenTimeoutMs;
  if (job.firstTokenAtMs > firstDeadline && firstDeadline < at) {
    at = firstDeadline;
    failure = { code: 'NODE_TIMEOUT', afterOutput: false };
  }
  const totalDeadline = job.sentMs + routers.totalTimeoutMs;
  if (totalDeadline < at) {
    at = totalDeadline;
    failure = { code: 'NODE_TIMEOUT', afterOutput: totalDeadline > job.firstTokenAtMs };
  }
  const life = node.life;
  sim.queue.at(at, () => {
    if (job.state !== 'running' || node.life !== life) return;
    finishOnNode(sim, job, failure, tokensPerS);
    if (failure) sim.attemptFailed(job, failure);
    else sim.attemptSucceeded(job);
  });
}

/** Frees the job's slot; work streamed before a failure is the node's unpaid work. */
function finishOnNode(sim: Simulation, job: Job, failure: Failure | null, tokensPerS: number): void {
  const node = job.node;
  accrueBusy(node, sim.nowMs);
  node.running.delete(job);
  sim.recordSlot(node, job.startMs);
  job.state = 'done';
  if (failure?.afterOutput) {
    const streamed = Math.min(
      job.outTokens,
      1 + Math.floor(((sim.nowMs - job.firstTokenAtMs) * tokensPerS) / 1000),
    );
    unpaidWork(sim, job, streamed);
  }
  startNext(sim, node);
}

export function unpaidWork(sim: Simulation, job: Job, tokensOut: number): void {
  const lost = costMsat(job.req.promptTokens, tokensOut, job.price);
  job.node.unpaidWorkMsat = addMsat(job.node.unpaidWorkMsat, lost);
  sim.collector.unpaidWorkMsat = addMsat(sim.collector.unpaidWorkMsat, lost);
}

/** The router's verdict on a failed attempt, then failover (or not, after output). */
export function attemptFailed(sim: Simulation, job: Job, failure: Failure): void {
  const req = job.req;
  job.node.failed += 1;
  job.lease.fail({ retryAfterS: failure.retryAfterS });
  job.lease.release();
  job.entry.view = null;
  req.lastCode = failure.code;
  if (failure.afterOutput) sim.failedAfterOutput(req, failure.code);
  else sim.dispatchNext(req);
}

/** A crash: everything running or queued on the node fails (routers hear of it one RTT later). */
export function crashNode(sim: Simulation, node: NodeState): void {
  accrueBusy(node, sim.nowMs);
  node.up = false;
  node.life += 1;
  const running = [...node.running];
  const queued = node.queue.filter((j) => j.state === 'queued');
  node.running.clear();
  node.queue = [];
  node.queued = 0;
  const rttMs = node.group.spec.rttMs;
  for (const job of running) {
    sim.recordSlot(node, job.startMs);
    job.state = 'done';
    const afterOutput = sim.nowMs > job.firstTokenAtMs;
    if (afterOutput) unpaidWork(sim, job, Math.max(1, Math.floor(job.outTokens / 2)));
    sim.queue.at(sim.nowMs + rttMs, () => sim.attemptFailed(job, { code: 'NODE_FAILED', afterOutput }));
  }
  for (const job of queued) {
    job.state = 'done';
    sim.queue.at(sim.nowMs + rttMs, () =>
      sim.attemptFailed(job, { code: 'NODE_FAILED', afterOutput: false }),
    );
  }
}
