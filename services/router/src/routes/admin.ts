// Operator endpoints, authenticated with NIP-98 by a key in OPERATOR_PUBKEYS.

import { rawBody, sendError } from '@fed-ai/kit';
import { FedAiError, type ReplayStore, verifyNip98 } from '@fed-ai/protocol';
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
    const body = request.method === 'GET' || request.method === 'DELETE' ? undefined : rawBody(request);
    // The URL the operator signed: as reached directly, or through the public URL.
    const urls = [`http://${request.headers.host}${request.url}`];
    if (deps.publicUrl) urls.push(`${deps.publicUrl.replace(/\/+$/, '')}${request.url}`);
    let result = await verifyNip98(request.headers.authorization, {
      url: urls[0]!,
      method: request.method,
      body,
      replayStore: deps.replayStore,
    });
    if (!result.ok && result.code === 'AUTH_URL_MISMATCH' && urls[1]) {
      result = await verifyNip98(request.headers.authorization, {
        url: urls[1],
        method: request.method,
        body,
        replayStore: deps.replayStore,
      });
    }
    if (!result.ok) return sendError(reply, result.code, result.detail);
    if (!deps.operators.has(result.pubkey))
      return sendError(reply, 'FORBIDDEN', 'This key is not an operator of this router.');
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
