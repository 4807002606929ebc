// The node's HTTP shell: verifies signed inference requests from allowed routers, admits or sheds
// them, streams the runner's tokens, and signs the metering record that ends every answer.

import {
  abortOnDisconnect,
  addMetricsRoute,
  addRawJsonParser,
  createServer,
  errorBody,
  rawBody,
  sendError,
  verifyAllowedEnvelope,
  writeSseData,
} from '@fed-ai/kit';
import {
  ChannelKeys,
  createEnvelope,
  type Envelope,
  type InferenceRequest,
  isMacEnvelope,
  KIND,
  LIMITS,
  type ModelOffer,
  publicKeyOf,
  REQUEST_AUTH,
  type ReasonCode,
  type ReplayStore,
} from '@fed-ai/protocol';
import type { FastifyInstance } from 'fastify';
import { Counter, Gauge, Histogram, type Registry } from 'prom-client';
import { z } from 'zod';
import type { Admission } from './admission';
import { InFlightJobs, registerCancelRoute } from './inflight';
import { buildMeteringRecord, type NodeStats } from './metering';
import type { MeteringLog } from './metering-log';
import { type GenerationResult, type Runner, RunnerError } from './runners/runner';

export interface NodeServerDeps {
  secretKey: Uint8Array;
  runner: Runner;
  /** Offers by public model id (what routers ask for). */
  offers: Map<string, ModelOffer>;
  /** Public model id -> runner model id. */
  runnerModelIds: Map<string, string>;
  admission: Admission;
  replayStore: ReplayStore;
  /** Routers allowed to send work (grows as registration learns router keys). */
  allowedRouters: Set<string>;
  stats: NodeStats;
  metrics: Registry;
  capacity: { max_concurrency: number; queue_max: number };
  isReady: () => boolean;
  /** Why the node is not ready although its runner is (a router refused it for good), or null. */
  notReadyReason?: () => string | null;
  bodyLimitBytes?: number;
  /** Where every signed metering record is kept (checked against payout statements). */
  meteringLog?: MeteringLog | undefined;
}

const challengeSchema = z.object({
  nonce: z.string().regex(/^[0-9a-f]{64}$/),
  router: z.string().regex(/^[0-9a-f]{64}$/),
  endpoint: z
    .string()
    .max(2048)
    .url()
    .refine((u) => u.startsWith('http://') || u.startsWith('https://')),
});

const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache, no-transform',
  // No `connection` header: Node adds `keep-alive: timeout=N` only when it writes that header
  // itself, and without the hint a client pool keeps idle sockets past our keep-alive timeout and
  // sends its next request into a socket we are closing (ECONNRESET).
  'x-accel-buffering': 'no',
};

