// Accounts of services at settlement (`/v1/account/*`): the wallet fleet keeps its money here the
// way an LNbits wallet lives on an LNbits server. Invoices of this network settle internally
// through the books; later, external invoices go out through settlement's Lightning backend.
//
// Every route is NIP-98 signed by a key in SETTLEMENT_WALLET_PUBKEYS, and the account is always
// the signer's own (payer `svc:<pubkey>`, ledger account `tab:svc:<pubkey>`): no route takes an
// account name, and another account's invoices and payments read as unknown.
import { rawBody, verifyNip98Request } from '@fed-ai/kit';
import { FedAiError, type ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { AccountInvoice, Books, PaymentRow } from './books';

export interface AccountRoutesDeps {
  books: Books;
  /** Keys allowed to hold an account; empty: the routes refuse everyone. */
  wallets: ReadonlySet<string>;
  replayStore: ReplayStore;
  publicUrl?: string | undefined;
}

/** The payer id of a service's account (its tab is `tab:svc:<pubkey>`). */
export const accountPayer = (pubkey: string) => `svc:${pubkey}`;

const MAX_AMOUNT_MSAT = 100_000_000_000;

export const accountInvoiceSchema = z.strictObject({
  amount_msat: z.number().int().min(1).max(MAX_AMOUNT_MSAT),
  description: z.string().max(256).optional(),
  expiry_s: z.number().int().min(60).max(86_400).optional(),
});
export const accountPaymentSchema = z.strictObject({
  bolt11: z.string().min(10).max(4096),
  max_fee_msat: z.number().int().min(0).max(MAX_AMOUNT_MSAT).optional(),
});
export const paymentHashSchema = z
  .string()
  .regex(/^[0-9a-fA-F]{64}$/, 'expected a payment hash (64 hex)')
  .transform((h) => h.toLowerCase());

const invoiceAnswer = (invoice: AccountInvoice) => ({
  payment_hash: invoice.paymentHash,
  bolt11: invoice.bolt11,
  amount_msat: invoice.amountMsat,
  description: invoice.description,
  created_at: invoice.createdAtS,
  expires_at: invoice.expiresAtS,
  state: invoice.state,
  preimage: invoice.preimage,
  settled_at: invoice.settledAtS,
});

const paymentAnswer = (row: PaymentRow) => ({
  payment_hash: row.payment_hash,
  state: row.state,
  preimage: row.state === 'succeeded' ? row.preimage : null,
  amount_msat: row.amount_msat,
  fee_msat: row.state === 'succeeded' ? (row.fee_msat ?? 0) : null,
});

function parseBody<T>(schema: z.ZodType<T>, request: FastifyRequest): T {
  let json: unknown;
  try {
    json = JSON.parse(rawBody(request));
  } catch {
    throw new FedAiError('INVALID_REQUEST', 'The body is not valid JSON.');
  }
  return schema.parse(json);
}

export function addAccountRoutes(app: FastifyInstance, deps: AccountRoutesDeps): void {
  /** NIP-98 by an allowed wallet key; the account is the signer's. */
  const accountOf = async (request: FastifyRequest): Promise<string> =>
    accountPayer(
      await verifyNip98Request(request, {
        replayStore: deps.replayStore,
        allowed: deps.wallets,
        publicUrl: deps.publicUrl,
      }),
    );

  app.post('/v1/account/invoices', async (request) => {
    const payer = await accountOf(request);
    const input = parseBody(accountInvoiceSchema, request);
    const invoice = await deps.books.openTopup(payer, input.amount_msat, {
      description: input.description,
      expirySeconds: input.expiry_s,
      minAmountMsat: 1,
    });
    return {
      payment_hash: invoice.paymentHash,
      bolt11: invoice.bolt11,
      amount_msat: invoice.amountMsat,
      description: invoice.description,
      created_at: invoice.createdAtS,
      expires_at: invoice.expiresAtS,
    };
  });

  app.get('/v1/account/invoices/:hash', async (request: FastifyRequest<{ Params: { hash: string } }>) => {
    const payer = await accountOf(request);
    const hash = paymentHashSchema.parse(request.params.hash);
    const invoice = await deps.books.accountInvoice(payer, hash);
    if (!invoice) throw new FedAiError('NOT_FOUND', 'No invoice of this account has that hash.');
    return invoiceAnswer(invoice);
  });

  app.post('/v1/account/payments', async (request) => {
    const payer = await accountOf(request);
    const input = parseBody(accountPaymentSchema, request);
    const row = await deps.books.accountPay(payer, input.bolt11, { maxFeeMsat: input.max_fee_msat });
    return paymentAnswer(row);
  });

  app.get('/v1/account/payments/:hash', async (request: FastifyRequest<{ Params: { hash: string } }>) => {
    const payer = await accountOf(request);
    const hash = paymentHashSchema.parse(request.params.hash);
    const row = await deps.books.accountPayment(payer, hash);
    if (!row)
      return {
        payment_hash: hash,
        state: 'unknown',
        preimage: null,
        amount_msat: null,
        fee_msat: null,
        failure_code: null,
      };
    return { ...paymentAnswer(row), failure_code: row.state === 'failed' ? row.failure_code : null };
  });

  app.get('/v1/account/balance', async (request) => {
    const payer = await accountOf(request);
    const balance = await deps.books.balance(payer);
    return { balance_msat: balance.balanceMsat, reserved_msat: balance.reservedMsat };
  });
}
