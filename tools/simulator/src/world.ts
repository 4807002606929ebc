// The simulated world's state: nodes (with their admission queue), payers, client populations and
// in-flight requests. Plain data; the engine owns every change.
import type { ModelOffer, Price, ProviderPrefs } from '@fed-ai/protocol';
import type { RankedCandidate } from '@fed-ai/router';
import type { GenerationParams } from '@fed-ai/router/dispatch';
import type { NodeLease } from '@fed-ai/router/lease';
import type { OffloadLeg } from './federation';
import { lognormal, type Rng } from './prng';
import { type ClientSpec, modelsOf, type NodeGroup } from './scenario';
import type { RouterEntry, SimRouter } from './sim-router';

export interface GroupState {
  spec: NodeGroup;
  nodes: NodeState[];
}

export interface NodeState {
  id: string;
  group: GroupState;
  offer: ModelOffer;
  /** This node's own typical decode speed (drawn once from the group's distribution). */
  baseTokensPerS: number;
  up: boolean;
  /** Held down by a scenario event: no automatic recovery until a `recover` event. */
  heldDown: boolean;
  /** Bumped on every crash: events scheduled for an earlier life are ignored. */
  life: number;
  running: Set<Job>;
  queue: Job[];
  queued: number;
  busySlotMs: number;
  /** busySlotMs at the end of the simulated duration (the drain after it is not utilisation). */
  busyInRunSlotMs: number;
  lastChangeMs: number;
  busyAtRepriceMs: number;
  served: number;
  failed: number;
  refused: number;
  earningsMsat: number;
  unpaidWorkMsat: number;
  tokensOut: number;
}

interface PayerState {
  /** null: unlimited. */
  balanceMsat: number | null;
  heldMsat: number;
  paidMsat: number;
}

export interface ClientState {
  spec: ClientSpec;
  models: string[];
  payers: PayerState[];
  provider: ProviderPrefs | undefined;
}

export interface Req {
  id: number;
  client: ClientState;
  payer: PayerState;
  model: string;
  promptTokens: number;
  /** Tokens the model would generate if allowed (capped by max_tokens and the node's limit). */
  wantTokens: number;
  params: GenerationParams;
  estimateTokens: number;
  firstArrivalMs: number;
  tries: number;
  router: SimRouter;
  ranked: RankedCandidate[];
  next: number;
  attempts: number;
  reservedMsat: number | undefined;
  /** What this try still holds on the payer's tab (pay-before). */
  holdMsat: number;
  lastCode: string | null;
  /** Federation: this try's offload (null: served, or refused, locally). */
  offload: OffloadLeg | null;
  /** Federation: auctions started in this try (runChat offloads at most once). */
  auctionsInTry: number;
  /** The most auctions any one try of this request started (checked: at most 1). */
  maxAuctionsInTry: number;
}

export interface Job {
  req: Req;
  node: NodeState;
  entry: RouterEntry;
  lease: NodeLease;
  price: Price;
  life: number;
  state: 'queued' | 'running' | 'done';
  sentMs: number;
  startMs: number;
  outTokens: number;
  firstTokenAtMs: number;
  /** Set when the answer was settled. */
  charge?: { paidMsat: number; nodeMsat: number; routerMsat: number; offloadFeeMsat?: number } | undefined;
}

/** Builds a group's nodes; prices spread deterministically by up to priceSpreadBps. */
export function buildGroup(spec: NodeGroup, rng: Rng): GroupState {
  const group: GroupState = { spec, nodes: [] };
  const models = modelsOf(spec);
  for (let i = 0; i < spec.count; i++) {
    const spread = spec.count > 1 ? Math.floor((spec.priceSpreadBps * i) / (spec.count - 1)) : 0;
    const price = {
      input_msat_per_1k: Math.floor((spec.price.inputMsatPer1k * (10_000 + spread)) / 10_000),
      output_msat_per_1k: Math.floor((spec.price.outputMsatPer1k * (10_000 + spread)) / 10_000),
    };
    group.nodes.push({
      id: `${spec.group}-${String(i).padStart(5, '0')}`,
      group,
      offer: {
        id: models[i % models.length]!,
        context_window: spec.contextWindow,
        max_output_tokens: spec.maxOutputTokens,
        price,
      },
      baseTokensPerS: Math.max(0.1, lognormal(rng, spec.tokensPerS.median, spec.tokensPerS.sigma)),
      up: true,
      heldDown: false,
      life: 0,
      running: new Set(),
      queue: [],
      queued: 0,
      busySlotMs: 0,
      busyInRunSlotMs: 0,
      lastChangeMs: 0,
      busyAtRepriceMs: 0,
      served: 0,
      failed: 0,
      refused: 0,
      earningsMsat: 0,
      unpaidWorkMsat: 0,
      tokensOut: 0,
    });
  }
  return group;
}

export function buildClient(spec: ClientSpec): ClientState {
  const payers: PayerState[] = Array.from({ length: spec.payers }, () => ({
    balanceMsat: spec.balanceMsat ?? null,
    heldMsat: 0,
    paidMsat: 0,
  }));
  const maxPrice = spec.maxPrice
    ? {
        ...(spec.maxPrice.inputMsatPer1k !== undefined
          ? { input_msat_per_1k: spec.maxPrice.inputMsatPer1k }
          : {}),
        ...(spec.maxPrice.outputMsatPer1k !== undefined
          ? { output_msat_per_1k: spec.maxPrice.outputMsatPer1k }
          : {}),
      }
    : undefined;
  const provider: ProviderPrefs | undefined =
    maxPrice || spec.sort
      ? { ...(maxPrice ? { max_price: maxPrice } : {}), ...(spec.sort ? { sort: spec.sort } : {}) }
      : undefined;
  return { spec, models: modelsOf(spec), payers, provider };
}

/** Advances a node's busy-slot integral to `nowMs` (call before its running count changes). */
export function accrueBusy(node: NodeState, nowMs: number): void {
  node.busySlotMs += node.running.size * (nowMs - node.lastChangeMs);
  node.lastChangeMs = nowMs;
}
