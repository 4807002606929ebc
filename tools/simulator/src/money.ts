// The money of one simulated request, computed by the real functions: the reservation is the
// router's candidateMaxCostMsat over the ranked candidates (as runChat reserves), the charge is the
// node-signed costMsat at the dispatched price, and the split is settlement's splitCharge.
// Synthetic prompts are text ("tok " per prompt token) so promptTokensBound sees real bytes.
import {
  costMsat,
  maxCostMsat,
  type Price,
  promptOverheadOf,
  promptTokensBound,
  splitCharge,
} from '@fed-ai/protocol';
import type { RankedCandidate } from '@fed-ai/router';
import { candidateMaxCostMsat, type GenerationParams } from '@fed-ai/router/dispatch';

const PROMPT_CACHE_MAX = 4_096;

/** Synthetic chat messages for a prompt of `promptTokens` tokens (cached per length, bounded). */
export class PromptTexts {
  private readonly cache = new Map<number, GenerationParams['messages']>();

  messages(promptTokens: number): GenerationParams['messages'] {
    let messages = this.cache.get(promptTokens);
    if (!messages) {
      if (this.cache.size >= PROMPT_CACHE_MAX) this.cache.clear();
      messages = [{ role: 'user', content: 'tok '.repeat(promptTokens) }];
      this.cache.set(promptTokens, messages);
    }
    return messages;
  }
}

/**
 * The most a candidate can cost. With `checkEvery` 1 every call is candidateMaxCostMsat itself;
 * with n > 1 (large runs: promptTokensBound normalises the whole prompt on each call) the bound is
 * computed once per prompt text and overhead, fed to the real maxCostMsat, and every n-th call is
 * compared with candidateMaxCostMsat (a difference is counted as an invariant violation).
 */
export class ReservationMath {
  private readonly bounds = new Map<GenerationParams['messages'], Map<string, number>>();
  private calls = 0;
  mismatches = 0;

  constructor(private readonly checkEvery: number) {}

  candidateMaxCost(candidate: RankedCandidate, params: GenerationParams): number {
    if (this.checkEvery <= 1) return candidateMaxCostMsat(candidate, params);
    const offer = candidate.node.offer;
    const overhead = promptOverheadOf(offer);
    let perOverhead = this.bounds.get(params.messages);
    if (!perOverhead) {
      if (this.bounds.size >= PROMPT_CACHE_MAX) this.bounds.clear();
      perOverhead = new Map();
      this.bounds.set(params.messages, perOverhead);
    }
    const key = `${overhead.per_message_tokens}/${overhead.fixed_tokens}`;
    let bound = perOverhead.get(key);
    if (bound === undefined) {
      bound = promptTokensBound(params.messages, overhead);
      perOverhead.set(key, bound);
    }
    const cost = maxCostMsat(bound, params.max_tokens, offer.price, offer.max_output_tokens);
    this.calls += 1;
    if (this.calls % this.checkEvery === 0 && cost !== candidateMaxCostMsat(candidate, params))
      this.mismatches += 1;
    return cost;
  }

  /** runChat's reservation: the most expensive candidate dispatch may fail over to. */
  reservation(ranked: readonly RankedCandidate[], params: GenerationParams): number {
    let most = 0;
    for (const c of ranked) most = Math.max(most, this.candidateMaxCost(c, params));
    return most;
  }
}

/** The node-signed charge of a generation and its split between node and router. */
export function chargeOf(
  promptTokens: number,
  outputTokens: number,
  price: Price,
  routerFeeBps: number,
): { costMsat: number; nodeMsat: number; routerMsat: number } {
  const cost = costMsat(promptTokens, outputTokens, price);
  const { nodeMsat, routerMsat } = splitCharge(cost, routerFeeBps);
  return { costMsat: cost, nodeMsat, routerMsat };
}
