// The discrete-event engine: a virtual clock drives client arrivals, routers (real scheduler, real
// NodeLease + breaker, Dispatcher.run's failover rule), nodes (admission, generation, failures,
// crashes, heartbeats, repricing) and the money of each request. Pure: no I/O, no wall clock; all
// randomness comes from seeded streams, so a seed reproduces a run exactly.
import { estimatePromptTokens } from '@fed-ai/router/chat';
import { NodeLease } from '@fed-ai/router/lease';
import { Collector } from './collector';
import { EventQueue } from './event-queue';
import { Federation, OFFLOADABLE } from './federation';
import { type chargeOf, PromptTexts, ReservationMath } from './money';
import { admit, attemptFailed, crashNode, type Failure, startNext } from './node-ops';
import { nextPrice } from './pricing';
import {
  deriveSeed,
  exponential,
  lognormal,
  lognormalInt,
  mulberry32,
  type Rng,
  weightedIndex,
} from './prng';
import type { Scenario } from './scenario';
import { releaseHold, settleAnswer } from './settle';
import { SimRouter } from './sim-router';
import { addMsat } from './stats';
import {
  accrueBusy,
  buildClient,
  buildGroup,
  type ClientState,
  type GroupState,
  type Job,
  type NodeState,
  type Req,
} from './world';

export interface SimOptions {
  /** Keep up to this many per-request records (tests); 0 keeps none. */
  traceLimit?: number;
  /** Compare fast reservation math with candidateMaxCostMsat every n-th call (1: always exact). */
  reservationCheckEvery?: number;
}

/** One generation's time on a node's slot (tests check capacity with it). */
export interface SlotRecord {
  node: string;
  startMs: number;
  endMs: number;
}

export interface TraceRecord {
  id: number;
  model: string;
  node: string | null;
  code: string;
  maxInputPrice: number | null;
  maxOutputPrice: number | null;
  price: { input_msat_per_1k: number; output_msat_per_1k: number } | null;
  servesModel: boolean;
  reservedMsat: number | null;
  clientPaidMsat: number;
  nodeMsat: number;
  routerMsat: number;
  /** Federation only (absent otherwise): who took the request, who served it, the origin's fee. */
  offload?: { origin: number; peer: number; peerCostMsat: number; offloadFeeMsat: number } | undefined;
  /** Federation only: the router of the last try and the most auctions any one try started. */
  router?: number | undefined;
  maxAuctionsInTry?: number | undefined;
}

const RETRYABLE = new Set([
  'NO_ELIGIBLE_NODE',
  'OVERLOADED',
  'NODE_FAILED',
  'NODE_TIMEOUT',
  'NO_PEER_BID',
  'PEER_FAILED',
]);
const MAX_PENDING_EVENTS = 20_000_000;
/** After the last arrival, how long in-flight work may take to finish before the run stops. */
const DRAIN_MS = 3_600_000;

export class Simulation {
  readonly queue = new EventQueue(MAX_PENDING_EVENTS);
  readonly collector: Collector;
  readonly groups: GroupState[];
  readonly nodes: NodeState[];
  readonly routers: SimRouter[];
  readonly clients: ClientState[];
  readonly trace: TraceRecord[] = [];
  readonly slots: SlotRecord[] = [];
  readonly reservations: ReservationMath;
  readonly durationMs: number;
  private readonly prompts = new PromptTexts();
  private readonly arrivalRng: Rng;
  readonly serviceRng: Rng;
  private readonly clientShares: number[];
  private readonly shareTotal: number;
  private nextRequestId = 0;
  private nextRouter = 0;
  private readonly traceLimit: number;
  /** The routers that hear each node's heartbeats (all of them, or under federation its home). */
  private readonly nodeRouters = new Map<string, SimRouter[]>();
  readonly federation: Federation | null;

