// One simulated router: its own registry view of every node (a real NodeRecord with a real
// CountingHealth breaker), built into scheduler views the way Registry.views does, ranked by the
// real scheduler. Only the registry's storage is replaced (Registry needs a database and signed
// envelopes); the view rule is the same: fresh heartbeat, ready, breaker would accept, free slots
// = reported free + queue room - this router's own in-flight count.
import type { ModelOffer, Price, ProviderPrefs } from '@fed-ai/protocol';
import type { NodeRecord, NodeView, RankedCandidate } from '@fed-ai/router';
import { DEFAULT_HEALTH_CONFIG, isHeartbeatFresh } from '@fed-ai/router/health';
import { CountingHealth, estimateFreeSlots, REGISTRATION_DEFAULTS, trustOf } from '@fed-ai/router/registry';
import { schedule, weightsFor } from '@fed-ai/router/scheduler';
import type { Rng } from './prng';

export interface RouterEntry {
  record: NodeRecord;
  /**
   * Cached scheduler view, rebuilt (a new object: ranked candidates keep the view they were ranked
   * with) after a verdict, a new price or a change of probation. Only `freeSlots`, which the
   * scheduler reads while ranking and nothing reads afterwards, is updated in place on each call.
   */
  view: NodeView | null;
}

export type RankOutcome =
  | { ok: true; ranked: RankedCandidate[] }
  | { ok: false; code: 'MODEL_NOT_FOUND' | 'NO_ELIGIBLE_NODE' | 'PRICE_TOO_HIGH' | 'CONTEXT_TOO_LONG' };

/** What this router knows of a peer's offloads (PeerTable's reputation: answered, failed, EWMA). */
interface PeerReputation {
  answered: number;
  failed: number;
  latencyEwmaMs: number | undefined;
}

/** PeerTable's latencyAlpha: weight of the newest sample in the peer latency moving average. */
const PEER_LATENCY_ALPHA = 0.2;

/** A router's federation counters (all zero without a federation section). */
export interface FederationCounters {
  auctions: number;
  won: number;
  noBids: number;
  allRefused: number;
  /** Offload attempts this router sent (origin) and received (peer). */
  offloadsOut: number;
  offloadsIn: number;
  /** Offloaded answers: served for this router by a peer, and served by this router for a peer. */
  servedByPeers: number;
  servedForPeers: number;
  /** Origin income: the offload fee on each peer cost. */
  offloadFeeMsat: number;
  /** Peer income: the router fee of the split on work served for others (also in feeMsat). */
  peerWorkFeeMsat: number;
}

export interface RouterConfig {
  heartbeatTtlMs: number;
  feeBps: number;
}

export class SimRouter {
  readonly entries = new Map<string, RouterEntry>();
  private readonly byModel = new Map<string, RouterEntry[]>();
  feeMsat = 0;
  requests = 0;
  failovers = 0;
  readonly fed: FederationCounters = {
    auctions: 0,
    won: 0,
    noBids: 0,
    allRefused: 0,
    offloadsOut: 0,
    offloadsIn: 0,
    servedByPeers: 0,
    servedForPeers: 0,
    offloadFeeMsat: 0,
    peerWorkFeeMsat: 0,
  };
  /** Reputation of peers by pubkey (bounded by the router count). */
  private readonly reputation = new Map<string, PeerReputation>();
  /** The simulated Nostr key and the offload URL this router announces. */
  readonly pubkey: string;
  readonly endpoint: string;

  constructor(
    readonly index: number,
    readonly rng: Rng,
    readonly config: RouterConfig,
  ) {
    this.pubkey = `router-${index}`;
    this.endpoint = `http://router-${index}.sim/v1/federation/offload`;
  }

  /** Whether any node registered here serves `model` (what the router announces to peers). */
  announces(model: string): boolean {
    return this.byModel.has(model);
  }

  get nodeCount(): number {
    return this.entries.size;
  }

  /** PeerTable.recordOutcome's rule. */
  recordPeerOutcome(pubkey: string, outcome: { ok: boolean; latencyMs?: number }): void {
    let r = this.reputation.get(pubkey);
    if (!r) {
      r = { answered: 0, failed: 0, latencyEwmaMs: undefined };
      this.reputation.set(pubkey, r);
    }
    if (!outcome.ok) {
      r.failed += 1;
      return;
    }
    r.answered += 1;
    if (outcome.latencyMs !== undefined)
      r.latencyEwmaMs =
        r.latencyEwmaMs === undefined
          ? outcome.latencyMs
          : r.latencyEwmaMs + PEER_LATENCY_ALPHA * (outcome.latencyMs - r.latencyEwmaMs);
  }

