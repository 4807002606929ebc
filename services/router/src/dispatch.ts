// Dispatch: sends an authenticated inference request (a MAC where the node accepts one, else a
// signature) to the best candidate, relays its tokens as they
// arrive, and verifies the node's signed metering against what was actually streamed. Fails over
// to the next candidate only while nothing has reached the client; never after.

import { readErrorCode, readSseData } from '@fed-ai/kit';
import {
  type ChannelKeys,
  checkMeteringRecord,
  createEnvelope,
  createMacEnvelope,
  type Envelope,
  FedAiError,
  type FinishReason,
  type InferenceRequest,
  KIND,
  type MeteringRecord,
  maxCostMsat,
  type NodeStreamEvent,
  nodeStreamEventSchema,
  type PayloadOf,
  promptOverheadOf,
  promptTokensBound,
  type ReasonCode,
  type VerifiedEnvelope,
  verifyEnvelope,
} from '@fed-ai/protocol';
import type { Logger } from 'pino';
import { type Agent, request } from 'undici';
import { NodeLease } from './lease';
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
  /** After the client goes away, how long the node may take to stop and sign what it generated. */
  cancelGraceMs?: number;
  /** The router's channel keys with its nodes (MAC envelopes, channel-mac.ts). */
  channelKeys: ChannelKeys;
}

export type GenerationParams = Pick<
  InferenceRequest,
  'model' | 'messages' | 'max_tokens' | 'temperature' | 'top_p' | 'stop' | 'seed'
>;

export interface DispatchInput {
  /** Router-generated id of this dispatch (names the node request, metering and reservation). */
  dispatchId: string;
  /** The caller's request id: sent to the node as x-request-id so logs follow the request. */
  correlationId?: string | undefined;
  params: GenerationParams;
  candidates: RankedCandidate[];
  allowFallbacks: boolean;
  /** Aborted when the client goes away: the node request is cancelled. */
  signal: AbortSignal;
  /** Streaming clients get each delta at once; without it the answer is buffered. */
  onDelta?: (text: string) => void | Promise<void>;
  /** The reservation: a candidate that could cost more is never tried. Undefined: free mode. */
  reservedMsat?: number;
  /**
   * Settlement checks the record's signature before it charges (paid mode): a node on a MAC
   * channel is then checked by its MAC of the record instead of a second BIP-340 verification.
   */
  signatureCheckedAtCapture?: boolean;
}

export interface DispatchResult {
  node: NodeRecord;
  text: string;
  finishReason: FinishReason;
  record: MeteringRecord;
  /** The node-signed record, checked (by signature, or by channel MAC when settlement checks the signature): the receipt the client gets. */
  metering: VerifiedEnvelope;
  attempts: number;
  /** Time spent waiting on the node (for the router-overhead header). */
  nodeMs: number;
}

const MAX_SSE_EVENT_BYTES = 2_000_000;
const DEFAULT_CANCEL_GRACE_MS = 5_000;

/** Node refusals caused by the client's request: no verdict on the node's health. */
const CLIENT_CAUSED: ReadonlySet<string> = new Set(['CONTEXT_TOO_LONG', 'INVALID_REQUEST', 'BAD_PAYLOAD']);

/** The most one candidate can cost for this request: the reservation must cover it. */
export function candidateMaxCostMsat(candidate: RankedCandidate, params: GenerationParams): number {
  const offer = candidate.node.offer;
  return maxCostMsat(
    promptTokensBound(params.messages, promptOverheadOf(offer)),
    params.max_tokens,
    offer.price,
    offer.max_output_tokens,
  );
}

class AttemptError extends Error {
  constructor(
    readonly code: ReasonCode,
    message: string,
    readonly retryAfterS?: number,
    /** The client's request caused it: no verdict on the node. */
    readonly clientCaused = false,
  ) {
    super(message);
  }
}