  constructor(
    readonly scenario: Scenario,
    options: SimOptions = {},
  ) {
    const seed = scenario.seed;
    this.durationMs = scenario.durationS * 1000;
    const bucketMs = (scenario.bucketS ?? scenario.durationS / 60) * 1000;
    this.collector = new Collector(Math.max(1, Math.ceil(this.durationMs / bucketMs)), bucketMs);
    this.arrivalRng = mulberry32(deriveSeed(seed, 'arrivals'));
    this.serviceRng = mulberry32(deriveSeed(seed, 'service'));
    const fleetRng = mulberry32(deriveSeed(seed, 'fleet'));
    this.groups = scenario.nodes.map((g) => buildGroup(g, fleetRng));
    this.nodes = this.groups.flatMap((g) => g.nodes);
    this.clients = scenario.clients.map(buildClient);
    this.clientShares = scenario.clients.map((c) => c.share);
    this.shareTotal = this.clientShares.reduce((s, v) => s + v, 0);
    this.routers = Array.from(
      { length: scenario.routers.count },
      (_, i) =>
        new SimRouter(i, mulberry32(deriveSeed(seed, `router-${i}`)), {
          heartbeatTtlMs: scenario.routers.heartbeatTtlMs,
          feeBps: scenario.routers.feeBps,
        }),
    );
    this.reservations = new ReservationMath(options.reservationCheckEvery ?? scenario.reservationCheckEvery);
    this.traceLimit = options.traceLimit ?? 0;
    if (scenario.federation) this.homeNodes();
    else for (const node of this.nodes) this.nodeRouters.set(node.id, this.routers);
    for (const router of this.routers)
      for (const node of this.nodes)
        if (this.nodeRouters.get(node.id)!.includes(router))
          router.addNode({
            id: node.id,
            offer: node.offer,
            maxConcurrency: node.group.spec.capacity.maxConcurrency,
            queueMax: node.group.spec.capacity.queueMax,
            probationUntilMs: node.group.spec.probation ? this.durationMs : 0,
          });
    this.federation = scenario.federation
      ? new Federation(this, scenario.federation, mulberry32(deriveSeed(seed, 'federation')))
      : null;
  }

  /** Federation: each node belongs to one router, its group's `home` (modulo the count) or spread. */
  private homeNodes(): void {
    const n = this.routers.length;
    for (const group of this.groups)
      for (const [i, node] of group.nodes.entries()) {
        const home = group.spec.home;
        const index = home === undefined || home === 'spread' ? i % n : home % n;
        this.nodeRouters.set(node.id, [this.routers[index]!]);
      }
  }

  /** Runs the whole scenario; returns the number of events processed. */
  run(): number {
    this.schedulePeriodic();
    this.queue.at(0, () => this.arrive());
    let events = this.queue.runUntil(this.durationMs);
    events += this.queue.runUntil(this.durationMs + DRAIN_MS);
    this.checkDrained();
    return events;
  }

  get nowMs(): number {
    return this.queue.nowMs;
  }

  /** Whether periodic work (heartbeats, ticks, repricing, crashes) continues. */
  running(): boolean {
    return this.nowMs < this.durationMs;
  }

  private schedulePeriodic(): void {
    const interval = this.scenario.heartbeatIntervalMs;
    for (const node of this.nodes) {
      this.heartbeat(node);
      const phase = this.serviceRng() * interval;
      this.queue.at(phase, () => this.heartbeatLoop(node));
      this.scheduleCrash(node);
    }
    for (let i = 1; i <= this.collector.buckets.length; i++)
      this.queue.at(Math.min(this.durationMs, i * this.collector.bucketMs), () => this.tick(i - 1));
    for (const group of this.groups) {
      const pricing = group.spec.pricing;
      if (pricing.strategy !== 'fixed') this.queue.at(pricing.intervalS * 1000, () => this.reprice(group));
    }
    for (const event of this.scenario.events) {
      const group = this.groups.find((g) => g.spec.group === event.group)!;
      this.queue.at(event.atS * 1000, () => this.groupEvent(group, event.kind, event.share));
    }
  }

  heartbeat(node: NodeState): void {
    if (!node.up) return;
    const free = Math.max(0, node.group.spec.capacity.maxConcurrency - node.running.size);
    for (const router of this.nodeRouters.get(node.id)!) router.heartbeat(node.id, free, true, this.nowMs);
  }

  private heartbeatLoop(node: NodeState): void {
    this.heartbeat(node);
    if (this.running())
      this.queue.at(this.nowMs + this.scenario.heartbeatIntervalMs, () => this.heartbeatLoop(node));
  }

  // ---- arrivals -------------------------------------------------------------------------------

  private rateAt(nowMs: number): number {
    let multiplier = 1;
    for (const b of this.scenario.arrivals.bursts)
      if (nowMs >= b.atS * 1000 && nowMs < (b.atS + b.durationS) * 1000)
        multiplier = Math.max(multiplier, b.multiplier);
    return this.scenario.arrivals.ratePerS * multiplier;
  }

