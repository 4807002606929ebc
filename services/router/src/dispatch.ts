// Dispatch: sends a signed inference request to the best candidate, relays its tokens as they
// arrive, and verifies the node's signed metering against what was actually streamed. Fails over
// to the next candidate only while nothing has reached the client; never after.

import { readErrorCode } from '@fed-ai/kit';
import {
  costMsat,
  createEnvelope,
  type Envelope,
  FedAiError,
  type FinishReason,
  type InferenceRequest,
  KIND,
  type MeteringRecord,
  outputSha256,
  promptSha256,
  type ReasonCode,
  verifyEnvelope,
} from '@fed-ai/protocol';
import type { Logger } from 'pino';
import { type Agent, request } from 'undici';
import type { NodeRecord, Registry } from './registry';
import type { RankedCandidate } from './scheduler-types';

export interface DispatchTimeouts {
  firstTokenMs: number;
  totalMs: number;
}

export interface DispatchDeps {
  secretKey: Uint8Array;
  routerPubkey: string;
  registry: Registry;
  agent: Agent;
  timeouts: DispatchTimeouts;
  maxAttempts: number;
  logger: Logger;
}

export type GenerationParams = Pick<
  InferenceRequest,
  'model' | 'messages' | 'max_tokens' | 'temperature' | 'top_p' | 'stop' | 'seed'
>;

export interface DispatchInput {
  /** Router-generated id of this dispatch (names the node request, metering and reservation). */
  requestId: string;
  /** The caller's request id: sent to the node as x-request-id so logs follow the request. */
  correlationId?: string | undefined;
  params: GenerationParams;
  candidates: RankedCandidate[];
  allowFallbacks: boolean;
  /** Aborted when the client goes away: the node request is cancelled. */
  signal: AbortSignal;
  /** Streaming clients get each delta at once; without it the answer is buffered. */
  onDelta?: (text: string) => void;
}

export interface DispatchResult {
  node: NodeRecord;
  text: string;
  finishReason: FinishReason;
  record: MeteringRecord;
  metering: Envelope;
  attempts: number;
  /** Time spent waiting on the node (for the router-overhead header). */
  nodeMs: number;
}

const MAX_SSE_BUFFER_CHARS = 2_000_000;

class AttemptError extends Error {
  constructor(
    readonly code: ReasonCode,
    message: string,
    readonly retryAfterS?: number,
  ) {
    super(message);
  }
}

export class Dispatcher {
  constructor(private readonly deps: DispatchDeps) {}

  async run(input: DispatchInput): Promise<DispatchResult> {
    const limit = input.allowFallbacks ? Math.min(this.deps.maxAttempts, input.candidates.length) : 1;
    let attempts = 0;
    let lastError: AttemptError | null = null;
    let deliveredOutput = false;
    // Time lost on failed attempts counts as waiting on nodes, not as router overhead.
    let failedWaitMs = 0;
    for (const candidate of input.candidates) {
      if (attempts >= limit || input.signal.aborted) break;
      const node = this.deps.registry.get(candidate.node.id);
      if (!node?.health.available(Date.now())) continue;
      attempts += 1;
      node.inFlight += 1;
      const startedMs = performance.now();
      try {
        const outcome = await this.attempt(node, candidate, input, () => {
          deliveredOutput = true;
        });
        const nodeMs = outcome.waitMs;
        node.health.recordSuccess(Date.now(), {
          ttftMs: outcome.ttftMs,
          latencyMs: nodeMs,
          tokensPerS:
            outcome.record.tokens_out > 1 && nodeMs > outcome.ttftMs
              ? (outcome.record.tokens_out * 1000) / (nodeMs - outcome.ttftMs)
              : undefined,
        });
        return { ...outcome, node, attempts, nodeMs: nodeMs + failedWaitMs };
      } catch (error) {
        if (input.signal.aborted) throw new FedAiError('CANCELLED');
        const e =
          error instanceof AttemptError ? error : new AttemptError('NODE_FAILED', (error as Error).message);
        node.health.recordFailure(Date.now(), { retryAfterS: e.retryAfterS });
        this.deps.logger.warn(
          { node: node.id, code: e.code, attempt: attempts, err: e.message },
          'node attempt failed',
        );
        lastError = e;
        failedWaitMs += performance.now() - startedMs;
        // Never fail over once the client saw output: it would get two answers.
        if (deliveredOutput)
          throw new FedAiError(e.code, `${e.message} (after output was sent)`, { after_output: true });
      } finally {
        node.inFlight -= 1;
      }
    }
    if (lastError) throw new FedAiError(lastError.code, lastError.message, { attempts });
    throw new FedAiError('NO_ELIGIBLE_NODE', 'No candidate node was available.');
  }

