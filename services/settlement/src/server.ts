// Settlement HTTP API. Routers move money with signed settlement envelopes (kind 28123, audience =
// this service); tab and faucet calls are NIP-98 signed by an allowed router; accounts of
// services (`/v1/account/*`, account-routes.ts) are NIP-98 signed by an allowed wallet key.
// Everything is idempotent by its operation id.
import {
  addMetricsRoute,
  addRawJsonParser,
  createServer,
  errorBody,
  rawBody,
  sendError,
  toFedAiError,
  verifyAllowedEnvelope,
  verifyNip98Request,
} from '@fed-ai/kit';
import {
  type ChannelKeys,
  type Envelope,
  FedAiError,
  isMacEnvelope,
  KIND,
  REQUEST_AUTH,
  type ReplayStore,
  type SettlementRequest,
} from '@fed-ai/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { Counter, type Registry } from 'prom-client';
import { z } from 'zod';
import { addAccountRoutes } from './account-routes';
import type { Books } from './books';
import { addDisputeRoutes } from './dispute-routes';
import type { Disputes } from './disputes';
import { type Overview, overviewQuery } from './overview';
import { addPayoutRoutes } from './payout-routes';
import type { Payouts } from './payouts';
import { addReconcileRoutes, type ReconcileRouteDeps } from './reconcile-routes';

export interface SettlementServerDeps {
  books: Books;
  pubkey: string;
  routers: Set<string>;
  /** Services with an account here (`/v1/account/*`); none by default. */
  wallets?: Set<string> | undefined;
  operators: Set<string>;
  verify: () => Promise<unknown>;
  replayStore: ReplayStore;
  metrics: Registry;
  publicUrl?: string | undefined;
  /** The fee on a peer router's cost for offloaded requests (routers reserve with it). */
  offloadFeeBps?: number;
  /** The Bitcoin network its invoices are on (LIGHTNING_NETWORK), shown by /v1/info. */
  lightningNetwork?: string;
  /** `GET /v1/backend` (operators): the Lightning backend's name and a balance check, no secrets. */
  backend?: () => Promise<{ backend: string; reachable: boolean; balance_msat: number | null }>;
  /** Node payouts (`/v1/payouts*`); absent: the routes are not there. */
  payouts?: Payouts | undefined;
  /** `POST /v1/admin/reconcile` (operators): reconcile.ts's run, answered as its report. */
  reconcile?: ReconcileRouteDeps['reconcile'];
  /** Disputes of charges (`/v1/disputes*`, dispute-routes.ts); absent: the routes are not there. */
  disputes?: Disputes | undefined;
  /** Takes routers' operations with a MAC instead of a signature (channel-mac.ts; /v1/info says so). */
  channelKeys?: ChannelKeys | undefined;
  /** `GET /v1/admin/overview` (routers and operators): fees, tabs and payouts (overview.ts). */
  overview?: (limit: number | undefined) => Promise<Overview>;
}

export const topupSchema = z.object({
  payer: z.string().min(1).max(160),
  amount_msat: z.number().int().positive(),
});
export const faucetSchema = z.object({ bolt11: z.string().min(10).max(4096) });
export const refundSchema = z.object({
  payer: z.string().min(1).max(160),
  bolt11: z.string().min(10).max(4096),
});

type SingleOp = Exclude<SettlementRequest, { op: 'batch' }>;

