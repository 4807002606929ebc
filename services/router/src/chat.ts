// One chat request through the router, shared by the OpenAI-compatible and native routes:
// estimate, schedule, reserve, dispatch with failover, verify, capture.
import { randomUUID } from 'node:crypto';
import { type Envelope, FedAiError, type ProviderPrefs } from '@fed-ai/protocol';
import {
  candidateMaxCostMsat,
  type Dispatcher,
  type DispatchResult,
  type GenerationParams,
} from './dispatch';
import type { Payments, Reservation } from './payments';
import { failedEntry, type RecentRequests, servedEntry } from './recent-requests';
import type { Registry } from './registry';
import { schedule, weightsFor } from './scheduler';
import type { FilterReason } from './scheduler-types';
import type { SpendHold } from './spend-budget';

export interface ChatContext {
  registry: Registry;
  dispatcher: Dispatcher;
  payments: Payments;
  rng?: () => number;
  /** Federation: serves through a peer router what no local node can (auction + offload). */
  offload?: ((req: ChatRequest, localError: FedAiError) => Promise<ChatOutcome>) | undefined;
  /** The operator dashboard's ring of recent requests (metadata only). */
  recent?: RecentRequests | undefined;
}

/** Local refusals a peer router may still be able to serve. */
const OFFLOADABLE: ReadonlySet<string> = new Set(['MODEL_NOT_FOUND', 'NO_ELIGIBLE_NODE', 'PRICE_TOO_HIGH']);

export interface ChatRequest {
  /** The caller's request id (logs, correlation). The dispatch id is always the router's own. */
  correlationId: string;
  payer: string;
  params: GenerationParams;
  provider?: ProviderPrefs | undefined;
  signal: AbortSignal;
  onDelta?: (text: string) => void | Promise<void>;
  /** Holds the reservation against the payer's spend budgets (paid mode); throws when over. */
  holdSpend?: ((amountMsat: number) => Promise<SpendHold>) | undefined;
  /** False for work that was itself offloaded to us: never passed on to a third router. */
  allowOffload?: boolean | undefined;
}

export interface ChatOutcome extends Omit<DispatchResult, 'node'> {
  /** The node that served (for an offloaded request, the peer's node). */
  node: { id: string };
  /** Set when a peer router served the request. */
  offload?: OffloadInfo | undefined;
  /** Router-generated, unique: names the reservation, the node request and the metering record. */
  dispatchId: string;
  /** Exactly the node-signed cost (never more than the reservation). */
  costMsat: number;
  reservedMsat: number;
  promptTokensEstimate: number;
  /** Captures the charge durably; call once the answer has been sent. Idempotent. */
  settle(): Promise<void>;
}

export interface OffloadInfo {
  peer: string;
  /** The peer's signed offload result: its receipt, holding the node-signed metering. */
  result: Envelope;
  peerCostMsat: number;
  feeMsat: number;
}

/**
 * Prompt tokens for scheduling (context-window filter): about 3 characters per token plus
 * per-message overhead. Not a bound: money uses promptTokensBound, which is.
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
    // A model whose nodes are all down or tripped is an outage (503), not an unknown model (404).
    const known = ctx.registry.all().some((n) => n.registration.models.some((m) => m.id === model));
    if (known)
      throw new FedAiError(
        'NO_ELIGIBLE_NODE',
        'No node serving this model is up right now (each is stale, not ready, banned or its breaker is open).',
      );
    throw modelNotFound(
      model,
      ctx.registry.models().map((m) => m.id),
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
    throw new FedAiError('NO_ELIGIBLE_NODE', noEligibleMessage(views.length, filtered), { filtered });
  }
  return result.ranked;
}

/** Which hard filters removed the serving nodes, e.g. "… (2 serving: NO_FREE_SLOT 2)". */
function noEligibleMessage(serving: number, filtered: Partial<Record<FilterReason, number>>): string {
  const counts = Object.entries(filtered).map(([reason, n]) => `${reason} ${n}`);
  return `No node meets the request constraints right now (${serving} serving: ${counts.join(', ')}).`;
}

/** MODEL_NOT_FOUND naming what is served (bounded: a long list is cut). */
export function modelNotFound(model: string, served: string[]): FedAiError {
  const shown = served.slice(0, 20).map((id) => JSON.stringify(id));
  const list =
    served.length === 0
      ? 'No model is served right now.'
      : `Served: ${shown.join(', ')}${served.length > shown.length ? ` and ${served.length - shown.length} more` : ''}.`;
  return new FedAiError('MODEL_NOT_FOUND', `No node serves ${JSON.stringify(model.slice(0, 200))}. ${list}`, {
    models: served.slice(0, 100),
  });
}

/** A refusal before any node was asked (no node, over budget, no funds) goes in the dashboard's ring too. */
function refusedBeforeDispatch(
  ctx: ChatContext,
  req: ChatRequest,
  startedMs: number,
  error: unknown,
): unknown {
  ctx.recent?.add(failedEntry(req.params.model, startedMs, 0, error));
  return error;
}