  /** The next time the arrival rate changes after `nowMs` (a burst starts or ends), or Infinity. */
  private nextRateChange(nowMs: number): number {
    let next = Number.POSITIVE_INFINITY;
    for (const b of this.scenario.arrivals.bursts)
      for (const edge of [b.atS * 1000, (b.atS + b.durationS) * 1000])
        if (edge > nowMs) next = Math.min(next, edge);
    return next;
  }

  /** Poisson arrivals with a piecewise-constant rate (memoryless: redraw at each rate change). */
  private arrive(): void {
    const gap = exponential(this.arrivalRng, 1000 / this.rateAt(this.nowMs));
    const change = this.nextRateChange(this.nowMs);
    const at = this.nowMs + gap;
    if (at >= change) {
      if (change < this.durationMs) this.queue.at(change, () => this.arrive());
    } else if (at < this.durationMs) {
      this.queue.at(at, () => {
        this.newRequest();
        this.arrive();
      });
    }
  }

  private newRequest(): void {
    const rng = this.arrivalRng;
    const client = this.clients[weightedIndex(rng, this.clientShares, this.shareTotal)]!;
    const spec = client.spec;
    const payer = client.payers[Math.floor(rng() * client.payers.length)]!;
    const model = client.models[Math.floor(rng() * client.models.length)]!;
    const promptTokens = lognormalInt(
      rng,
      spec.promptTokens.median,
      spec.promptTokens.sigma,
      1,
      spec.promptTokens.max ?? 100_000,
    );
    const wantTokens = lognormalInt(
      rng,
      spec.outputTokens.median,
      spec.outputTokens.sigma,
      1,
      spec.outputTokens.max ?? spec.maxTokens,
    );
    const messages = this.prompts.messages(promptTokens);
    const req: Req = {
      id: this.nextRequestId++,
      client,
      payer,
      model,
      promptTokens,
      wantTokens,
      params: { model, messages, max_tokens: spec.maxTokens },
      estimateTokens: estimatePromptTokens(messages),
      firstArrivalMs: this.nowMs,
      tries: 0,
      router: this.routers[0]!,
      ranked: [],
      next: 0,
      attempts: 0,
      reservedMsat: undefined,
      holdMsat: 0,
      lastCode: null,
      offload: null,
      auctionsInTry: 0,
      maxAuctionsInTry: 0,
    };
    this.collector.arrivals += 1;
    this.collector.bucket(this.nowMs).arrivals += 1;
    this.route(req);
  }

  // ---- routing ----------------------------------------------------------------------------------

  /** One try of a request through a router: rank, reserve, dispatch. */
  private route(req: Req): void {
    req.tries += 1;
    req.router = this.routers[this.nextRouter++ % this.routers.length]!;
    req.router.requests += 1;
    req.next = 0;
    req.attempts = 0;
    req.lastCode = null;
    req.reservedMsat = undefined;
    req.offload = null;
    req.maxAuctionsInTry = Math.max(req.maxAuctionsInTry, req.auctionsInTry);
    req.auctionsInTry = 0;
    const outcome = req.router.rank(
      {
        model: req.model,
        promptTokens: req.estimateTokens,
        maxTokens: req.params.max_tokens,
        provider: req.client.provider,
      },
      this.nowMs,
    );
    if (!outcome.ok) {
      if (this.federation && OFFLOADABLE.has(outcome.code)) this.federation.startAuction(req, outcome.code);
      else this.endTry(req, outcome.code, null);
      return;
    }
    req.ranked = outcome.ranked;
    if (!this.hold(req, this.reservations.reservation(req.ranked, req.params))) {
      this.endTry(req, 'INSUFFICIENT_BALANCE', null);
      return;
    }
    this.dispatchNext(req);
  }

  /** Pay-before: holds `reserveMsat` on the payer's tab for this try; false when it is short. */
  hold(req: Req, reserveMsat: number): boolean {
    if (this.scenario.payment !== 'before') return true;
    const payer = req.payer;
    if (payer.balanceMsat !== null && payer.balanceMsat - payer.heldMsat < reserveMsat) return false;
    payer.heldMsat += reserveMsat;
    req.holdMsat = reserveMsat;
    req.reservedMsat = reserveMsat;
    this.collector.reservedMsat = addMsat(this.collector.reservedMsat, reserveMsat);
    return true;
  }