export function createNodeServer(deps: NodeServerDeps): FastifyInstance {
  const app = createServer({ name: 'node', bodyLimitBytes: deps.bodyLimitBytes ?? 512 * 1024 });
  addRawJsonParser(app);
  const pubkey = publicKeyOf(deps.secretKey);
  const m = nodeMetrics(deps.metrics, deps.admission);
  const jobs = new InFlightJobs();
  // Routers it registered with may send requests with a MAC instead of a signature.
  const channel = { keys: new ChannelKeys(deps.secretKey), from: deps.allowedRouters };
  registerCancelRoute(app, {
    pubkey,
    replayStore: deps.replayStore,
    allowedRouters: deps.allowedRouters,
    jobs,
    channel,
  });

  app.get('/health', async () => ({ ok: true }));
  app.get('/ready', async (_request, reply) => {
    if (!deps.isReady()) return sendError(reply, 'NOT_READY', 'starting');
    const health = await deps.runner.health();
    if (!health.ok) return sendError(reply, 'NOT_READY', health.detail ?? 'the runner does not answer');
    const reason = deps.notReadyReason?.();
    if (reason) return sendError(reply, 'NOT_READY', reason);
    return { ok: true };
  });
  app.get('/v1/info', async () => ({
    pubkey,
    runner: deps.runner.kind,
    models: [...deps.offers.values()],
    capacity: deps.capacity,
    free_slots: deps.admission.freeSlots,
    queue_depth: deps.admission.queued,
  }));
  addMetricsRoute(app, deps.metrics);

  // Proof of endpoint control: a router that is registering us sends a fresh nonce; we answer with
  // a registration envelope signed by our key, addressed to that router, carrying the nonce. Only
  // routers we know (configured or learned at registration) get an answer.
  app.post('/v1/challenge', async (request, reply) => {
    let body: unknown;
    try {
      body = JSON.parse(rawBody(request));
    } catch {
      return sendError(reply, 'BAD_JSON', 'not JSON');
    }
    const parsed = challengeSchema.safeParse(body);
    if (!parsed.success) return sendError(reply, 'INVALID_REQUEST', 'expected {nonce, router, endpoint}');
    const { nonce, router, endpoint } = parsed.data;
    if (!deps.allowedRouters.has(router)) return sendError(reply, 'ROUTER_NOT_ALLOWED');
    const models = [...deps.offers.values()].slice(0, LIMITS.maxModels);
    if (models.length === 0) return sendError(reply, 'NOT_READY', 'no models yet');
    return createEnvelope(
      KIND.nodeRegistration,
      { endpoint, models, capacity: deps.capacity, auth: [...REQUEST_AUTH] },
      { audience: router, tags: [['challenge', nonce]], expiresInS: 60 },
      deps.secretKey,
    );
  });

  app.post('/v1/infer', async (request, reply) => {
    const refuse = (code: ReasonCode, message?: string, details?: Record<string, unknown>) => {
      m.requests.inc({ outcome: 'refused' });
      m.errors.inc({ code });
      return sendError(reply, code, message, details);
    };
    // The router is checked before the id is recorded: a stranger's envelopes leave no replay rows.
    const verified = await verifyAllowedEnvelope(rawBody(request), {
      me: pubkey,
      kinds: [KIND.inferenceRequest],
      replayStore: deps.replayStore,
      allowed: deps.allowedRouters,
      channel,
      notAllowed: 'ROUTER_NOT_ALLOWED',
    });
    if (!verified.ok)
      return refuse(verified.code, verified.code === 'ROUTER_NOT_ALLOWED' ? undefined : verified.detail);
    const router = verified.envelope.pubkey;
    const viaChannel = isMacEnvelope(verified.envelope);
    const job = verified.payload;
    const offer = deps.offers.get(job.model);
    const runnerModel = deps.runnerModelIds.get(job.model);
    if (!offer || !runnerModel) return refuse('MODEL_NOT_FOUND', `This node does not serve ${job.model}.`);

    // The client (router) going away cancels everything: waiting in the queue or generating.
    // A signed cancel from that router stops the generation but keeps the stream, which then ends
    // with the signed record of what was generated.
    const cancelled = abortOnDisconnect(reply);
    const tracked = jobs.start(job.request_id, router);
    if (!tracked) return refuse('OVERLOADED', 'Too many generations in flight.', { retry_after_s: 1 });
    reply.raw.once('close', tracked.end);
    const stopped = AbortSignal.any([cancelled, tracked.signal]);
    const admitted = await deps.admission.acquire(stopped);
    if (!admitted.ok) {
      if (admitted.reason === 'CANCELLED') return cancelled.aborted ? reply : refuse('CANCELLED');
      return refuse(
        'OVERLOADED',
        admitted.reason === 'QUEUE_FULL' ? 'Queue full.' : 'Waited too long in the queue.',
        {
          retry_after_s: deps.admission.retryAfterS(),
        },
      );
    }
    const startedAt = performance.now();
    let firstTokenAt: number | undefined;
    let streamed = false;
    try {
      const maxTokens = Math.min(job.max_tokens, offer.max_output_tokens);
      const generator = deps.runner.generate({
        model: runnerModel,
        messages: job.messages,
        maxTokens,
        temperature: job.temperature,
        topP: job.top_p,
        stop: job.stop,
        seed: job.seed,
        signal: stopped,
      });
      if (job.stream) {
        reply.hijack();
        reply.raw.writeHead(200, { ...SSE_HEADERS, 'x-request-id': request.id });
        streamed = true;
      }
      let index = 0;
      let step = await generator.next();
      const deltas: string[] = [];
      while (!step.done) {
        firstTokenAt ??= performance.now();
        if (job.stream) {
          await writeSseData(reply.raw, JSON.stringify({ type: 'delta', index, delta: step.value.text }));
        } else {
          deltas.push(step.value.text);
        }
        index += 1;
        step = await generator.next();
      }
      const result: GenerationResult = step.value;
      const endedAt = performance.now();
      const ttftMs = (firstTokenAt ?? endedAt) - startedAt;
      const record = buildMeteringRecord({
        request: job,
        routerPubkey: router,
        result,
        price: offer.price,
        ttftMs,
        wallMs: endedAt - startedAt,
        runnerKind: deps.runner.kind,
      });
      const metering = createEnvelope(
        KIND.meteringRecord,
        record,
        // A receipt stays evidence after the fact: no expiration tag.
        { audience: router, refs: [job.request_id], expiresInS: 0 },
        deps.secretKey,
      );
      deps.meteringLog?.append(metering);
      // A router on a MAC channel may check this instead of the signature when settlement checks
      // the signature before charging (docs/protocol.md "Metering MAC").
      const meteringMac = viaChannel ? { metering_mac: channel.keys.attest(metering.id, router) } : {};
      deps.stats.record(ttftMs, result.completionTokens, endedAt - (firstTokenAt ?? startedAt));
      m.observe(result, ttftMs, endedAt - startedAt, job.model);
      const usage = {
        prompt_tokens: result.promptTokens,
        completion_tokens: result.completionTokens,
        total_tokens: result.promptTokens + result.completionTokens,
      };
      if (job.stream) {
        if (!cancelled.aborted) {
          await writeSseData(
            reply.raw,
            JSON.stringify({
              type: 'done',
              finish_reason: result.finishReason,
              usage,
              metering,
              ...meteringMac,
            }),
          );
        }
        reply.raw.end();
        return reply;
      }
      return reply.send({
        text: result.text,
        finish_reason: result.finishReason,
        usage,
        metering,
        ...meteringMac,
      });
    } catch (error) {
      const code = failureCode(error);
      m.requests.inc({ outcome: 'failed' });
      m.errors.inc({ code });
      // Only a runner's own errors are answered as they are: any other can name files here (the
      // metering log's), so it is logged and answered as INTERNAL with a fixed message.
      const known = error instanceof RunnerError;
      if (!known) request.log.error({ err: error }, 'inference failed');
      const message = known ? error.message : 'The node failed while serving this request.';
      if (streamed) {
        if (!reply.raw.writableEnded) {
          await writeSseData(
            reply.raw,
            JSON.stringify({ type: 'error', error: errorBody(code, message).error }),
          );
          reply.raw.end();
        }
        return reply;
      }
      return sendError(reply, code, message);
    } finally {
      admitted.release();
      tracked.end();
    }
  });
  return app;
}

