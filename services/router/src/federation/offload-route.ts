// The serving side of an offload: `POST /v1/federation/offload` takes a signed job (kind 28120)
// from a peer router that holds one of our bids, decrypts the request (NIP-44 v2, chunked), runs it
// through our own dispatch path with the peer as the payer (its prepaid tab here), and streams
// back the deltas and, at the end, our signed offload result (kind 28121) holding the node-signed
// metering. The job must stay within the bid: same model, a prompt no larger than the RFB said, at
// most the bid's output tokens, and only nodes priced within the bid.
import { abortOnDisconnect, errorBody, rawBody, sendError } from '@fed-ai/kit';
import {
  createEnvelope,
  decryptOffloadPayload,
  type FedAiError,
  generationParamsSchema,
  KIND,
  type ReplayStore,
  verifyEnvelope,
} from '@fed-ai/protocol';
import type { FastifyInstance } from 'fastify';
import type { ChatContext, ChatOutcome } from '../chat';
import { streamChat } from '../stream-chat';
import { promptTextTokensBound } from './auction-core';
import type { OpenBids } from './bidder';

export const OFFLOAD_PATH = '/v1/federation/offload';
/** A 200 KB prompt needs 5 chunks; the body limit leaves room for 64 (about 5.6 MB). */
const MAX_OFFLOAD_BYTES = 6 * 1024 * 1024;

export interface OffloadRouteDeps {
  ctx: ChatContext;
  secretKey: Uint8Array;
  pubkey: string;
  replayStore: ReplayStore;
  bids: OpenBids;
  mayPeer: (pubkey: string) => boolean;
  nowS?: () => number;
}

export function registerOffloadRoute(app: FastifyInstance, deps: OffloadRouteDeps): void {
  const nowS = deps.nowS ?? (() => Math.floor(Date.now() / 1000));
  app.post(OFFLOAD_PATH, { bodyLimit: MAX_OFFLOAD_BYTES }, async (request, reply) => {
    const verified = await verifyEnvelope(rawBody(request), {
      me: deps.pubkey,
      kinds: [KIND.offloadJob],
      replayStore: deps.replayStore,
      maxBytes: MAX_OFFLOAD_BYTES,
    });
    if (!verified.ok) return sendError(reply, verified.code, verified.detail);
    const peer = verified.envelope.pubkey;
    if (!deps.mayPeer(peer)) return sendError(reply, 'FORBIDDEN', 'not a peer of this router');
    const job = verified.payload;
    const claimed = deps.bids.claim(job.bid_id, peer, nowS());
    if (typeof claimed === 'string')
      return sendError(reply, 'BID_MISMATCH', claimed.toLowerCase().replace('_', ' '));
    if (claimed.rfb.rfb_id !== job.rfb_id)
      return sendError(reply, 'BID_MISMATCH', 'the job names another RFB');
    let params: ReturnType<typeof generationParamsSchema.parse>;
    try {
      params = generationParamsSchema.parse(
        JSON.parse(decryptOffloadPayload(job.chunks, deps.secretKey, peer)),
      );
    } catch {
      return sendError(reply, 'BAD_PAYLOAD', 'the job does not decrypt to an inference request');
    }
    const { rfb, bid } = claimed;
    if (
      params.model !== rfb.model ||
      params.messages.length !== rfb.messages ||
      promptTextTokensBound(params.messages) > rfb.prompt_tokens ||
      params.max_tokens > bid.max_tokens
    )
      return sendError(reply, 'BID_MISMATCH', 'the job is larger than the RFB it was bid on');
    const cancelled = abortOnDisconnect(reply);
    let index = 0;
    await streamChat(deps.ctx, {
      request: {
        correlationId: job.job_id,
        payer: peer,
        params,
        provider: { max_price: bid.price },
        signal: cancelled,
        allowOffload: false,
      },
      reply,
      log: request.log,
      wire: {
        head: () => [],
        delta: (delta) => JSON.stringify({ type: 'delta', index: index++, delta }),
        done: (outcome) => ({
          data: [JSON.stringify({ type: 'done', result: resultEnvelope(deps, outcome, job.job_id, peer) })],
        }),
        error: (e: FedAiError) => ({
          data: [JSON.stringify({ type: 'error', error: errorBody(e.code, e.message).error })],
        }),
      },
    });
    return reply;
  });
}

function resultEnvelope(deps: OffloadRouteDeps, outcome: ChatOutcome, jobId: string, peer: string) {
  return createEnvelope(
    KIND.offloadResult,
    {
      job_id: jobId,
      model: outcome.record.model,
      node: outcome.node.id,
      cost_msat: outcome.costMsat,
      finish_reason: outcome.finishReason,
      metering: JSON.stringify(outcome.metering),
    },
    { audience: peer, refs: [jobId], expiresInS: 0 },
    deps.secretKey,
  );
}
