// Operator endpoints, authenticated with NIP-98 by a key in OPERATOR_PUBKEYS. The check belongs to
// the routes (an encapsulated plugin's hook), never to a URL prefix: the router matches decoded,
// normalized paths (`/%61dmin/...` reaches `/admin/...`), so a prefix test on the raw URL misses.

import { rawBody, sendError, toFedAiError, verifyNip98Request } from '@fed-ai/kit';
import { FedAiError, type ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { ApiKeys } from '../apikeys';
import type { Registry } from '../registry';

export interface AdminRouteDeps {
  apiKeys: ApiKeys;
  registry: Registry;
  operators: Set<string>;
  replayStore: ReplayStore;
  publicUrl: string | undefined;
}

export function registerAdminRoutes(app: FastifyInstance, deps: AdminRouteDeps): void {
  app.register(async (scope) => {
    // onRequest runs before the body is read: a caller without a valid header is refused without
    // reading it. The payload hash needs the body, so the full check runs in preHandler.
    scope.addHook('onRequest', async (request, reply) => {
      if (!request.headers.authorization?.startsWith('Nostr '))
        return sendError(reply, 'UNAUTHORIZED', 'missing "Authorization: Nostr <base64>" header');
    });
    scope.addHook('preHandler', async (request, reply) => {
      try {
        await verifyNip98Request(request, {
          replayStore: deps.replayStore,
          allowed: deps.operators,
          publicUrl: deps.publicUrl,
        });
      } catch (error) {
        const e = toFedAiError(error);
        return sendError(reply, e.code, e.message);
      }
    });

    scope.post('/admin/apikeys', async (request) => {
      const input = JSON.parse(rawBody(request) || '{}');
      const created = await deps.apiKeys.create(input);
      return created;
    });

    scope.get('/admin/apikeys', async () => ({ keys: await deps.apiKeys.list() }));

    scope.delete('/admin/apikeys/:id', async (request: FastifyRequest<{ Params: { id: string } }>, reply) => {
      if (!(await deps.apiKeys.revoke(request.params.id)))
        return sendError(reply, 'NOT_FOUND', 'No active key with this id.');
      return { ok: true };
    });

    scope.post(
      '/admin/apikeys/:id/budgets',
      async (request: FastifyRequest<{ Params: { id: string } }>, reply) => {
        const updated = await deps.apiKeys.setBudgets(
          request.params.id,
          JSON.parse(rawBody(request) || '{}'),
        );
        if (!updated) return sendError(reply, 'NOT_FOUND', 'No active key with this id.');
        return updated;
      },
    );

    scope.post('/admin/nodes/:id/ban', async (request: FastifyRequest<{ Params: { id: string } }>) => {
      if (!/^[0-9a-f]{64}$/.test(request.params.id))
        throw new FedAiError('INVALID_REQUEST', 'node id must be 64 hex');
      return { ok: await deps.registry.ban(request.params.id) };
    });
  });
}