export async function runChat(ctx: ChatContext, req: ChatRequest): Promise<ChatOutcome> {
  const startedMs = Date.now();
  const promptTokensEstimate = estimatePromptTokens(req.params.messages);
  let ranked: ReturnType<typeof rankFor>;
  try {
    ranked = rankFor(ctx, req.params.model, promptTokensEstimate, req.params.max_tokens, req.provider);
  } catch (error) {
    const offloadable =
      ctx.offload &&
      req.allowOffload !== false &&
      req.provider?.allow_fallbacks !== false &&
      !req.provider?.only &&
      error instanceof FedAiError &&
      OFFLOADABLE.has(error.code);
    if (!offloadable) throw refusedBeforeDispatch(ctx, req, startedMs, error);
    return ctx.offload!(req, error);
  }
  // Reserve a true upper bound of what the most expensive candidate we may fail over to could
  // cost; dispatch never tries a candidate this does not cover.
  const maxCost = Math.max(...ranked.map((c) => candidateMaxCostMsat(c, req.params)));
  const paid = ctx.payments.mode === 'settlement';
  let spend: SpendHold | null;
  try {
    spend = paid && req.holdSpend ? await req.holdSpend(maxCost) : null;
  } catch (error) {
    throw refusedBeforeDispatch(ctx, req, startedMs, error);
  }
  let reservation: Awaited<ReturnType<Payments['reserve']>>;
  try {
    reservation = await ctx.payments.reserve({
      // Never the caller's id: a reused id must not find an existing reservation or receipt.
      requestId: `rq-${randomUUID()}`,
      payer: req.payer,
      amountMsat: maxCost,
      ahead: true,
    });
  } catch (error) {
    await spend?.release().catch(() => {});
    throw refusedBeforeDispatch(ctx, req, startedMs, error);
  }
  // The reservation's op id names the node request and its metering record (a slot held ahead has
  // its own id).
  const dispatchId = reservation.opId;
  let result: DispatchResult;
  try {
    result = await ctx.dispatcher.run({
      dispatchId,
      correlationId: req.correlationId,
      params: req.params,
      candidates: ranked,
      allowFallbacks: req.provider?.allow_fallbacks !== false,
      signal: req.signal,
      ...(req.onDelta ? { onDelta: req.onDelta } : {}),
      ...(paid ? { reservedMsat: reservation.amountMsat, signatureCheckedAtCapture: true } : {}),
    });
  } catch (error) {
    ctx.recent?.add(failedEntry(req.params.model, startedMs, reservation.amountMsat, error));
    // Release failures are healed by the reservation's timeout; the client sees the real error.
    await ctx.payments.release(reservation).catch(() => {});
    await spend?.release().catch(() => {});
    throw error;
  }
  // The charge is exactly what the node signed; dispatch refused any record above the reservation.
  const costMsat = result.record.cost_msat;
  ctx.recent?.add(servedEntry(req.params.model, startedMs, reservation.amountMsat, result));
  // Charged only after the answer went out (or after the client left and the node signed what it
  // generated up to the cancel): a crash before that leaves the reservation to expire unpaid.
  const settle = captureOnce(ctx.payments, reservation, result, costMsat, spend);
  return {
    ...result,
    dispatchId,
    costMsat,
    reservedMsat: reservation.amountMsat,
    promptTokensEstimate,
    settle,
  };
}

/**
 * The served request's capture, once, however often it is asked for. Its own function so that the
 * closure holds only what the capture needs: it lives until settlement confirms (~100 ms under
 * load), and a closure over runChat's scope kept the request's params, candidates and text alive
 * that long, promoted out of V8's young generation (issue 15).
 */
function captureOnce(
  payments: Payments,
  reservation: Reservation,
  result: DispatchResult,
  costMsat: number,
  spend: SpendHold | null,
): () => Promise<void> {
  const capture = { amountMsat: costMsat, node: result.node.id, metering: result.metering };
  const health = result.node.health;
  let settled: Promise<void> | null = null;
  return () => {
    settled ??= Promise.all([
      payments.capture(reservation, capture).catch((error: unknown) => {
        // The record passed the node's channel MAC here but not settlement's checks: the node
        // is not paid, and its breaker counts it as a failure.
        if (error instanceof FedAiError && error.code === 'BAD_METERING') health.recordFailure(Date.now());
        throw error;
      }),
      // The budget keeps the hold (fails closed) if this write fails.
      spend?.settle(costMsat),
    ]).then(() => {});
    return settled;
  };
}

/**
 * Starts the capture once the answer is out, detached from the request (the route returns at once
 * instead of holding its request, reply and answer until settlement confirms). Never rejects: the
 * capture is in the outbox, so a failure here is retried.
 */
export function settleAfterAnswer(
  outcome: { settle(): Promise<void>; dispatchId: string },
  log: { warn: (o: object, m: string) => void },
): void {
  const dispatchId = outcome.dispatchId;
  outcome.settle().catch((error: unknown) => {
    log.warn({ err: error, dispatch_id: dispatchId }, 'capture not confirmed yet; the outbox retries it');
  });
}
