// Types shared by the scheduler (pure ranking), the registry (node state) and dispatch.
import type { ModelOffer, ProviderPrefs, SortMode } from '@fed-ai/protocol';

/** What the scheduler knows about one node offering one model, at one instant. */
export interface NodeView {
  /** The node's public key (hex): its id. */
  id: string;
  endpoint: string;
  region?: string | undefined;
  offer: ModelOffer;
  maxConcurrency: number;
  /** Free generation slots as last reported (heartbeat) minus the router's own in-flight requests. */
  freeSlots: number;
  /** Moving averages; undefined until measured. */
  stats: {
    ttftMs?: number | undefined;
    tokensPerS?: number | undefined;
    latencyMs?: number | undefined;
    /** 0..1 over recent requests. */
    successRate: number;
  };
  /** 0..1: operator or web-of-trust score. */
  trust: number;
  /** New and not yet proven by served requests: gets a bounded share of traffic (see schedule). */
  probation?: boolean | undefined;
}

export interface ScheduleRequest {
  model: string;
  promptTokens: number;
  maxTokens: number;
  provider?: ProviderPrefs | undefined;
}

/** Relative weights of the normalised score terms (each term in 0..1, higher is better). */
export interface Weights {
  price: number;
  latency: number;
  throughput: number;
  load: number;
  trust: number;
}

export interface ScoreTerms {
  price: number;
  latency: number;
  throughput: number;
  load: number;
  trust: number;
}

export interface RankedCandidate {
  node: NodeView;
  score: number;
  terms: ScoreTerms;
  /** The most this request may cost on this node (msat). */
  maxCostMsat: number;
}

export type FilterReason =
  | 'MODEL'
  | 'CONTEXT_WINDOW'
  | 'MAX_PRICE'
  | 'NOT_IN_ONLY'
  | 'IGNORED'
  | 'REGION'
  | 'MIN_TRUST'
  | 'NO_FREE_SLOT';

export interface ScheduleResult {
  /** Best first; a random pick among near-equal top candidates is already applied at index 0. */
  ranked: RankedCandidate[];
  /** How many nodes each hard filter removed (explains NO_ELIGIBLE_NODE). */
  filtered: Partial<Record<FilterReason, number>>;
}

export type { SortMode };
