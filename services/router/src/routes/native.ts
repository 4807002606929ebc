// Native signed surface: node registration and heartbeats, signed inference (/infer and
// /infer/stream), signed quotes, and read-only views (/nodes, /status, /v1/router).

import { abortOnDisconnect, errorBody, rawBody, sendError } from '@fed-ai/kit';
import {
  createEnvelope,
  FedAiError,
  KIND,
  maxCostMsat,
  type ReplayStore,
  toNpub,
  verifyEnvelope,
} from '@fed-ai/protocol';
import type { FastifyInstance } from 'fastify';
import { type ChatContext, estimatePromptTokens, rankFor, runChat, settleAfterAnswer } from '../chat';
import { candidateMaxCostMsat } from '../dispatch';
import { streamChat } from '../stream-chat';

export interface NativeRouteDeps {
  ctx: ChatContext;
  secretKey: Uint8Array;
  pubkey: string;
  name: string;
  replayStore: ReplayStore;
  heartbeatIntervalS: number;
}

export function registerNativeRoutes(app: FastifyInstance, deps: NativeRouteDeps): void {
  const { registry } = deps.ctx;

  app.get('/v1/router', async () => ({
    pubkey: deps.pubkey,
    npub: toNpub(deps.pubkey),
    name: deps.name,
    version: '0.1.0',
  }));

  app.post('/v1/nodes/register', async (request, reply) => {
    const result = await registry.register(rawBody(request), { sourceIp: request.ip });
    if (!result.ok) return sendError(reply, result.code, result.detail);
    request.log.info({ node: result.node.id, endpoint: result.node.endpoint }, 'node registered');
    return { ok: true, heartbeat_interval_s: deps.heartbeatIntervalS };
  });

  app.post('/v1/nodes/heartbeat', async (request, reply) => {
    const result = await registry.heartbeat(rawBody(request));
    if (!result.ok) return sendError(reply, result.code, result.detail);
    return { ok: true };
  });

  app.get('/nodes', async () => ({
    nodes: registry.all().map((n) => ({
      id: n.id,
      endpoint: n.endpoint,
      models: n.registration.models,
      region: n.registration.region ?? null,
      serving: registry.isServing(n),
      last_seen_ms_ago: n.lastSeenMs ? Date.now() - n.lastSeenMs : null,
      free_slots: n.heartbeat?.free_slots ?? null,
      in_flight: n.inFlight,
      health: n.health.snapshot(),
      banned: n.banned,
    })),
  }));

  app.get('/status', async () => {
    const nodes = registry.all();
    const serving = nodes.filter((n) => registry.isServing(n));
    return {
      name: deps.name,
      pubkey: deps.pubkey,
      nodes_registered: nodes.length,
      nodes_serving: serving.length,
      models: registry.models(),
      payments: deps.ctx.payments.mode,
    };
  });

  const verifyClient = (raw: string) =>
    verifyEnvelope(raw, { me: deps.pubkey, kinds: [KIND.inferenceRequest], replayStore: deps.replayStore });

  app.post('/infer', async (request, reply) => {
    const verified = await verifyClient(rawBody(request));
    if (!verified.ok) return sendError(reply, verified.code, verified.detail);
    const job = verified.payload;
    const client = verified.envelope.pubkey;
    const cancelled = abortOnDisconnect(reply);
    const outcome = await runChat(deps.ctx, {
      correlationId: job.request_id,
      payer: client,
      params: job,
      provider: job.provider,
      signal: cancelled,
    });
    reply.send(answer(outcome, client, job.request_id));
    settleAfterAnswer(outcome, request.log);
    return reply;
  });

  app.post('/infer/stream', async (request, reply) => {
    const verified = await verifyClient(rawBody(request));
    if (!verified.ok) return sendError(reply, verified.code, verified.detail);
    const job = verified.payload;
    const client = verified.envelope.pubkey;
    const cancelled = abortOnDisconnect(reply);
    let index = 0;
    await streamChat(deps.ctx, {
      request: {
        correlationId: job.request_id,
        payer: client,
        params: job,
        provider: job.provider,
        signal: cancelled,
      },
      reply,
      log: request.log,
      wire: {
        head: () => [],
        delta: (delta) => JSON.stringify({ type: 'delta', index: index++, delta }),
        done: (outcome) => ({
          data: [JSON.stringify({ type: 'done', response: answer(outcome, client, job.request_id) })],
        }),
        error: (e) => ({
          data: [JSON.stringify({ type: 'error', error: errorBody(e.code, e.message).error })],
        }),
      },
    });
    return reply;
  });

  function answer(outcome: Awaited<ReturnType<typeof runChat>>, client: string, requestId: string) {
    return createEnvelope(
      KIND.inferenceResponse,
      {
        request_id: requestId,
        model: outcome.record.model,
        node: outcome.node.id,
        text: outcome.text,
        finish_reason: outcome.finishReason,
        usage: {
          prompt_tokens: outcome.record.tokens_in,
          completion_tokens: outcome.record.tokens_out,
          total_tokens: outcome.record.tokens_in + outcome.record.tokens_out,
        },
        cost_msat: outcome.costMsat,
        receipt: JSON.stringify(outcome.metering),
      },
      { audience: client, refs: [requestId], expiresInS: 0 },
      deps.secretKey,
    );
  }

  app.post('/quote', async (request, reply) => {
    const verified = await verifyEnvelope(rawBody(request), {
      me: deps.pubkey,
      kinds: [KIND.quoteRequest],
      replayStore: deps.replayStore,
    });
    if (!verified.ok) return sendError(reply, verified.code, verified.detail);
    const q = verified.payload;
    const promptTokens = q.prompt_tokens ?? (q.messages ? estimatePromptTokens(q.messages) : undefined);
    if (promptTokens === undefined)
      throw new FedAiError('INVALID_REQUEST', 'Give messages or prompt_tokens.');
    const ranked = rankFor(deps.ctx, q.model, promptTokens, q.max_tokens, q.provider);
    const best = ranked[0]!;
    // An honest upper bound: what the router would reserve (the sound prompt bound at the priciest
    // candidate it may fail over to); with only a token count, that count at the same prices.
    const maxCost = Math.max(
      ...ranked.map((c) =>
        q.messages
          ? candidateMaxCostMsat(c, { model: q.model, messages: q.messages, max_tokens: q.max_tokens })
          : maxCostMsat(promptTokens, q.max_tokens, c.node.offer.price, c.node.offer.max_output_tokens),
      ),
    );
    return createEnvelope(
      KIND.quoteResponse,
      {
        model: q.model,
        prompt_tokens: promptTokens,
        max_tokens: Math.min(q.max_tokens, best.node.offer.max_output_tokens),
        price: best.node.offer.price,
        max_cost_msat: maxCost,
        node: best.node.id,
        candidates: ranked.length,
        expires_at: Math.floor(Date.now() / 1000) + 60,
      },
      { audience: verified.envelope.pubkey },
      deps.secretKey,
    );
  });
}
