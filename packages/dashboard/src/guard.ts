// NIP-98 per route: hooks on an encapsulated fastify scope (never a URL prefix test: the router
// matches decoded, normalized paths). Without a `Nostr` header the request is refused before its
// body is read; the signature, URL, method, body hash, time window, replay and the allowed keys are
// checked in preHandler, where the body is known.
import { sendError, toFedAiError, verifyNip98Request } from '@fed-ai/kit';
import type { ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';

type GuardedRequest = FastifyRequest & { fedaiOperator?: string };

export function addOperatorGuard(
  scope: FastifyInstance,
  options: {
    allowed: ReadonlySet<string>;
    replayStore: ReplayStore;
    publicUrl: string | undefined;
    /** Who must sign, for the refusal's message (e.g. "an operator key"). */
    signer: string;
  },
): void {
  scope.addHook('onRequest', async (request, reply) => {
    if (!request.headers.authorization?.startsWith('Nostr '))
      return sendError(
        reply,
        'UNAUTHORIZED',
        `missing "Authorization: Nostr <base64>" header (NIP-98, ${options.signer})`,
      );
  });
  scope.addHook('preHandler', async (request, reply) => {
    try {
      (request as GuardedRequest).fedaiOperator = await verifyNip98Request(request, {
        replayStore: options.replayStore,
        allowed: options.allowed,
        publicUrl: options.publicUrl,
      });
    } catch (error) {
      const e = toFedAiError(error);
      return sendError(reply, e.code, e.message);
    }
  });
}

/** The verified signer of a request that passed the guard. */
export function operatorOf(request: FastifyRequest): string {
  const signer = (request as GuardedRequest).fedaiOperator;
  if (!signer) throw new Error('operatorOf: the route is not behind addOperatorGuard');
  return signer;
}
