// Settlement HTTP API. Routers move money with signed settlement envelopes (kind 28123, audience =
// this service); tab and faucet calls are NIP-98 signed by an allowed router. Everything is
// idempotent by its operation id.
import {
  addMetricsRoute,
  addRawJsonParser,
  createServer,
  rawBody,
  sendError,
  verifyNip98Request,
} from '@fed-ai/kit';
import { type Envelope, KIND, type ReplayStore, verifyEnvelope } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import type { Registry } from 'prom-client';
import { z } from 'zod';
import type { Books } from './books';

export interface SettlementServerDeps {
  books: Books;
  pubkey: string;
  routers: Set<string>;
  operators: Set<string>;
  verify: () => Promise<unknown>;
  replayStore: ReplayStore;
  metrics: Registry;
  publicUrl?: string | undefined;
}

const topupSchema = z.object({ payer: z.string().min(1).max(160), amount_msat: z.number().int().positive() });
const faucetSchema = z.object({ bolt11: z.string().min(10).max(4096) });
const refundSchema = z.object({ payer: z.string().min(1).max(160), bolt11: z.string().min(10).max(4096) });

export function createSettlementServer(deps: SettlementServerDeps): FastifyInstance {
  const app = createServer({ name: 'settlement', bodyLimitBytes: 64 * 1024 });
  addRawJsonParser(app);
  addMetricsRoute(app, deps.metrics);
  app.get('/health', async () => ({ ok: true }));
  app.get('/ready', async () => ({ ok: true }));
  app.get('/v1/info', async () => ({ pubkey: deps.pubkey }));

  /** NIP-98 by an allowed router (or operator); returns the signer's pubkey. */
  const routerAuth = (request: FastifyRequest, allowed: Set<string> = deps.routers) =>
    verifyNip98Request(request, { replayStore: deps.replayStore, allowed, publicUrl: deps.publicUrl });

  app.post('/v1/ops', async (request, reply) => {
    const verified = await verifyEnvelope(rawBody(request), {
      me: deps.pubkey,
      kinds: [KIND.settlementRequest],
      replayStore: deps.replayStore,
    });
    if (!verified.ok) return sendError(reply, verified.code, verified.detail);
    if (!deps.routers.has(verified.envelope.pubkey))
      return sendError(reply, 'FORBIDDEN', 'Not an allowed router.');
    const op = verified.payload;
    if (op.op === 'reserve') {
      const { balanceMsat } = await deps.books.reserve(op.op_id, op.account, op.amount_msat, op.timeout_s);
      return { op_id: op.op_id, ok: true, balance_msat: balanceMsat };
    }
    if (op.op === 'capture') {
      let metering: Envelope;
      try {
        metering = JSON.parse(op.metering) as Envelope;
      } catch {
        return sendError(reply, 'BAD_METERING', 'metering is not JSON');
      }
      // The charge must rest on a metering record the node signed for this request.
      const check = await verifyEnvelope(metering, {
        me: null,
        kinds: [KIND.meteringRecord],
        nowS: metering.created_at,
      });
      if (!check.ok || check.envelope.pubkey !== op.node || check.payload.request_id !== op.op_id) {
        return sendError(
          reply,
          'BAD_METERING',
          'capture must carry the node-signed metering record of this request',
        );
      }
      const { chargedMsat } = await deps.books.capture(op.op_id, op.amount_msat, op.node, metering);
      return { op_id: op.op_id, ok: true, charged_msat: chargedMsat };
    }
    await deps.books.release(op.op_id);
    return { op_id: op.op_id, ok: true };
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

  app.post('/v1/faucet/pay', async (request) => {
    await routerAuth(request);
    const input = faucetSchema.parse(JSON.parse(rawBody(request)));
    const paid = await deps.books.faucetPay(input.bolt11);
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
    };
  });

  app.get('/v1/ledger/verify', async (request) => {
    await routerAuth(request, deps.operators);
    return deps.verify();
  });

  app.get('/v1/tabs/:payer', async (request: FastifyRequest<{ Params: { payer: string } }>) => {
    await routerAuth(request);
    return deps.books.tab(request.params.payer);
  });
  return app;
}
