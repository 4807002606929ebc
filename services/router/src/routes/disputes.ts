// Disputes for API-key clients (docs/disputes.md): the router forwards a case to settlement for the
// caller's own tab only (the payer is always the key's, never the body's), NIP-98 signed by the
// router's key. Settlement verifies the evidence and decides.
import { rawBody, toFedAiError } from '@fed-ai/kit';
import { FedAiError } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ApiKeys } from '../apikeys';
import { openAiError } from '../openai-errors';
import { callSettlement } from './settlement-call';

export interface DisputeRouteDeps {
  apiKeys: ApiKeys;
  settlementUrl: string;
  secretKey: Uint8Array;
}

/** What a client sends: its receipt and, from the native API, the router-signed response. */
export const clientDisputeSchema = z.strictObject({
  receipt: z.string().min(2).max(16_384),
  response: z
    .string()
    .min(2)
    .max(240 * 1024)
    .optional(),
});
const caseId = z.string().regex(/^dsp_[0-9a-f]{32}$/, 'expected a dispute id (dsp_ + 32 hex)');

export function registerDisputeRoutes(app: FastifyInstance, deps: DisputeRouteDeps): void {
  async function payer(request: FastifyRequest): Promise<string> {
    const auth = request.headers.authorization;
    const key = await deps.apiKeys.authenticate(
      auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined,
    );
    if (!key) throw new FedAiError('UNAUTHORIZED', 'Send your API key (Bearer).');
    const admitted = await deps.apiKeys.admitRequest(key);
    if (!admitted.ok)
      throw new FedAiError('RATE_LIMITED', admitted.detail, { retry_after_s: admitted.retryAfterS });
    return key.id;
  }

  const settlement = (request: FastifyRequest, method: 'GET' | 'POST', path: string, body?: unknown) =>
    callSettlement(deps, request, { method, path, body, timeoutMs: 10_000 });

  const handle =
    (fn: (request: FastifyRequest) => Promise<unknown>) =>
    async (request: FastifyRequest, reply: FastifyReply) => {
      try {
        return await fn(request);
      } catch (error) {
        const e = toFedAiError(error);
        if (e.status >= 500) request.log.error({ code: e.code }, 'dispute request failed');
        if (e.code === 'RATE_LIMITED') reply.header('retry-after', String(e.details?.retry_after_s ?? 1));
        return reply.code(e.status).send(openAiError(e.code, e.message));
      }
    };

  app.post(
    '/v1/disputes',
    handle(async (request) => {
      const who = await payer(request);
      let json: unknown;
      try {
        json = JSON.parse(rawBody(request) || '{}');
      } catch {
        throw new FedAiError('INVALID_REQUEST', 'The body is not valid JSON.');
      }
      const input = clientDisputeSchema.parse(json);
      return settlement(request, 'POST', '/v1/disputes', { ...input, payer: who });
    }),
  );
  app.get(
    '/v1/disputes/:id',
    handle(async (request) => {
      const who = await payer(request);
      const id = caseId.parse((request.params as { id?: unknown }).id);
      return settlement(request, 'GET', `/v1/disputes/${id}?payer=${encodeURIComponent(who)}`);
    }),
  );
}