  private async attempt(
    node: NodeRecord,
    candidate: RankedCandidate,
    input: DispatchInput,
    markDelivered: () => void,
  ): Promise<{
    text: string;
    finishReason: FinishReason;
    record: MeteringRecord;
    metering: Envelope;
    ttftMs: number;
    /** Time spent waiting on the node: request sent to stream end. */
    waitMs: number;
  }> {
    const price = candidate.node.offer.price;
    const job: InferenceRequest = {
      ...stripUndefined(input.params),
      request_id: input.requestId,
      stream: true,
      price,
    };
    const envelope = createEnvelope(
      KIND.inferenceRequest,
      job,
      { audience: node.id, refs: [input.requestId] },
      this.deps.secretKey,
    );

    const controller = new AbortController();
    const onClientAbort = () => controller.abort();
    input.signal.addEventListener('abort', onClientAbort, { once: true });
    let timedOut: 'first token' | 'total' | null = null;
    const totalTimer = setTimeout(() => {
      timedOut = 'total';
      controller.abort();
    }, this.deps.timeouts.totalMs);
    let firstTimer: NodeJS.Timeout | null = setTimeout(() => {
      timedOut = 'first token';
      controller.abort();
    }, this.deps.timeouts.firstTokenMs);
    let started = performance.now();
    let ttftMs = 0;
    let waitMs = 0;
    try {
      let response: Awaited<ReturnType<typeof request>>;
      started = performance.now();
      try {
        response = await request(`${node.endpoint}/v1/infer`, {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-request-id': input.correlationId ?? input.requestId,
          },
          body: JSON.stringify(envelope),
          dispatcher: this.deps.agent,
          signal: controller.signal,
        });
      } catch (error) {
        if (timedOut) throw new AttemptError('NODE_TIMEOUT', `node gave no ${timedOut} in time`);
        throw new AttemptError('NODE_FAILED', `cannot reach node: ${(error as Error).message}`);
      }
      if (response.statusCode !== 200) {
        const body = await response.body.json().catch(() => null);
        const retryAfter = Number(response.headers['retry-after']);
        const code = readErrorCode(body, 'NODE_FAILED');
        throw new AttemptError(
          code === 'OVERLOADED' ? 'OVERLOADED' : 'NODE_FAILED',
          `node answered ${response.statusCode} ${code}`,
          Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined,
        );
      }
      const parts: string[] = [];
      let buffer = '';
      let done: { finish_reason: FinishReason; metering: unknown } | null = null;
      try {
        for await (const chunk of response.body) {
          buffer += chunk.toString();
          if (buffer.length > MAX_SSE_BUFFER_CHARS)
            throw new AttemptError('NODE_FAILED', 'node stream event too large');
          let split = buffer.indexOf('\n\n');
          while (split !== -1) {
            const block = buffer.slice(0, split);
            buffer = buffer.slice(split + 2);
            split = buffer.indexOf('\n\n');
            if (!block.startsWith('data: ')) continue;
            const event = JSON.parse(block.slice(6)) as {
              type: string;
              delta?: string;
              finish_reason?: FinishReason;
              metering?: unknown;
              error?: { code?: string; message?: string };
            };
            if (event.type === 'delta' && typeof event.delta === 'string') {
              if (firstTimer) {
                clearTimeout(firstTimer);
                firstTimer = null;
                ttftMs = performance.now() - started;
              }
              parts.push(event.delta);
              if (input.onDelta) {
                markDelivered();
                input.onDelta(event.delta);
              }
            } else if (event.type === 'done') {
              done = { finish_reason: event.finish_reason ?? 'stop', metering: event.metering };
            } else if (event.type === 'error') {
              throw new AttemptError(
                'NODE_FAILED',
                `node failed: ${event.error?.code ?? ''} ${event.error?.message ?? ''}`.trim(),
              );
            }
          }
        }
      } catch (error) {
        if (error instanceof AttemptError) throw error;
        if (timedOut) throw new AttemptError('NODE_TIMEOUT', `node gave no ${timedOut} in time`);
        throw new AttemptError('NODE_FAILED', `node stream broke: ${(error as Error).message}`);
      }
      waitMs = performance.now() - started;
      if (!done) throw new AttemptError('NODE_FAILED', 'node stream ended without a signed summary');
      const text = parts.join('');
      const record = await this.verifyMetering(node, done.metering, input, text, price, done.finish_reason);
      return {
        text,
        finishReason: done.finish_reason,
        record,
        metering: done.metering as Envelope,
        ttftMs: ttftMs || waitMs,
        waitMs,
      };
    } finally {
      clearTimeout(totalTimer);
      if (firstTimer) clearTimeout(firstTimer);
      input.signal.removeEventListener('abort', onClientAbort);
    }
  }

  /** The metering record must be signed by this node, for this request, and match the stream. */
  private async verifyMetering(
    node: NodeRecord,
    metering: unknown,
    input: DispatchInput,
    text: string,
    price: MeteringRecord['price'],
    finishReason: FinishReason,
  ): Promise<MeteringRecord> {
    // No replay-store write here: the record must name the request id this router just created and
    // is accepted once, at the end of that request, so a replayed record can never match.
    const verified = await verifyEnvelope(metering, {
      me: this.deps.routerPubkey,
      kinds: [KIND.meteringRecord],
    });
    if (!verified.ok)
      throw new AttemptError('BAD_NODE_SIGNATURE', `metering envelope: ${verified.code} ${verified.detail}`);
    if (verified.envelope.pubkey !== node.id)
      throw new AttemptError('BAD_NODE_SIGNATURE', 'metering signed by another key');
    const r = verified.payload;
    const problems: string[] = [];
    if (r.request_id !== input.requestId) problems.push('request_id');
    if (r.router !== this.deps.routerPubkey) problems.push('router');
    if (r.model !== input.params.model) problems.push('model');
    if (r.output_sha256 !== outputSha256(text)) problems.push('output_sha256');
    if (r.prompt_sha256 !== promptSha256(input.params.messages)) problems.push('prompt_sha256');
    if (
      r.price.input_msat_per_1k !== price.input_msat_per_1k ||
      r.price.output_msat_per_1k !== price.output_msat_per_1k
    )
      problems.push('price');
    if (r.cost_msat !== costMsat(r.tokens_in, r.tokens_out, r.price)) problems.push('cost_msat');
    if (r.tokens_out > input.params.max_tokens) problems.push('tokens_out');
    if (r.finish_reason !== finishReason) problems.push('finish_reason');
    if (problems.length > 0)
      throw new AttemptError('BAD_METERING', `metering does not match: ${problems.join(', ')}`);
    return r;
  }
}

function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
