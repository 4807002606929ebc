// The offloading side of one attempt: send the encrypted job to the winning peer, relay its
// deltas, and verify what it signed before anyone pays: the peer's offload result (signer,
// audience, job), the node-signed metering inside it (signature, cost = price x tokens, the hashes
// of our prompt and of the text we received), and that it stays within the bid (price, tokens,
// cost bound).
import { readErrorCode, readSseData } from '@fed-ai/kit';
import {
  type Bid,
  type ChatMessage,
  checkMeteringRecord,
  createEnvelope,
  type Envelope,
  encryptOffloadPayload,
  type FinishReason,
  KIND,
  type MeteringRecord,
  type VerifiedEnvelope,
  verifyEnvelope,
} from '@fed-ai/protocol';
import { request, type Dispatcher as UndiciDispatcher } from 'undici';
import { z } from 'zod';
import type { GenerationParams } from '../dispatch';
import { withinPrice } from './auction-core';

const MAX_SSE_EVENT_BYTES = 2_000_000;

const streamEventSchema = z.discriminatedUnion('type', [
  z.object({ type: z.literal('delta'), index: z.number().int().nonnegative(), delta: z.string() }),
  z.object({ type: z.literal('done'), result: z.unknown() }),
  z.object({
    type: z.literal('error'),
    error: z.object({ code: z.string().max(64), message: z.string().max(1_000) }),
  }),
]);

export interface OffloadAttempt {
  jobId: string;
  rfbId: string;
  peer: string;
  bid: Bid;
  params: GenerationParams & { messages: ChatMessage[] };
  signal: AbortSignal;
  onDelta?: ((text: string) => void | Promise<void>) | undefined;
  timeouts: { firstTokenMs: number; totalMs: number };
}

export interface OffloadServed {
  text: string;
  finishReason: FinishReason;
  /** The peer's signed offload result (its receipt). */
  result: VerifiedEnvelope;
  /** The node-signed metering record inside it, verified. */
  metering: VerifiedEnvelope;
  record: MeteringRecord;
  node: string;
}

/** Failure of one attempt; `beforeFirstToken` decides whether the next bid may be tried. */
export class OffloadError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly beforeFirstToken: boolean,
  ) {
    super(message);
    this.name = 'OffloadError';
  }
}

export async function offloadOnce(
  deps: { secretKey: Uint8Array; pubkey: string; agent?: UndiciDispatcher | undefined },
  attempt: OffloadAttempt,
): Promise<OffloadServed> {
  const job = createEnvelope(
    KIND.offloadJob,
    {
      job_id: attempt.jobId,
      bid_id: attempt.bid.bid_id,
      rfb_id: attempt.rfbId,
      chunks: encryptOffloadPayload(JSON.stringify(attempt.params), deps.secretKey, attempt.peer),
    },
    { audience: attempt.peer },
    deps.secretKey,
  );
  const firstToken = AbortSignal.timeout(attempt.timeouts.firstTokenMs);
  const total = AbortSignal.timeout(attempt.timeouts.totalMs);
  let gotToken = false;
  const controller = new AbortController();
  const abort = () => controller.abort();
  attempt.signal.addEventListener('abort', abort, { once: true });
  total.addEventListener('abort', abort, { once: true });
  firstToken.addEventListener('abort', () => !gotToken && abort(), { once: true });
  const fail = (code: string, message: string) => new OffloadError(code, message, !gotToken);
  try {
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(attempt.bid.endpoint, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-request-id': attempt.jobId },
        body: JSON.stringify(job),
        signal: controller.signal,
        ...(deps.agent ? { dispatcher: deps.agent } : {}),
      });
    } catch {
      throw fail('PEER_UNREACHABLE', 'the peer did not answer');
    }
    if (response.statusCode !== 200) {
      const body: unknown = await response.body.json().catch(() => null);
      throw fail(readErrorCode(body, 'PEER_FAILED'), `the peer answered ${response.statusCode}`);
    }
    let text = '';
    let nextIndex = 0;
    try {
      for await (const data of readSseData(response.body, { maxEventBytes: MAX_SSE_EVENT_BYTES })) {
        const parsed = streamEventSchema.safeParse(safeJson(data));
        if (!parsed.success) throw fail('PEER_FAILED', 'the peer sent an unreadable event');
        const event = parsed.data;
        if (event.type === 'delta') {
          if (event.index !== nextIndex++) throw fail('PEER_FAILED', 'the peer skipped a delta');
          gotToken = true;
          text += event.delta;
          await attempt.onDelta?.(event.delta);
        } else if (event.type === 'error') throw fail(event.error.code, 'the peer failed the job');
        else return await verifyServed(deps.pubkey, attempt, event.result, text);
      }
    } catch (error) {
      if (error instanceof OffloadError) throw error;
      throw fail('PEER_FAILED', 'the peer stream broke');
    }
    throw fail('PEER_FAILED', 'the peer stream ended without a result');
  } finally {
    attempt.signal.removeEventListener('abort', abort);
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return null;
  }
}

async function verifyServed(
  me: string,
  attempt: OffloadAttempt,
  raw: unknown,
  text: string,
): Promise<OffloadServed> {
  const bad = (why: string) => new OffloadError('PEER_FAILED', `offload result: ${why}`, false);
  const result = await verifyEnvelope(raw, { me, kinds: [KIND.offloadResult] });
  if (!result.ok) throw bad(result.code);
  if (result.envelope.pubkey !== attempt.peer) throw bad('not signed by the peer');
  const served = result.payload;
  if (served.job_id !== attempt.jobId) throw bad('another job');
  let meteringRaw: unknown;
  try {
    meteringRaw = JSON.parse(served.metering) as Envelope;
  } catch {
    throw bad('metering is not JSON');
  }
  const metering = await verifyEnvelope(meteringRaw, { me: attempt.peer, kinds: [KIND.meteringRecord] });
  if (!metering.ok) throw bad(`metering ${metering.code}`);
  const record = metering.payload;
  const check = checkMeteringRecord(record, metering.envelope.pubkey, {
    signer: served.node,
    router: attempt.peer,
    model: attempt.params.model,
    messages: attempt.params.messages,
    outputText: text,
    maxTokensOut: attempt.bid.max_tokens,
    reservedMsat: attempt.bid.max_cost_msat,
  });
  if (!check.ok) throw bad(check.problems.join(', '));
  if (record.cost_msat !== served.cost_msat) throw bad('receipt cost is not the metered cost');
  if (!withinPrice(record.price, attempt.bid.price)) throw bad('metered price is over the bid');
  return {
    text,
    finishReason: served.finish_reason,
    result: result.envelope,
    metering: metering.envelope,
    record,
    node: served.node,
  };
}

export function isRetryable(error: unknown): boolean {
  return error instanceof OffloadError && error.beforeFirstToken;
}