interface AttemptOutcome {
  text: string;
  finishReason: FinishReason;
  record: MeteringRecord;
  metering: VerifiedEnvelope;
  ttftMs: number;
  /** Time spent waiting on the node: request sent to stream end. */
  waitMs: number;
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
      // Never dispatch what the reservation does not cover.
      if (
        input.reservedMsat !== undefined &&
        candidateMaxCostMsat(candidate, input.params) > input.reservedMsat
      )
        continue;
      const node = this.deps.registry.get(candidate.node.id);
      const lease = node ? NodeLease.acquire(node) : null;
      if (!node || !lease) continue;
      attempts += 1;
      const startedMs = performance.now();
      try {
        const outcome = await this.attempt(node, candidate, input, () => {
          deliveredOutput = true;
        });
        lease.succeed({
          ttftMs: outcome.ttftMs,
          latencyMs: outcome.waitMs,
          ...tokensPerS(outcome),
        });
        return { ...outcome, node, attempts, nodeMs: outcome.waitMs + failedWaitMs };
      } catch (error) {
        const e =
          error instanceof AttemptError ? error : new AttemptError('NODE_FAILED', (error as Error).message);
        if (input.signal.aborted || e.clientCaused) lease.release();
        else lease.fail({ retryAfterS: e.retryAfterS });
        if (input.signal.aborted) throw new FedAiError('CANCELLED');
        this.deps.logger.warn(
          { node: node.id, code: e.code, attempt: attempts, err: e.message },
          'node attempt failed',
        );
        // A client-caused refusal from one node does not hide a node failure seen before it.
        if (!e.clientCaused || !lastError || lastError.clientCaused) lastError = e;
        failedWaitMs += performance.now() - startedMs;
        // Never fail over once the client saw output: it would get two answers.
        if (deliveredOutput)
          throw new FedAiError(e.code, `${e.message} (after output was sent)`, { after_output: true });
      } finally {
        lease.release();
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
  ): Promise<AttemptOutcome> {
    const price = candidate.node.offer.price;
    const job: InferenceRequest = {
      ...stripUndefined(input.params),
      request_id: input.dispatchId,
      stream: true,
      price,
    };
    const envelope = this.envelopeFor(node, KIND.inferenceRequest, job, [input.dispatchId]);

    const controller = new AbortController();
    let timedOut: 'first token' | 'total' | null = null;
    let clientGone = false;
    const hardAbort = (why: 'first token' | 'total' | null) => {
      timedOut ??= why;
      controller.abort();
    };
    // The client going away asks the node to stop and sign what it generated; only if it cannot
    // within the grace time is the connection cut (and then nothing is charged).
    let graceTimer: NodeJS.Timeout | null = null;
    const onClientAbort = () => {
      clientGone = true;
      this.cancelAtNode(node, input.dispatchId);
      graceTimer = setTimeout(() => hardAbort(null), this.deps.cancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS);
    };
    input.signal.addEventListener('abort', onClientAbort, { once: true });
    const totalTimer = setTimeout(() => hardAbort('total'), this.deps.timeouts.totalMs);
    let firstTimer: NodeJS.Timeout | null = setTimeout(
      () => hardAbort('first token'),
      this.deps.timeouts.firstTokenMs,
    );
    const started = performance.now();
    let ttftMs = 0;
    try {
      const response = await this.send(node, envelope, input, controller.signal, () => timedOut);
      const parts: string[] = [];
      let done: { finish_reason: FinishReason; metering: unknown; mac: string | undefined } | null = null;
      try {
        for await (const data of readSseData(response.body, { maxEventBytes: MAX_SSE_EVENT_BYTES })) {
          const event = parseNodeEvent(data);
          if (event.type === 'delta') {
            if (firstTimer) {
              clearTimeout(firstTimer);
              firstTimer = null;
              ttftMs = performance.now() - started;
            }
            parts.push(event.delta);
            if (input.onDelta && !clientGone) {
              markDelivered();
              await input.onDelta(event.delta);
            }
          } else if (event.type === 'done') {
            done = { finish_reason: event.finish_reason, metering: event.metering, mac: event.metering_mac };
          } else {
            throw nodeStreamError(event.error);
          }
        }
      } catch (error) {
        if (error instanceof AttemptError) throw error;
        if (timedOut) throw new AttemptError('NODE_TIMEOUT', `node gave no ${timedOut} in time`);
        throw new AttemptError('NODE_FAILED', `node stream broke: ${(error as Error).message}`);
      }
      const waitMs = performance.now() - started;
      if (!done) throw new AttemptError('NODE_FAILED', 'node stream ended without a signed summary');
      const text = parts.join('');
      const verified = await this.verifyMetering(node, candidate, done, input, text);
      return {
        text,
        finishReason: done.finish_reason,
        record: verified.record,
        metering: verified.envelope,
        ttftMs: ttftMs || waitMs,
        waitMs,
      };
    } finally {
      clearTimeout(totalTimer);
      if (firstTimer) clearTimeout(firstTimer);
      if (graceTimer) clearTimeout(graceTimer);
      input.signal.removeEventListener('abort', onClientAbort);
    }
  }