  /** Dispatcher.run's loop: next covered candidate whose breaker lets a request through. */
  dispatchNext(req: Req): void {
    const limit = this.scenario.routers.maxAttempts;
    const allowFallbacks = true;
    const maxAttempts = allowFallbacks ? Math.min(limit, req.ranked.length) : 1;
    // An offloaded job runs under the peer's own reservation (runChat at the peer).
    const reservedMsat = req.offload ? req.offload.peerReservedMsat : req.reservedMsat;
    while (req.next < req.ranked.length && req.attempts < maxAttempts) {
      const candidate = req.ranked[req.next++]!;
      if (
        reservedMsat !== undefined &&
        this.reservations.candidateMaxCost(candidate, req.params) > reservedMsat
      )
        continue;
      const entry = req.router.entries.get(candidate.node.id)!;
      const lease = NodeLease.acquire(entry.record, () => this.nowMs);
      if (!lease) continue;
      req.attempts += 1;
      this.collector.attempts += 1;
      if (req.attempts > 1) {
        this.collector.failovers += 1;
        this.collector.bucket(this.nowMs).failovers += 1;
        req.router.failovers += 1;
      }
      const node = this.nodeById(candidate.node.id);
      this.checkFilters(req, node, candidate.node.offer.price);
      const job: Job = {
        req,
        node,
        entry,
        lease,
        price: candidate.node.offer.price,
        life: node.life,
        state: 'queued',
        sentMs: this.nowMs,
        startMs: 0,
        outTokens: 0,
        firstTokenAtMs: 0,
      };
      admit(this, job);
      return;
    }
    if (req.offload) this.federation!.peerFailed(req, false);
    else this.endTry(req, req.lastCode ?? 'NO_ELIGIBLE_NODE', null);
  }

  /** A failure after the first token: no failover (locally) and no next bid (offloaded). */
  failedAfterOutput(req: Req, code: string): void {
    if (req.offload) this.federation!.peerFailed(req, true);
    else this.endTry(req, code, null);
  }

  private readonly nodeIndex = new Map<string, NodeState>();

  nodeById(id: string): NodeState {
    if (this.nodeIndex.size === 0) for (const n of this.nodes) this.nodeIndex.set(n.id, n);
    return this.nodeIndex.get(id)!;
  }

  private checkFilters(
    req: Req,
    node: NodeState,
    price: { input_msat_per_1k: number; output_msat_per_1k: number },
  ): void {
    const max = req.client.provider?.max_price;
    const over =
      (max?.input_msat_per_1k !== undefined && price.input_msat_per_1k > max.input_msat_per_1k) ||
      (max?.output_msat_per_1k !== undefined && price.output_msat_per_1k > max.output_msat_per_1k);
    if (over || node.offer.id !== req.model) this.collector.invariants.filterViolations += 1;
  }

  /** A verdict on one attempt: success settles the request; a failure may fail over. */
  attemptSucceeded(job: Job): void {
    const req = job.req;
    const waitMs = this.nowMs - job.sentMs;
    const ttftMs = job.firstTokenAtMs - job.sentMs;
    const decodeMs = waitMs - ttftMs;
    job.lease.succeed({
      ttftMs,
      latencyMs: waitMs,
      ...(job.outTokens > 1 && decodeMs > 0 ? { tokensPerS: ((job.outTokens - 1) * 1000) / decodeMs } : {}),
    });
    job.lease.release();
    job.entry.view = null;
    if (req.offload) {
      this.federation!.served(job, this.nowMs - req.firstArrivalMs - decodeMs);
      return;
    }
    settleAnswer(this, job);
    this.collector.ttftMs.add(this.nowMs - req.firstArrivalMs - decodeMs);
    this.endTry(req, 'OK', job);
  }

