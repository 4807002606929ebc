// Prepaid tabs, served by the settlement service: top up with a BOLT11 invoice, see the balance and
// recent charges with their node-signed receipts, refund. Two kinds of payer: an API key (Bearer),
// or a Nostr key (NIP-98 `Authorization: Nostr ...`), whose tab is the one its signed native-API
// requests draw on.

import { rawBody, toFedAiError, verifyNip98Request } from '@fed-ai/kit';
import { FedAiError, type ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { ApiKeyRecord, ApiKeys } from '../apikeys';
import { openAiError } from '../openai-errors';
import { callSettlement } from './settlement-call';

export interface TabRouteDeps {
  apiKeys: ApiKeys;
  settlementUrl: string;
  secretKey: Uint8Array;
  replayStore: ReplayStore;
  publicUrl: string | undefined;
  /** Tab calls per minute for one Nostr-key payer (API keys use their own limit). */
  nostrPayerRequestsPerMin?: number;
  /** Gives back the payer's reservations held ahead, so its tab shows (and refunds) what is free. */
  releaseAhead?: (payer: string) => Promise<void>;
}

export const topupSchema = z.object({ amount_msat: z.number().int().min(1000).max(100_000_000_000) });
export const faucetSchema = z.object({ bolt11: z.string().min(10).max(4096) });

export function registerTabRoutes(app: FastifyInstance, deps: TabRouteDeps): void {
  async function payer(request: FastifyRequest): Promise<string> {
    return (await caller(request)).id;
  }

  /** Who calls: a Nostr-key payer (NIP-98) or an API key. */
  async function caller(request: FastifyRequest): Promise<{ id: string; key: ApiKeyRecord | null }> {
    const auth = request.headers.authorization;
    if (auth?.startsWith('Nostr ')) {
      // A Nostr-key payer: its tab is `tab:<pubkey>`, the one its signed /infer requests draw on.
      const pubkey = await verifyNip98Request(request, {
        replayStore: deps.replayStore,
        allowed: undefined,
        publicUrl: deps.publicUrl,
      });
      const admitted = await deps.apiKeys.admitRequest({
        id: `nostr:${pubkey}`,
        requests_per_min: deps.nostrPayerRequestsPerMin ?? 60,
      });
      if (!admitted.ok)
        throw new FedAiError('RATE_LIMITED', admitted.detail, { retry_after_s: admitted.retryAfterS });
      return { id: pubkey, key: null };
    }
    const key = await deps.apiKeys.authenticate(
      auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined,
    );
    if (!key)
      throw new FedAiError(
        'UNAUTHORIZED',
        'Missing or invalid credentials: send an API key (Bearer) or a NIP-98 header signed by your Nostr key.',
      );
    // Tab calls count against the key's requests per minute like chat calls do.
    const admitted = await deps.apiKeys.admitRequest(key);
    if (!admitted.ok)
      throw new FedAiError('RATE_LIMITED', admitted.detail, { retry_after_s: admitted.retryAfterS });
    return { id: key.id, key };
  }

  const settlement = (request: FastifyRequest, method: 'GET' | 'POST', path: string, body?: unknown) =>
    callSettlement(deps, request, { method, path, body, timeoutMs: 5_000 });

  const handle =
    (fn: (request: FastifyRequest) => Promise<unknown>) =>
    async (request: FastifyRequest, reply: import('fastify').FastifyReply) => {
      try {
        return await fn(request);
      } catch (error) {
        // Short reason-coded messages: never a zod dump or the JSON parser's text.
        const e = toFedAiError(error);
        if (e.status >= 500) request.log.error({ code: e.code }, 'tab request failed');
        if (e.code === 'RATE_LIMITED' || e.code === 'BUDGET_EXHAUSTED')
          reply.header('retry-after', String(e.details?.retry_after_s ?? 1));
        return reply.code(e.status).send(openAiError(e.code, e.message));
      }
    };

  app.post(
    '/v1/tabs/topup',
    handle(async (request) => {
      const who = await payer(request);
      const input = topupSchema.parse(JSON.parse(rawBody(request) || '{}'));
      return settlement(request, 'POST', '/v1/topups', { payer: who, amount_msat: input.amount_msat });
    }),
  );
  app.get(
    '/v1/tabs/me',
    handle(async (request) => {
      const who = await caller(request);
      await deps.releaseAhead?.(who.id);
      const tab = (await settlement(request, 'GET', `/v1/tabs/${encodeURIComponent(who.id)}`)) as object;
      // An API key's spend budgets, with what the current periods have spent and hold.
      return who.key ? { ...tab, budgets: await deps.apiKeys.spendUsage(who.key) } : tab;
    }),
  );
  // Refund unused balance by paying an invoice the client gives.
  app.post(
    '/v1/tabs/refund',
    handle(async (request) => {
      const who = await payer(request);
      const input = faucetSchema.parse(JSON.parse(rawBody(request) || '{}'));
      await deps.releaseAhead?.(who);
      return settlement(request, 'POST', '/v1/refunds', { payer: who, bolt11: input.bolt11 });
    }),
  );
  // Devnet: pay your own top-up invoice from the settlement faucet (refused unless FAUCET=true there).
  app.post(
    '/v1/tabs/faucet',
    handle(async (request) => {
      await payer(request);
      const input = faucetSchema.parse(JSON.parse(rawBody(request) || '{}'));
      return settlement(request, 'POST', '/v1/faucet/pay', input);
    }),
  );
}
