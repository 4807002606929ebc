// One chat request through the router, shared by the OpenAI-compatible and native routes:
// estimate, schedule, reserve, dispatch with failover, verify, capture.
import { randomUUID } from 'node:crypto';
import { chargeMsat, FedAiError, type ProviderPrefs } from '@fed-ai/protocol';
import type { Dispatcher, DispatchResult, GenerationParams } from './dispatch';
import type { Payments } from './payments';
import type { Registry } from './registry';
import { schedule, weightsFor } from './scheduler';

export interface ChatContext {
  registry: Registry;
  dispatcher: Dispatcher;
  payments: Payments;
  rng?: () => number;
}

export interface ChatRequest {
  /** The caller's request id (logs, correlation). The dispatch id is always the router's own. */
  requestId: string;
  payer: string;
  params: GenerationParams;
  provider?: ProviderPrefs | undefined;
  signal: AbortSignal;
  onDelta?: (text: string) => void;
}

export interface ChatOutcome extends DispatchResult {
  /** Router-generated, unique: names the reservation, the node request and the metering record. */
  dispatchId: string;
  costMsat: number;
  promptTokensEstimate: number;
  /** Captures the charge; call once the answer has been sent. Idempotent. */
  settle(): Promise<void>;
}

/**
 * Prompt tokens before we know the node's tokenizer: deliberately high (about 3 characters per
 * token plus per-message overhead) so that context checks and reservations err on the safe side.
 */
export function estimatePromptTokens(messages: GenerationParams['messages']): number {
  return messages.reduce((sum, m) => sum + Math.ceil(m.content.length / 3) + 6, 2);
}

export function rankFor(
  ctx: ChatContext,
  model: string,
  promptTokens: number,
  maxTokens: number,
  provider?: ProviderPrefs,
) {
  const views = ctx.registry.views(model);
  if (views.length === 0) {
    const known = ctx.registry.models().some((m) => m.id === model);
    throw new FedAiError(
      known ? 'NO_ELIGIBLE_NODE' : 'MODEL_NOT_FOUND',
      known ? undefined : `No node serves ${model}.`,
    );
  }
  const result = schedule({ model, promptTokens, maxTokens, provider }, views, {
    weights: weightsFor(provider?.sort),
    rng: ctx.rng ?? Math.random,
  });
  if (result.ranked.length === 0) {
    const filtered = result.filtered;
    if ((filtered.MAX_PRICE ?? 0) === views.length)
      throw new FedAiError('PRICE_TOO_HIGH', undefined, { filtered });
    if ((filtered.CONTEXT_WINDOW ?? 0) === views.length)
      throw new FedAiError('CONTEXT_TOO_LONG', undefined, { filtered });
    throw new FedAiError('NO_ELIGIBLE_NODE', undefined, { filtered });
  }
  return result.ranked;
}

export async function runChat(ctx: ChatContext, req: ChatRequest): Promise<ChatOutcome> {
  const promptTokensEstimate = estimatePromptTokens(req.params.messages);
  const ranked = rankFor(ctx, req.params.model, promptTokensEstimate, req.params.max_tokens, req.provider);
  // Reserve what the most expensive candidate we may fail over to could cost.
  const maxCost = Math.max(...ranked.map((c) => c.maxCostMsat));
  // Never the caller's id: a reused id must not find an existing reservation or receipt.
  const dispatchId = `rq-${randomUUID()}`;
  const reservation = await ctx.payments.reserve({
    requestId: dispatchId,
    payer: req.payer,
    amountMsat: maxCost,
  });
  let result: DispatchResult;
  try {
    result = await ctx.dispatcher.run({
      requestId: dispatchId,
      correlationId: req.requestId,
      params: req.params,
      candidates: ranked,
      allowFallbacks: req.provider?.allow_fallbacks !== false,
      signal: req.signal,
      ...(req.onDelta ? { onDelta: req.onDelta } : {}),
    });
  } catch (error) {
    // Release failures are healed by the reservation's timeout; the client sees the real error.
    await ctx.payments.release(reservation).catch(() => {});
    throw error;
  }
  const costMsat = chargeMsat(result.record.cost_msat, reservation.amountMsat || result.record.cost_msat);
  // Charged only after the answer went out: a crash in between leaves the reservation to expire,
  // so a client is never charged for an answer it did not get.
  let settled: Promise<void> | null = null;
  const settle = () => {
    settled ??= ctx.payments.capture(reservation, {
      amountMsat: costMsat,
      node: result.node.id,
      metering: result.metering,
    });
    return settled;
  };
  return { ...result, dispatchId, costMsat, promptTokensEstimate, settle };
}