  /**
   * An offloaded answer, settled: the peer captured the node-signed cost from the origin's tab
   * (split into node earnings and the peer's router fee); the origin charges the client that cost
   * plus its offload fee.
   */
  settleOffload(job: Job, charge: ReturnType<typeof chargeOf>, feeMsat: number): void {
    const req = job.req;
    const leg = req.offload!;
    const inv = this.collector.invariants;
    const totalMsat = charge.costMsat + feeMsat;
    if (
      charge.nodeMsat + charge.routerMsat !== charge.costMsat ||
      charge.nodeMsat < 0 ||
      charge.routerMsat < 0
    )
      inv.splitMismatches += 1;
    if (req.reservedMsat === undefined || totalMsat > req.reservedMsat) inv.chargeOverReservation += 1;
    job.node.served += 1;
    job.node.tokensOut += job.outTokens;
    this.collector.costMsat.add(totalMsat);
    releaseHold(this, req);
    const payer = req.payer;
    if (payer.balanceMsat !== null) {
      payer.balanceMsat -= totalMsat;
      if (payer.balanceMsat < 0) inv.negativeBalances += 1;
    }
    payer.paidMsat = addMsat(payer.paidMsat, totalMsat);
    job.node.earningsMsat = addMsat(job.node.earningsMsat, charge.nodeMsat);
    leg.peer.feeMsat = addMsat(leg.peer.feeMsat, charge.routerMsat);
    this.collector.paid(this.nowMs, {
      costMsat: totalMsat,
      nodeMsat: charge.nodeMsat,
      routerMsat: charge.routerMsat,
    });
    this.collector.offloadFeeMsat = addMsat(this.collector.offloadFeeMsat, feeMsat);
    job.charge = {
      paidMsat: totalMsat,
      nodeMsat: charge.nodeMsat,
      routerMsat: charge.routerMsat,
      offloadFeeMsat: feeMsat,
    };
  }

  attemptFailed(job: Job, failure: Failure): void {
    attemptFailed(this, job, failure);
  }

  /** The end of one try: a success, a final failure, or a client retry after a backoff. */
  endTry(req: Req, code: string, job: Job | null): void {
    releaseHold(this, req);
    const c = this.collector;
    const spec = req.client.spec;
    if (code !== 'OK' && RETRYABLE.has(code) && req.tries <= spec.retries.max) {
      c.clientRetries += 1;
      c.bucket(this.nowMs).clientRetries += 1;
      const backoffMs = spec.retries.backoffMs * 2 ** (req.tries - 1) * (0.5 + this.serviceRng());
      this.queue.at(this.nowMs + backoffMs, () => this.route(req));
      return;
    }
    const b = c.bucket(this.nowMs);
    c.outcome(code);
    if (code === 'OK') {
      c.ok += 1;
      b.ok += 1;
      c.latencyMs.add(this.nowMs - req.firstArrivalMs);
      const fed = this.federation?.stats;
      if (fed)
        (req.offload ? fed.offloadedLatencyMs : fed.localLatencyMs).add(this.nowMs - req.firstArrivalMs);
      b.latencyMs.add(this.nowMs - req.firstArrivalMs);
      b.paidOutputPrice.add(job!.price.output_msat_per_1k);
    } else {
      c.failed += 1;
      b.failed += 1;
    }
    c.invariants.checkedRequests += 1;
    this.record(req, code, job);
  }

  /** A generation left its slot (bounded by traceLimit). */
  recordSlot(node: NodeState, startMs: number): void {
    if (this.slots.length < this.traceLimit) this.slots.push({ node: node.id, startMs, endMs: this.nowMs });
  }

  /** Appends a trace record (bounded by traceLimit). */
  private record(req: Req, code: string, job: Job | null): void {
    if (this.trace.length >= this.traceLimit) return;
    const max = req.client.provider?.max_price;
    this.trace.push({
      id: req.id,
      model: req.model,
      node: job?.node.id ?? null,
      code,
      maxInputPrice: max?.input_msat_per_1k ?? null,
      maxOutputPrice: max?.output_msat_per_1k ?? null,
      price: job?.price ?? null,
      servesModel: job ? job.node.offer.id === req.model : true,
      reservedMsat: req.reservedMsat ?? null,
      clientPaidMsat: job?.charge?.paidMsat ?? 0,
      nodeMsat: job?.charge?.nodeMsat ?? 0,
      routerMsat: job?.charge?.routerMsat ?? 0,
      ...(this.federation ? this.federationTrace(req, job) : {}),
    });
  }

  private federationTrace(
    req: Req,
    job: Job | null,
  ): Pick<TraceRecord, 'offload' | 'router' | 'maxAuctionsInTry'> {
    req.maxAuctionsInTry = Math.max(req.maxAuctionsInTry ?? 0, req.auctionsInTry);
    const leg = job && req.offload;
    return {
      router: req.router.index,
      maxAuctionsInTry: req.maxAuctionsInTry,
      offload: leg
        ? {
            origin: leg.origin.index,
            peer: leg.peer.index,
            peerCostMsat: job.charge!.nodeMsat + job.charge!.routerMsat,
            offloadFeeMsat: job.charge!.offloadFeeMsat ?? 0,
          }
        : undefined,
    };
  }