function failureCode(error: unknown): ReasonCode {
  if (error instanceof RunnerError) {
    if (error.code === 'MODEL_NOT_FOUND') return 'MODEL_NOT_FOUND';
    if (error.code === 'CANCELLED') return 'CANCELLED';
    return error.code;
  }
  return 'INTERNAL';
}

function nodeMetrics(registry: Registry, admission: Admission) {
  const requests = new Counter({
    name: 'fedai_node_requests_total',
    help: 'Inference requests by outcome',
    labelNames: ['outcome'],
    registers: [registry],
  });
  const tokens = new Counter({
    name: 'fedai_node_tokens_total',
    help: 'Tokens metered',
    labelNames: ['direction', 'model'],
    registers: [registry],
  });
  const errors = new Counter({
    name: 'fedai_node_errors_total',
    help: 'Refusals and failures by reason code',
    labelNames: ['code'],
    registers: [registry],
  });
  new Gauge({
    name: 'fedai_node_queue_depth',
    help: 'Requests waiting for a slot',
    registers: [registry],
    collect() {
      this.set(admission.queued);
    },
  });
  new Gauge({
    name: 'fedai_node_in_flight',
    help: 'Generations running',
    registers: [registry],
    collect() {
      this.set(admission.inFlight);
    },
  });
  const ttft = new Histogram({
    name: 'fedai_node_ttft_seconds',
    help: 'Time to first token',
    buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [registry],
  });
  const duration = new Histogram({
    name: 'fedai_node_request_duration_seconds',
    help: 'Whole generation time',
    buckets: [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120],
    registers: [registry],
  });
  return {
    requests,
    errors,
    observe(result: GenerationResult, ttftMs: number, wallMs: number, model: string) {
      requests.inc({ outcome: result.finishReason === 'cancelled' ? 'cancelled' : 'ok' });
      tokens.inc({ direction: 'in', model }, result.promptTokens);
      tokens.inc({ direction: 'out', model }, result.completionTokens);
      ttft.observe(ttftMs / 1000);
      duration.observe(wallMs / 1000);
    },
  };
}

export type { Envelope, InferenceRequest };
