// OpenAI-compatible surface: POST /v1/chat/completions (stream and not) and GET /v1/models.
// Errors use OpenAI's shape with our reason code in `code`.
import { randomUUID } from 'node:crypto';
import { abortOnDisconnect, rawBody, toFedAiError } from '@fed-ai/kit';
import { encodeEnvelopeHeader, FedAiError, providerPrefsSchema } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyReply } from 'fastify';
import { z } from 'zod';
import type { ApiKeys } from '../apikeys';
import {
  type ChatContext,
  type ChatOutcome,
  estimatePromptTokens,
  runChat,
  settleAfterAnswer,
} from '../chat';
import { type L402Gate, l402Refusal, parseL402Authorization, type VerifiedL402 } from '../l402';
import { openAiError } from '../openai-errors';
import { streamChat } from '../stream-chat';

const contentPart = z.object({ type: z.literal('text'), text: z.string().max(200_000) });
const messageSchema = z.object({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool']),
  content: z.union([z.string().max(200_000), z.array(contentPart).max(64)]).nullable(),
  name: z.string().max(64).optional(),
});

export const openAiChatSchema = z.object({
  model: z.string().min(1).max(128),
  messages: z.array(messageSchema).min(1).max(256),
  max_tokens: z.number().int().positive().max(1_000_000).optional(),
  max_completion_tokens: z.number().int().positive().max(1_000_000).optional(),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  stop: z
    .union([z.string().min(1).max(64), z.array(z.string().min(1).max(64)).max(4)])
    .nullable()
    .optional(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .optional(),
  n: z.literal(1).optional(),
  stream: z.boolean().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional(),
  user: z.string().max(256).optional(),
  provider: providerPrefsSchema.optional(),
});

function sendOpenAiError(reply: FastifyReply, error: unknown): FastifyReply {
  const e = toFedAiError(error);
  if (
    e.code === 'RATE_LIMITED' ||
    e.code === 'OVERLOADED' ||
    e.code === 'BUDGET_EXHAUSTED' ||
    e.code === 'L402_NOT_CREDITED'
  )
    reply.header('retry-after', String(e.details?.retry_after_s ?? 1));
  return reply.code(e.status).send(openAiError(e.code, e.message));
}

export interface OpenAiRouteDeps {
  ctx: ChatContext;
  apiKeys: ApiKeys;
  defaultMaxTokens: number;
  /** Paid mode with L402_ENABLED: pay per request (docs/l402.md). */
  l402?: L402Gate | undefined;
}

export function registerOpenAiRoutes(app: FastifyInstance, deps: OpenAiRouteDeps): void {
  app.get('/v1/models', async () => ({
    object: 'list',
    data: deps.ctx.registry.models().map((m) => ({
      id: m.id,
      object: 'model',
      created: 0,
      owned_by: 'fed-ai',
      context_window: m.context_window,
      nodes: m.nodes,
      price: m.price,
      demo: m.demo,
    })),
  }));

  app.post('/v1/chat/completions', async (request, reply) => {
    const receivedAt = performance.now();
    // Who pays, by route: an API key (Bearer) first, then an L402 token, else (L402 on, no
    // credentials at all) a 402 challenge once the body is priced.
    const auth = request.headers.authorization;
    const l402Credentials = deps.l402 ? parseL402Authorization(auth) : null;
    const key = l402Credentials
      ? null
      : await deps.apiKeys.authenticate(auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined);
    let l402: VerifiedL402 | null = null;
    let l402Error: FedAiError | null = null;
    if (!key && deps.l402 && l402Credentials) {
      try {
        l402 = deps.l402.verify(l402Credentials);
      } catch (error) {
        l402Error = toFedAiError(error);
      }
    } else if (!key && deps.l402 && auth === undefined) l402Error = new FedAiError('PAYMENT_REQUIRED');
    else if (!key)
      return sendOpenAiError(reply, new FedAiError('UNAUTHORIZED', 'Missing or invalid API key.'));
    let body: z.infer<typeof openAiChatSchema>;
    try {
      body = openAiChatSchema.parse(JSON.parse(rawBody(request)));
    } catch (error) {
      return sendOpenAiError(
        reply,
        error instanceof SyntaxError
          ? new FedAiError('INVALID_REQUEST', 'The body is not valid JSON.')
          : error,
      );
    }
    const messages = body.messages.map((m) => ({
      role: m.role === 'developer' ? ('system' as const) : m.role,
      content: typeof m.content === 'string' ? m.content : (m.content ?? []).map((p) => p.text).join(''),
      ...(m.name ? { name: m.name } : {}),
    }));
    const maxTokens = body.max_completion_tokens ?? body.max_tokens ?? deps.defaultMaxTokens;
    const params = {
      model: body.model,
      messages,
      max_tokens: maxTokens,
      temperature: body.temperature,
      top_p: body.top_p,
      stop: body.stop == null ? undefined : typeof body.stop === 'string' ? [body.stop] : body.stop,
      seed: body.seed,
    };
    // An L402 refusal that asks for a (new) payment carries a fresh challenge priced for this body.
    const refuse = async (error: unknown) => {
      const e = toFedAiError(error);
      if (!deps.l402 || key) return sendOpenAiError(reply, e);
      let shaped = e;
      if (l402 && e.code === 'INSUFFICIENT_BALANCE')
        shaped = await deps.l402.shortfall(l402.payer).catch((failure: unknown) => toFedAiError(failure));
      const answer = await l402Refusal(deps.l402, deps.ctx, shaped, {
        clientAddress: request.ip,
        params,
        provider: body.provider,
      });
      if (answer.challenge) reply.header('www-authenticate', answer.challenge);
      return sendOpenAiError(reply, answer.error);
    };
    if (l402Error || (!key && !l402)) return refuse(l402Error ?? new FedAiError('PAYMENT_REQUIRED'));
    const payer = key ? key.id : l402!.payer;
    const holdSpend = key ? deps.apiKeys.spendHolder(key) : undefined;
    const admitted = await deps.apiKeys.admit(
      key ?? deps.l402!.limits(payer),
      estimatePromptTokens(messages) + maxTokens,
    );
    if (!admitted.ok)
      return sendOpenAiError(
        reply,
        new FedAiError('RATE_LIMITED', admitted.detail, { retry_after_s: admitted.retryAfterS }),
      );
    const requestId = request.id;
    const completionId = `chatcmpl-${randomUUID()}`;
    const created = Math.floor(Date.now() / 1000);
    const cancelled = abortOnDisconnect(reply);
    let usedTokens = 0;
    try {
      if (!body.stream) {
        const outcome = await runChat(deps.ctx, {
          correlationId: requestId,
          payer,
          holdSpend,
          params,
          provider: body.provider,
          signal: cancelled,
        });
        usedTokens = outcome.record.tokens_in + outcome.record.tokens_out;
        const overheadMs = Math.max(0, performance.now() - receivedAt - outcome.nodeMs);
        reply.header('x-fedai-receipt', encodeEnvelopeHeader(outcome.metering));
        reply.header('x-fedai-overhead-ms', overheadMs.toFixed(2));
        reply.header('x-fedai-node', outcome.node.id);
        if (outcome.offload)
          reply.header('x-fedai-peer-receipt', encodeEnvelopeHeader(outcome.offload.result));
        reply.send({
          id: completionId,
          object: 'chat.completion',
          created,
          model: body.model,
          choices: [
            {
              index: 0,
              message: { role: 'assistant', content: outcome.text },
              logprobs: null,
              finish_reason: finish(outcome.finishReason),
            },
          ],
          usage: usageOf(outcome.record),
          fedai: {
            request_id: outcome.dispatchId,
            node: outcome.node.id,
            cost_msat: outcome.costMsat,
            receipt: outcome.metering,
            ...offloadFields(outcome),
          },
        });
        // The key's slot is free once the answer is out; the capture runs after it.
        admitted.release(usedTokens);
        settleAfterAnswer(outcome, request.log);
        return reply;
      }
      // Streaming: headers go out before the first token, so the receipt rides in the stream.
      const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
        JSON.stringify({
          id: completionId,
          object: 'chat.completion.chunk',
          created,
          model: body.model,
          choices,
          ...extra,
        });
      await streamChat(deps.ctx, {
        request: {
          correlationId: requestId,
          payer,
          holdSpend,
          params,
          provider: body.provider,
          signal: cancelled,
        },
        reply,
        log: request.log,
        onAnswered: (outcome) => {
          admitted.release(outcome ? outcome.record.tokens_in + outcome.record.tokens_out : 0);
        },
        wire: {
          head: () => [chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }])],
          delta: (text) => chunk([{ index: 0, delta: { content: text }, finish_reason: null }]),
          done: (outcome) => {
            const overheadMs = Math.max(0, performance.now() - receivedAt - outcome.nodeMs);
            const fedai = {
              request_id: outcome.dispatchId,
              node: outcome.node.id,
              cost_msat: outcome.costMsat,
              overhead_ms: Number(overheadMs.toFixed(2)),
              receipt: outcome.metering,
              ...offloadFields(outcome),
            };
            const last = [{ index: 0, delta: {}, finish_reason: finish(outcome.finishReason) }];
            const withUsage = body.stream_options?.include_usage === true;
            return {
              data: withUsage
                ? [chunk(last), chunk([], { usage: usageOf(outcome.record), fedai })]
                : [chunk(last, { fedai })],
              trailer: `: x-fedai-receipt ${encodeEnvelopeHeader(outcome.metering)}\n\ndata: [DONE]\n\n`,
            };
          },
          error: (e) => ({
            data: [JSON.stringify(openAiError(e.code, e.message))],
            trailer: 'data: [DONE]\n\n',
          }),
        },
      });
      return reply;
    } catch (error) {
      return refuse(error);
    } finally {
      admitted.release(usedTokens);
    }
  });
}

function finish(reason: string): 'stop' | 'length' {
  return reason === 'length' ? 'length' : 'stop';
}

function usageOf(record: { tokens_in: number; tokens_out: number }) {
  return {
    prompt_tokens: record.tokens_in,
    completion_tokens: record.tokens_out,
    total_tokens: record.tokens_in + record.tokens_out,
  };
}

/** For a request a peer router served: who, its signed receipt, its cost and our fee (msat). */
function offloadFields(outcome: ChatOutcome): Record<string, unknown> {
  if (!outcome.offload) return {};
  return {
    peer: outcome.offload.peer,
    peer_receipt: outcome.offload.result,
    peer_cost_msat: outcome.offload.peerCostMsat,
    fee_msat: outcome.offload.feeMsat,
  };
}