  /** PeerTable.peerRecord's rule, with allowlist trust (every simulated peer is allowlisted: 1). */
  peerRecord(pubkey: string): { trust: number; successRate: number; latencyMs?: number | undefined } {
    const r = this.reputation.get(pubkey);
    const done = r ? r.answered + r.failed : 0;
    return { trust: 1, successRate: r ? (r.answered + 1) / (done + 2) : 0.5, latencyMs: r?.latencyEwmaMs };
  }

  /** Registers a node (as an accepted registration would). */
  addNode(input: {
    id: string;
    offer: ModelOffer;
    maxConcurrency: number;
    queueMax: number;
    probationUntilMs: number;
  }): void {
    const record: NodeRecord = {
      id: input.id,
      endpoint: `http://${input.id}.sim`,
      registration: {
        endpoint: `http://${input.id}.sim`,
        models: [input.offer],
        capacity: { max_concurrency: input.maxConcurrency, queue_max: input.queueMax },
      },
      heartbeat: undefined,
      lastSeenMs: 0,
      health: new CountingHealth(DEFAULT_HEALTH_CONFIG, 0),
      inFlight: 0,
      inFlightAtHeartbeat: 0,
      banned: false,
      endpointKey: input.id,
      probationUntilMs: input.probationUntilMs,
    };
    const entry: RouterEntry = { record, view: null };
    this.entries.set(input.id, entry);
    const list = this.byModel.get(input.offer.id) ?? [];
    list.push(entry);
    this.byModel.set(input.offer.id, list);
  }

  /** A heartbeat from the node reached this router. */
  heartbeat(id: string, freeSlots: number, ready: boolean, nowMs: number): void {
    const record = this.entries.get(id)!.record;
    record.heartbeat = { free_slots: freeSlots, queue_depth: 0, models_loaded: [], ready };
    record.inFlightAtHeartbeat = record.inFlight;
    record.lastSeenMs = nowMs;
  }

  /** The node re-registered with a new price (a new offer object: in-flight work keeps the old). */
  reprice(id: string, price: Price): void {
    const entry = this.entries.get(id)!;
    const offer = { ...entry.record.registration.models[0]!, price };
    entry.record.registration = { ...entry.record.registration, models: [offer] };
    entry.view = null;
  }

  private isServing(record: NodeRecord, nowMs: number): boolean {
    return (
      !record.banned &&
      isHeartbeatFresh(record.lastSeenMs, nowMs, this.config.heartbeatTtlMs) &&
      record.heartbeat?.ready !== false &&
      record.health.wouldAccept(nowMs)
    );
  }

  /** Scheduler views of the serving nodes of `model` (Registry.views' rule). */
  views(model: string, nowMs: number): NodeView[] {
    const views: NodeView[] = [];
    for (const entry of this.byModel.get(model) ?? []) {
      const node = entry.record;
      if (!this.isServing(node, nowMs)) continue;
      const reg = node.registration;
      const successes = (node.health as CountingHealth).successes;
      const probation = nowMs < node.probationUntilMs && successes < REGISTRATION_DEFAULTS.probationRequests;
      const freeSlots = estimateFreeSlots(
        reg.capacity,
        node.heartbeat?.free_slots,
        node.inFlight,
        node.inFlightAtHeartbeat,
      );
      let view = entry.view;
      if (!view || view.probation !== probation) {
        const snap = node.health.snapshot();
        view = {
          id: node.id,
          endpoint: node.endpoint,
          region: reg.region,
          offer: reg.models[0]!,
          maxConcurrency: reg.capacity.max_concurrency,
          freeSlots,
          stats: {
            ttftMs: snap.ttftMs,
            tokensPerS: snap.tokensPerS,
            latencyMs: snap.latencyMs,
            successRate: snap.successRate,
          },
          trust: trustOf(probation, successes, REGISTRATION_DEFAULTS.probationRequests),
          probation,
        };
        entry.view = view;
      }
      view.freeSlots = freeSlots;
      views.push(view);
    }
    return views;
  }

  /** rankFor's rule: views, the real scheduler, and the same refusal codes. */
  rank(
    req: { model: string; promptTokens: number; maxTokens: number; provider?: ProviderPrefs | undefined },
    nowMs: number,
  ): RankOutcome {
    if (!this.byModel.has(req.model)) return { ok: false, code: 'MODEL_NOT_FOUND' };
    const views = this.views(req.model, nowMs);
    if (views.length === 0) return { ok: false, code: 'NO_ELIGIBLE_NODE' };
    const result = schedule(req, views, { weights: weightsFor(req.provider?.sort), rng: this.rng });
    if (result.ranked.length > 0) return { ok: true, ranked: result.ranked };
    if ((result.filtered.MAX_PRICE ?? 0) === views.length) return { ok: false, code: 'PRICE_TOO_HIGH' };
    if ((result.filtered.CONTEXT_WINDOW ?? 0) === views.length)
      return { ok: false, code: 'CONTEXT_TOO_LONG' };
    return { ok: false, code: 'NO_ELIGIBLE_NODE' };
  }
}