  /** Sends the signed request; a refusal becomes an AttemptError that says whose fault it was. */
  private async send(
    node: NodeRecord,
    envelope: Envelope,
    input: DispatchInput,
    signal: AbortSignal,
    timedOut: () => string | null,
  ): Promise<Awaited<ReturnType<typeof request>>> {
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(`${node.endpoint}/v1/infer`, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          'x-request-id': input.correlationId ?? input.dispatchId,
        },
        body: JSON.stringify(envelope),
        dispatcher: this.deps.agent,
        signal,
      });
    } catch (error) {
      const why = timedOut();
      if (why) throw new AttemptError('NODE_TIMEOUT', `node gave no ${why} in time`);
      throw new AttemptError('NODE_FAILED', `cannot reach node: ${(error as Error).message}`);
    }
    if (response.statusCode === 200) return response;
    const body = await response.body.json().catch(() => null);
    const retryAfter = Number(response.headers['retry-after']);
    const code = readErrorCode(body, 'NODE_FAILED');
    if (CLIENT_CAUSED.has(code))
      throw new AttemptError(code, `node refused the request: ${code}`, undefined, true);
    throw new AttemptError(
      code === 'OVERLOADED' ? 'OVERLOADED' : 'NODE_FAILED',
      `node answered ${response.statusCode} ${code}`,
      Number.isFinite(retryAfter) && retryAfter > 0 ? retryAfter : undefined,
    );
  }

  /** A MAC envelope to a node that said it takes them (registration `auth`), else a signed one. */
  private envelopeFor<K extends typeof KIND.inferenceRequest | typeof KIND.inferenceCancel>(
    node: NodeRecord,
    kind: K,
    payload: PayloadOf<K>,
    refs: string[],
  ): Envelope {
    const options = { audience: node.id, refs };
    return usesMac(node)
      ? createMacEnvelope(kind, payload, options, this.deps.channelKeys)
      : createEnvelope(kind, payload, options, this.deps.secretKey);
  }

  /** Best effort: the node stops generating and ends the stream with a record of what it made. */
  private cancelAtNode(node: NodeRecord, requestId: string): void {
    const envelope = this.envelopeFor(node, KIND.inferenceCancel, { request_id: requestId }, [requestId]);
    request(`${node.endpoint}/v1/cancel`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(envelope),
      dispatcher: this.deps.agent,
      signal: AbortSignal.timeout(this.deps.cancelGraceMs ?? DEFAULT_CANCEL_GRACE_MS),
    })
      .then((r) => r.body.dump())
      .catch((error: unknown) =>
        this.deps.logger.debug({ err: error, node: node.id }, 'cancel not delivered'),
      );
  }

  /** The metering record must be signed by this node, for this request, and match the stream. */
  private async verifyMetering(
    node: NodeRecord,
    candidate: RankedCandidate,
    done: { finish_reason: FinishReason; metering: unknown; mac: string | undefined },
    input: DispatchInput,
    text: string,
  ): Promise<{ record: MeteringRecord; envelope: VerifiedEnvelope }> {
    const finishReason = done.finish_reason;
    // Verify once, where it is evidence: settlement checks the signature before charging, so in
    // paid mode a MAC node's record is checked here by its channel MAC (a node that signs badly is
    // then simply not paid). Without the MAC, or in free mode, the signature is checked here.
    const mac = input.signatureCheckedAtCapture && usesMac(node) ? done.mac : undefined;
    // No replay-store write here: the record must name the request id this router just created and
    // is accepted once, at the end of that request, so a replayed record can never match.
    const verified = await verifyEnvelope(done.metering, {
      me: this.deps.routerPubkey,
      kinds: [KIND.meteringRecord],
      ...(mac ? { attestation: { keys: this.deps.channelKeys, mac } } : {}),
    });
    if (!verified.ok)
      throw new AttemptError('BAD_NODE_SIGNATURE', `metering envelope: ${verified.code} ${verified.detail}`);
    const offer = candidate.node.offer;
    const check = checkMeteringRecord(verified.payload, verified.envelope.pubkey, {
      signer: node.id,
      requestId: input.dispatchId,
      router: this.deps.routerPubkey,
      model: input.params.model,
      messages: input.params.messages,
      outputText: text,
      price: offer.price,
      maxTokensOut: Math.min(input.params.max_tokens, offer.max_output_tokens),
      maxTokensIn: promptTokensBound(input.params.messages, promptOverheadOf(offer)),
      finishReason,
      ...(input.reservedMsat !== undefined ? { reservedMsat: input.reservedMsat } : {}),
    });
    if (!check.ok) {
      if (check.problems.includes('METERING_SIGNER'))
        throw new AttemptError('BAD_NODE_SIGNATURE', 'metering signed by another key');
      throw new AttemptError('BAD_METERING', `metering does not match: ${check.problems.join(', ')}`);
    }
    return { record: verified.payload, envelope: verified.envelope };
  }
}

/** Whether the node registered `auth: ["mac-v1"]` (its requests and records go over the MAC channel). */
function usesMac(node: NodeRecord): boolean {
  return node.registration.auth?.includes('mac-v1') === true;
}

/** A node's stream event, validated: a peer's bytes are never cast. */
function parseNodeEvent(data: string): NodeStreamEvent {
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    throw new AttemptError('NODE_FAILED', 'node sent an event that is not JSON');
  }
  const parsed = nodeStreamEventSchema.safeParse(value);
  if (!parsed.success) throw new AttemptError('NODE_FAILED', 'node sent an event of unknown shape');
  return parsed.data;
}

function nodeStreamError(error: { code?: string; message?: string } | undefined): AttemptError {
  const code = error?.code ?? '';
  if (CLIENT_CAUSED.has(code))
    return new AttemptError(code as ReasonCode, `node refused the request: ${code}`, undefined, true);
  return new AttemptError('NODE_FAILED', `node failed: ${code} ${error?.message ?? ''}`.trim());
}

function tokensPerS(outcome: AttemptOutcome): { tokensPerS?: number } {
  const decodeMs = outcome.waitMs - outcome.ttftMs;
  return outcome.record.tokens_out > 1 && decodeMs > 0
    ? { tokensPerS: ((outcome.record.tokens_out - 1) * 1000) / decodeMs }
    : {};
}

function stripUndefined<T extends object>(value: T): T {
  return Object.fromEntries(Object.entries(value).filter(([, v]) => v !== undefined)) as T;
}
