// The owner API: every route NIP-98 signed by an owner key (FLEET_OWNER_PUBKEYS); the signer is the
// owner, and only their own wallets are visible. Authentication belongs to the routes (an
// encapsulated plugin's hooks), never to a URL prefix.
import { Readable } from 'node:stream';
import {
  addMetricsRoute,
  addRawJsonParser,
  createServer,
  rawBody,
  sendError,
  toFedAiError,
  verifyNip98Request,
} from '@fed-ai/kit';
import { FedAiError, type ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import { WF_ACCOUNTS } from './accounts';
import { registerFleetDashboardRoutes } from './dashboard-routes';
import type { Fleet, WalletRow } from './fleet';
import { setTopup } from './topup';

export interface WalletFleetServerDeps {
  fleet: Fleet;
  /** The NWC service key (also the settlement account's key). */
  pubkey: string;
  owners: Set<string>;
  replayStore: ReplayStore;
  metrics: Registry;
  publicUrl?: string | undefined;
  /** The NWC URI of a new connection (service pubkey and relays are the service's). */
  connectionUri: (secretHex: string) => string;
}

const name = z.string().min(1).max(64);
const schemas = {
  createWallet: z.strictObject({
    name,
    group: z
      .string()
      .regex(/^[a-z0-9_-]{1,40}$/)
      .optional(),
    policy: z.unknown(),
  }),
  setPolicy: z.strictObject({ policy: z.unknown() }),
  connect: z.strictObject({ name, expires_at_s: z.number().int().positive().optional() }),
  invoice: z.strictObject({ amount_msat: z.number().int().min(1000).max(100_000_000_000) }),
  fund: z.strictObject({
    amount_msat: z.number().int().positive().max(100_000_000_000),
    op_id: z.string().regex(/^[A-Za-z0-9_-]{1,64}$/),
  }),
  fundingRequest: z.strictObject({
    amount_msat: z.number().int().min(1000).max(100_000_000_000),
    reason: z.string().min(1).max(280),
  }),
  switch: z.strictObject({
    target: z.union([
      z.strictObject({ wallet: z.string().max(64) }),
      z.strictObject({ group: z.string().max(40) }),
      z.strictObject({ fleet: z.literal(true) }),
    ]),
    status: z.enum(['active', 'paused', 'killed']),
  }),
};

const parse = <T>(schema: z.ZodType<T>, request: FastifyRequest): T => {
  let json: unknown;
  try {
    json = JSON.parse(rawBody(request) || '{}');
  } catch {
    throw new FedAiError('INVALID_REQUEST', 'The body is not valid JSON.');
  }
  return schema.parse(json);
};

type OwnerRequest = FastifyRequest & { owner?: string };

/** Refuses a request without a NIP-98 header before its body is read (the signature is checked later). */
function requireNostrHeader(signer: string) {
  return async (request: FastifyRequest, reply: FastifyReply) => {
    if (!request.headers.authorization?.startsWith('Nostr '))
      return sendError(
        reply,
        'UNAUTHORIZED',
        `missing "Authorization: Nostr <base64>" header (NIP-98, ${signer})`,
      );
  };
}

export function createWalletFleetServer(deps: WalletFleetServerDeps): FastifyInstance {
  const app = createServer({ name: 'wallet-fleet', bodyLimitBytes: 64 * 1024 });
  addRawJsonParser(app);
  addMetricsRoute(app, deps.metrics);
  app.get('/health', async () => ({ ok: true }));
  app.get('/ready', async () => ({ ok: true }));
  app.get('/v1/info', async () => ({ pubkey: deps.pubkey }));
  const { fleet } = deps;
  registerFleetDashboardRoutes(app, deps);

  app.register(async (scope) => {
    scope.addHook('onRequest', requireNostrHeader('an owner key'));
    scope.addHook('preHandler', async (request, reply) => {
      try {
        (request as OwnerRequest).owner = await verifyNip98Request(request, {
          replayStore: deps.replayStore,
          allowed: deps.owners,
          publicUrl: deps.publicUrl,
        });
      } catch (error) {
        const e = toFedAiError(error);
        return sendError(reply, e.code, e.message);
      }
    });
    const owner = (request: FastifyRequest<never> | FastifyRequest) =>
      (request as unknown as OwnerRequest).owner as string;
    const view = async (w: WalletRow) => ({
      ...w,
      balance_msat: await fleet.balanceMsat(WF_ACCOUNTS.wallet(w.id)),
    });

    scope.post('/v1/wallets', async (request) => {
      const input = parse(schemas.createWallet, request);
      return view(await fleet.createWallet(owner(request), input));
    });
    scope.get('/v1/wallets', async (request) => ({
      wallets: await Promise.all((await fleet.listWallets(owner(request))).map(view)),
    }));
    scope.get('/v1/wallets/:id', async (request: FastifyRequest<{ Params: { id: string } }>) =>
      view(await fleet.wallet(owner(request), request.params.id)),
    );
    scope.put('/v1/wallets/:id/policy', async (request: FastifyRequest<{ Params: { id: string } }>) =>
      view(
        await fleet.setPolicy(owner(request), request.params.id, parse(schemas.setPolicy, request).policy),
      ),
    );
    scope.post('/v1/wallets/:id/connections', async (request: FastifyRequest<{ Params: { id: string } }>) => {
      const input = parse(schemas.connect, request);
      const made = await fleet.connect(owner(request), request.params.id, {
        name: input.name,
        expiresAtS: input.expires_at_s,
      });
      return { client_pubkey: made.clientPubkey, uri: deps.connectionUri(made.secretHex) };
    });
    scope.delete(
      '/v1/connections/:pubkey',
      async (request: FastifyRequest<{ Params: { pubkey: string } }>, reply) => {
        if (!(await fleet.revoke(owner(request), request.params.pubkey)))
          return sendError(reply, 'NOT_FOUND', 'No live connection of yours has this key.');
        return { ok: true };
      },
    );
    scope.post('/v1/wallets/:id/fund', async (request: FastifyRequest<{ Params: { id: string } }>) => {
      const input = parse(schemas.fund, request);
      await fleet.moveFunds(owner(request), request.params.id, input.amount_msat, input.op_id);
      return { ok: true, balance_msat: await fleet.balanceMsat(WF_ACCOUNTS.wallet(request.params.id)) };
    });
    scope.post('/v1/treasury/invoices', async (request) => {
      const input = parse(schemas.invoice, request);
      const invoice = await fleet.makeInvoice(owner(request), null, {
        amountMsat: input.amount_msat,
        description: 'fed-ai wallet fleet treasury',
        expirySeconds: 3600,
      });
      return {
        payment_hash: invoice.paymentHash,
        bolt11: invoice.bolt11,
        amount_msat: invoice.amountMsat,
        expires_at: invoice.expiresAtS,
      };
    });
    scope.get('/v1/treasury', async (request) => ({
      balance_msat: await fleet.balanceMsat(WF_ACCOUNTS.treasury(owner(request))),
    }));
    scope.get('/v1/approvals', async (request) => ({
      approvals: await fleet.pendingApprovals(owner(request)),
    }));
    scope.post('/v1/approvals/:id/approve', async (request: FastifyRequest<{ Params: { id: string } }>) =>
      fleet.decideApproval(owner(request), request.params.id, true),
    );
    scope.post('/v1/approvals/:id/deny', async (request: FastifyRequest<{ Params: { id: string } }>) =>
      fleet.decideApproval(owner(request), request.params.id, false),
    );
    scope.post('/v1/switches', async (request) => {
      const input = parse(schemas.switch, request);
      return fleet.setSwitch(
        owner(request),
        input.target as { wallet: string } | { group: string } | { fleet: true },
        input.status,
      );
    });
    scope.put('/v1/wallets/:id/topup', async (request: FastifyRequest<{ Params: { id: string } }>) => ({
      topup: await setTopup(fleet, owner(request), request.params.id, JSON.parse(rawBody(request) || 'null')),
    }));
    scope.get('/v1/funding-requests', async (request) => ({
      requests: await fleet.fundingRequests(owner(request)),
    }));
    scope.post(
      '/v1/funding-requests/:id/approve',
      async (request: FastifyRequest<{ Params: { id: string } }>) =>
        fleet.decideFunding(owner(request), request.params.id, true),
    );
    scope.post('/v1/funding-requests/:id/deny', async (request: FastifyRequest<{ Params: { id: string } }>) =>
      fleet.decideFunding(owner(request), request.params.id, false),
    );
    scope.get('/v1/audit/verify', async () => fleet.audit.verify());
    scope.get('/v1/audit/export', async (_request, reply) => {
      // Streamed page by page: the log grows without bound, the answer's memory does not.
      const lines = async function* () {
        for await (const line of fleet.audit.export()) yield `${line}\n`;
      };
      return reply.type('application/x-ndjson').send(Readable.from(lines()));
    });
  });
  // An agent's own route: NIP-98 signed by its NWC connection key (any signer passes the signature
  // check; the fleet then requires a live connection of that key).
  app.register(async (scope) => {
    scope.addHook('onRequest', requireNostrHeader('your connection key'));
    scope.post('/v1/agent/funding-requests', async (request, reply) => {
      let client: string;
      try {
        client = await verifyNip98Request(request, {
          replayStore: deps.replayStore,
          allowed: undefined,
          publicUrl: deps.publicUrl,
        });
      } catch (error) {
        const e = toFedAiError(error);
        return sendError(reply, e.code, e.message);
      }
      const input = parse(schemas.fundingRequest, request);
      return fleet.requestFunding(client, input.amount_msat, input.reason);
    });
  });
  return app;
}
