// Operator endpoints, authenticated with NIP-98 by a key in OPERATOR_PUBKEYS.

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
  app.addHook('preHandler', async (request, reply) => {
    if (!request.url.startsWith('/admin/')) return;
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

  app.post('/admin/apikeys', async (request) => {
    const input = JSON.parse(rawBody(request) || '{}');
    const created = await deps.apiKeys.create(input);
    return created;
  });

  app.get('/admin/apikeys', async () => ({ keys: await deps.apiKeys.list() }));

  app.delete('/admin/apikeys/:id', async (request: FastifyRequest<{ Params: { id: string } }>, reply) => {
    if (!(await deps.apiKeys.revoke(request.params.id)))
      return sendError(reply, 'NOT_FOUND', 'No active key with this id.');
    return { ok: true };
  });

  app.post('/admin/nodes/:id/ban', async (request: FastifyRequest<{ Params: { id: string } }>) => {
    if (!/^[0-9a-f]{64}$/.test(request.params.id))
      throw new FedAiError('INVALID_REQUEST', 'node id must be 64 hex');
    return { ok: await deps.registry.ban(request.params.id) };
  });
}