  // ---- fleet: crashes, recoveries, repricing, ticks ---------------------------------------------

  private scheduleCrash(node: NodeState): void {
    const perHour = node.group.spec.failure.crashesPerHour;
    if (perHour <= 0) return;
    const life = node.life;
    const at = this.nowMs + exponential(this.serviceRng, 3_600_000 / perHour);
    if (at < this.durationMs)
      this.queue.at(at, () => node.life === life && node.up && this.crash(node, false));
  }

  private crash(node: NodeState, held: boolean): void {
    crashNode(this, node);
    node.heldDown = held;
    if (held) return;
    const spec = node.group.spec.failure.downtimeS;
    const life = node.life;
    this.queue.at(this.nowMs + lognormal(this.serviceRng, spec.median, spec.sigma) * 1000, () => {
      if (node.life === life && !node.up && !node.heldDown) this.recover(node);
    });
  }

  private recover(node: NodeState): void {
    accrueBusy(node, this.nowMs);
    node.up = true;
    node.heldDown = false;
    this.heartbeat(node);
    this.scheduleCrash(node);
  }

  private groupEvent(group: GroupState, kind: 'crash' | 'recover', share: number): void {
    const count = Math.round(share * group.nodes.length);
    for (const node of group.nodes.slice(0, count)) {
      if (kind === 'crash' && node.up) this.crash(node, true);
      else if (kind === 'recover' && !node.up) this.recover(node);
    }
  }

  private reprice(group: GroupState): void {
    const pricing = group.spec.pricing;
    if (pricing.strategy === 'fixed') return;
    const windowMs = pricing.intervalS * 1000;
    for (const node of group.nodes) {
      accrueBusy(node, this.nowMs);
      const utilisation =
        (node.busySlotMs - node.busyAtRepriceMs) / (windowMs * group.spec.capacity.maxConcurrency);
      node.busyAtRepriceMs = node.busySlotMs;
      const price = nextPrice(node.offer.price, utilisation, pricing);
      if (price === node.offer.price) continue;
      node.offer = { ...node.offer, price };
      for (const router of this.nodeRouters.get(node.id)!) router.reprice(node.id, price);
    }
    if (this.running()) this.queue.at(this.nowMs + windowMs, () => this.reprice(group));
  }

  private lastTickBusy = 0;

  private tick(index: number): void {
    let busy = 0;
    const prices: number[] = [];
    const last = index === this.collector.buckets.length - 1;
    for (const node of this.nodes) {
      accrueBusy(node, this.nowMs);
      busy += node.busySlotMs;
      if (last) node.busyInRunSlotMs = node.busySlotMs;
      if (node.up) prices.push(node.offer.price.output_msat_per_1k);
    }
    const bucket = this.collector.buckets[index]!;
    bucket.busySlotMs = busy - this.lastTickBusy;
    this.lastTickBusy = busy;
    prices.sort((a, b) => a - b);
    const at = (q: number) =>
      prices.length === 0 ? 0 : prices[Math.min(prices.length - 1, Math.floor(q * prices.length))]!;
    bucket.listedOutputPrice = { p10: at(0.1), p50: at(0.5), p90: at(0.9) };
  }

  private checkDrained(): void {
    for (const router of this.routers)
      for (const entry of router.entries.values())
        if (entry.record.inFlight !== 0) this.collector.invariants.leaks += 1;
    const inv = this.collector.invariants;
    for (const node of this.nodes) {
      accrueBusy(node, this.nowMs);
      if (node.running.size !== 0 || node.queued !== 0) inv.leaks += 1;
    }
    for (const client of this.clients)
      for (const payer of client.payers) {
        inv.heldAfterDrainMsat += payer.heldMsat;
        if (payer.balanceMsat !== null && payer.balanceMsat + payer.paidMsat !== client.spec.balanceMsat)
          inv.balanceMismatches += 1;
      }
    if (this.collector.reservedMsat !== this.collector.releasedMsat)
      inv.heldAfterDrainMsat += this.collector.reservedMsat - this.collector.releasedMsat;
  }

  /** Starts queued work on a node after a slot freed. */
  startNext(node: NodeState): void {
    startNext(this, node);
  }
}
