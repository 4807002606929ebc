// Disputes over HTTP (docs/disputes.md). `POST /v1/disputes` opens a case on a charge, found by the
// receipt's request id; `GET /v1/disputes/:id` shows one. NIP-98 by the node the charge names
// (role node) or by the allowed router that captured it, acting for its client (role payer, the
// body names the payer; the router checks its own caller owns that tab). Only those keys are
// allowed for the charge at hand, so a stranger's signed header is refused before it is recorded.
import { rawBody, verifyNip98Request } from '@fed-ai/kit';
import { FedAiError, type ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import { DISPUTE_LIMITS, type Disputes } from './disputes';

export interface DisputeRouteDeps {
  disputes: Disputes;
  routers: ReadonlySet<string>;
  replayStore: ReplayStore;
  publicUrl?: string | undefined;
}

const payerId = z.string().min(1).max(160);

export const openDisputeSchema = z.strictObject({
  /** The node-signed metering envelope (JSON text) the charge was made on. */
  receipt: z.string().min(2).max(16_384),
  /** The router-signed inference response envelope (JSON text), native API. */
  response: z
    .string()
    .min(2)
    .max(DISPUTE_LIMITS.maxEvidenceBytes - 16_384)
    .optional(),
  /** Role payer: the tab's payer (a router acting for its client names it). */
  payer: payerId.optional(),
});

const disputeIdSchema = z.string().regex(/^dsp_[0-9a-f]{32}$/, 'expected a dispute id (dsp_ + 32 hex)');

const requestIdOf = z.object({
  content: z.string().max(16_384),
});
const recordRequestId = z.object({
  request_id: z
    .string()
    .min(8)
    .max(128)
    .regex(/^[A-Za-z0-9_\-:.]+$/),
});

/** The request id a receipt names (only to find the charge: the rules verify the receipt). */
function chargeOpIdOf(receipt: string): string {
  try {
    const envelope = requestIdOf.parse(JSON.parse(receipt));
    return recordRequestId.parse(JSON.parse(envelope.content)).request_id;
  } catch {
    throw new FedAiError(
      'INVALID_REQUEST',
      'receipt must be a signed metering record (JSON) naming a request_id.',
    );
  }
}

export function addDisputeRoutes(app: FastifyInstance, deps: DisputeRouteDeps): void {
  const signer = (request: FastifyRequest, allowed: ReadonlySet<string>) =>
    verifyNip98Request(request, { replayStore: deps.replayStore, allowed, publicUrl: deps.publicUrl });
  const withRouters = (...keys: (string | null | undefined)[]) =>
    new Set([...deps.routers, ...keys.filter((k): k is string => typeof k === 'string')]);

  app.post('/v1/disputes', { bodyLimit: DISPUTE_LIMITS.maxEvidenceBytes + 4096 }, async (request) => {
    // The body first (bounded, no I/O) to know which keys may sign for this charge; an invalid
    // body is answered only after the signature holds.
    let input: z.infer<typeof openDisputeSchema> | undefined;
    let opId: string | undefined;
    let invalid: unknown;
    try {
      input = openDisputeSchema.parse(JSON.parse(rawBody(request)));
      opId = chargeOpIdOf(input.receipt);
    } catch (error) {
      invalid =
        error instanceof SyntaxError
          ? new FedAiError('INVALID_REQUEST', 'The body is not valid JSON.')
          : error;
    }
    const parties = opId ? await deps.disputes.chargeParties(opId) : null;
    const pubkey = await signer(request, withRouters(parties?.node));
    if (invalid !== undefined || !input || !opId) throw invalid;
    if (!parties) throw new FedAiError('NOT_FOUND', 'No charge with that request id.');
    const evidence = { receipt: input.receipt, response: input.response };
    if (deps.routers.has(pubkey)) {
      if (!input.payer) throw new FedAiError('INVALID_REQUEST', 'A router names the payer it acts for.');
      if (parties.router !== pubkey)
        throw new FedAiError('FORBIDDEN', 'Only the router that captured this charge may act for its payer.');
      return deps.disputes.open({
        chargeOpId: opId,
        role: 'payer',
        party: input.payer,
        claimant: pubkey,
        ...evidence,
      });
    }
    if (input.payer) throw new FedAiError('INVALID_REQUEST', 'A node disputes as itself: leave payer out.');
    return deps.disputes.open({
      chargeOpId: opId,
      role: 'node',
      party: pubkey,
      claimant: pubkey,
      ...evidence,
    });
  });

  app.get(
    '/v1/disputes/:id',
    async (request: FastifyRequest<{ Params: { id: string }; Querystring: { payer?: string } }>) => {
      const id = disputeIdSchema.safeParse(request.params.id);
      const found = id.success ? await deps.disputes.get(id.data) : null;
      const pubkey = await signer(request, withRouters(found?.node));
      if (!id.success) throw new FedAiError('INVALID_REQUEST', 'expected a dispute id (dsp_ + 32 hex)');
      if (!found) throw new FedAiError('NOT_FOUND', 'No such dispute.');
      if (deps.routers.has(pubkey)) {
        // A router sees its clients' cases: the payer it names must be the case's.
        const payer = payerId.optional().parse(request.query.payer);
        if (payer !== undefined && !(found.role === 'payer' && found.party === payer))
          throw new FedAiError('NOT_FOUND', 'No such dispute.');
        return found;
      }
      if (found.node !== pubkey) throw new FedAiError('NOT_FOUND', 'No such dispute.');
      return found;
    },
  );
}