/** One money operation of a router; throws FedAiError (BAD_METERING for a record the books refuse). */
async function runOp(books: Books, op: SingleOp, router: string): Promise<Record<string, unknown>> {
  if (op.op === 'reserve') {
    const { balanceMsat } = await books.reserve(op.op_id, op.account, op.amount_msat, op.timeout_s);
    return { op_id: op.op_id, ok: true, balance_msat: balanceMsat };
  }
  if (op.op === 'capture') {
    // Books verify the node-signed record (signer, audience = this router, request, cost) and
    // charge exactly its cost; the router's amount is only its claim.
    // The record's text goes as it came: verified once (by the books), and written to the charge
    // row as is. Only its first character is looked at here, so a non-object is refused before
    // anything is looked up.
    if (!/^\s*\{/.test(op.metering))
      throw new FedAiError('BAD_METERING', 'metering must be a signed record (a JSON object)');
    const { chargedMsat } = await books.capture(op.op_id, op.node, op.metering, router, op.lease_id);
    return { op_id: op.op_id, ok: true, charged_msat: chargedMsat };
  }
  if (op.op === 'open_lease') {
    const { balanceMsat } = await books.openLease(op.op_id, op.account, op.amount_msat, op.timeout_s, router);
    return { op_id: op.op_id, ok: true, balance_msat: balanceMsat };
  }
  if (op.op === 'close_lease') {
    await books.closeLease(op.op_id, router);
    return { op_id: op.op_id, ok: true };
  }
  if (op.op === 'capture_offload') {
    const result = parseJsonObject(op.result, 'result');
    const { chargedMsat } = await books.captureOffload(op.op_id, op.peer, result, router);
    return { op_id: op.op_id, ok: true, charged_msat: chargedMsat };
  }
  await books.release(op.op_id);
  return { op_id: op.op_id, ok: true };
}

function parseJsonObject(text: string, name: string): Envelope {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new FedAiError('BAD_METERING', `${name} is not JSON`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new FedAiError('BAD_METERING', `${name} must be a signed record (a JSON object)`);
  return value as Envelope;
}

/** How long the faucet remembers an invoice it paid (far beyond any top-up invoice's expiry). */
const FAUCET_MEMORY_S = 30 * 24 * 3600;

export function createSettlementServer(deps: SettlementServerDeps): FastifyInstance {
  const app = createServer({ name: 'settlement', bodyLimitBytes: 256 * 1024 });
  addRawJsonParser(app);
  addMetricsRoute(app, deps.metrics);
  app.get('/health', async () => ({ ok: true }));
  app.get('/ready', async () => ({ ok: true }));
  app.get('/v1/info', async () => ({
    pubkey: deps.pubkey,
    offload_fee_bps: deps.offloadFeeBps ?? 0,
    lightning_network: deps.lightningNetwork ?? 'regtest',
    auth: deps.channelKeys ? [...REQUEST_AUTH] : [],
  }));

  /** NIP-98 by an allowed router (or operator); returns the signer's pubkey. */
  const routerAuth = (request: FastifyRequest, allowed: Set<string> = deps.routers) =>
    verifyNip98Request(request, { replayStore: deps.replayStore, allowed, publicUrl: deps.publicUrl });

  const opEnvelopes = new Counter({
    name: 'fedai_settlement_op_envelopes_total',
    help: "Routers' operation envelopes taken, by how they were authenticated (mac, signature)",
    labelNames: ['auth'],
    registers: [deps.metrics],
  });
  app.post('/v1/ops', async (request, reply) => {
    // Signature first, then the signer, and only then the replay-store write: an unknown key's
    // envelopes are refused without leaving a row.
    const verified = await verifyAllowedEnvelope(rawBody(request), {
      me: deps.pubkey,
      kinds: [KIND.settlementRequest],
      replayStore: deps.replayStore,
      allowed: deps.routers,
      notAllowed: 'FORBIDDEN',
      notAllowedMessage: 'Not an allowed router.',
      channel: deps.channelKeys && { keys: deps.channelKeys, from: deps.routers },
    });
    if (!verified.ok) return sendError(reply, verified.code, verified.detail);
    opEnvelopes.inc({ auth: isMacEnvelope(verified.envelope) ? 'mac' : 'signature' });
    const op = verified.payload;
    const router = verified.envelope.pubkey;
    if (op.op === 'batch') {
      // Each operation on its own (concurrently: the books write them in one transaction), and
      // each refusal answered with the status it would have had alone.
      const results = await Promise.all(
        op.ops.map((one) =>
          runOp(deps.books, one, router).catch((error: unknown) => {
            const e = toFedAiError(error);
            if (e.code === 'INTERNAL') request.log.error({ err: error, op_id: one.op_id }, 'batch op failed');
            const status = e.code === 'BAD_METERING' ? 400 : e.status;
            return { op_id: one.op_id, ok: false, status, code: e.code, message: e.message.slice(0, 300) };
          }),
        ),
      );
      return { ok: true, results };
    }
    try {
      return await runOp(deps.books, op, router);
    } catch (error) {
      // A malformed capture is the caller's fault: 400 (BAD_METERING is 502 when a router finds a
      // node's record bad; here the router sent it).
      if (error instanceof FedAiError && error.code === 'BAD_METERING')
        return reply.code(400).send(errorBody('BAD_METERING', error.message));
      throw error;
    }
  });

  app.post('/v1/topups', async (request) => {
    await routerAuth(request);
    const input = topupSchema.parse(JSON.parse(rawBody(request)));
    const invoice = await deps.books.openTopup(input.payer, input.amount_msat);
    return {
      payment_hash: invoice.paymentHash,
      bolt11: invoice.bolt11,
      amount_msat: invoice.amountMsat,
      expires_at: invoice.expiresAtS,
    };
  });

  // Pays an invoice once. Books.faucetPay is idempotent (a second payment credits nothing) but
  // answers the same either way; the first successful call records `faucet:<payment_hash>` in
  // the replay store (atomic, persistent), and any later one answers 409 ALREADY_PAID.
  app.post('/v1/faucet/pay', async (request) => {
    await routerAuth(request);
    const input = faucetSchema.parse(JSON.parse(rawBody(request)));
    const paid = await deps.books.faucetPay(input.bolt11);
    const first = await deps.replayStore.checkAndRecord(
      `faucet:${paid.paymentHash}`,
      Math.floor(Date.now() / 1000) + FAUCET_MEMORY_S,
    );
    if (!first) throw new FedAiError('ALREADY_PAID');
    return { payment_hash: paid.paymentHash, credited_msat: paid.creditedMsat };
  });

  app.post('/v1/refunds', async (request) => {
    await routerAuth(request);
    const input = refundSchema.parse(JSON.parse(rawBody(request)));
    const refund = await deps.books.refund(input.payer, input.bolt11);
    return {
      payment_hash: refund.paymentHash,
      amount_msat: refund.amountMsat,
      balance_msat: refund.balanceMsat,
      state: refund.state,
    };
  });

  app.get('/v1/ledger/verify', async (request) => {
    await routerAuth(request, deps.operators);
    return deps.verify();
  });

  app.get('/v1/backend', async (request) => {
    await routerAuth(request, deps.operators);
    if (!deps.backend) throw new FedAiError('NOT_FOUND', 'no backend status here');
    return deps.backend();
  });

  const overviewReaders = new Set([...deps.routers, ...deps.operators]);
  app.get('/v1/admin/overview', async (request) => {
    await routerAuth(request, overviewReaders);
    const { limit } = overviewQuery.parse(request.query);
    if (!deps.overview) throw new FedAiError('NOT_FOUND', 'no overview here');
    return deps.overview(limit);
  });

  app.get('/v1/tabs/:payer', async (request: FastifyRequest<{ Params: { payer: string } }>) => {
    await routerAuth(request);
    return deps.books.tab(request.params.payer);
  });

  addReconcileRoutes(app, deps);
  if (deps.disputes) addDisputeRoutes(app, { ...deps, disputes: deps.disputes });
  if (deps.payouts)
    addPayoutRoutes(app, {
      payouts: deps.payouts,
      operators: deps.operators,
      replayStore: deps.replayStore,
      publicUrl: deps.publicUrl,
    });
  addAccountRoutes(app, {
    books: deps.books,
    wallets: deps.wallets ?? new Set(),
    replayStore: deps.replayStore,
    publicUrl: deps.publicUrl,
  });
  return app;
}
