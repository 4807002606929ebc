// The devnet Lightning service's HTTP API: the subset of LNbits' REST API that the LNbits adapter
// (packages/lightning/src/lnbits.ts) speaks, so the same adapter runs against this service on a
// devnet and against a real LNbits server in production. Not the Lightning network: it settles
// invoices between its own wallets only.
//
//   POST /api/v1/payments {out:false, amount (sat), memo?, expiry?, description_hash?,
//                          unhashed_description?}                   invoice key -> 201
//   POST /api/v1/payments {out:true, bolt11}                         admin key   -> 201
//   GET  /api/v1/payments/:payment_hash   (key optional: details only for the wallet's own)
//   GET  /api/v1/wallet                   -> {id, name, balance (msat)}
//   POST /devnet/wallets {name, mint?}    devnet only, header X-Admin-Key -> the wallet's keys
//
// Every failure answers LNbits' shape `{"detail": "..."}`; keys never reach the logs (the key
// headers are redacted, and keys are stored only as hashes).
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { createLogger, createServer, loadServiceKey, migrate, openDb, StartError } from '@fed-ai/kit';
import { sha256Hex } from '@fed-ai/lightning';
import { bytesToHex, initCrypto } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify';
import { z } from 'zod';
import type { DevnetConfig } from './config';
import { DEVNET_MIGRATIONS, DevnetError, DevnetStore, sameSecret } from './store';

/** Largest invoice: 1 BTC (in sat). */
const MAX_INVOICE_SAT = 100_000_000;
const MAX_EXPIRY_S = 30 * 24 * 3600;
const MAX_KEY_CHARS = 200;

const createBody = z.object({
  out: z.literal(false),
  amount: z
    .number({ error: 'amount must be a number of sat' })
    .refine(Number.isInteger, 'amount must be a whole number of sat')
    .refine((n) => n >= 1 && n <= MAX_INVOICE_SAT, `amount must be 1..${MAX_INVOICE_SAT} sat`),
  unit: z.literal('sat', { error: 'only unit "sat" is supported' }).optional(),
  memo: z.string().max(640).optional(),
  expiry: z.number().int().min(1).max(MAX_EXPIRY_S).optional(),
  // LNbits commits the invoice to a description by hash (LNURL-pay): `description_hash` is the
  // hash (hex), `unhashed_description` the description's bytes (hex) that it hashes itself.
  description_hash: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'description_hash must be 32 bytes of hex')
    .optional(),
  unhashed_description: z
    .string()
    .max(32_768)
    .regex(/^([0-9a-fA-F]{2})*$/, 'unhashed_description must be hex')
    .optional(),
});
const payBody = z.object({ out: z.literal(true), bolt11: z.string().min(10).max(4096) });
const walletBody = z.object({ name: z.string().min(1).max(100), mint: z.boolean().optional() });
const hashParam = z.string().regex(/^[0-9a-fA-F]{64}$/);

function fail(status: number, detail: string): never {
  throw new DevnetError(status, detail);
}

/** The first problem of a zod failure, as one sentence. */
function descriptionHashOf(create: z.infer<typeof createBody>): { descriptionHash?: string } {
  if (create.description_hash) return { descriptionHash: create.description_hash.toLowerCase() };
  if (create.unhashed_description !== undefined)
    return { descriptionHash: sha256Hex(create.unhashed_description) };
  return {};
}

function firstIssue(error: z.ZodError): string {
  const issue = error.issues[0];
  if (!issue) return 'invalid request';
  const where = issue.path.length > 0 ? `${issue.path.join('.')}: ` : '';
  return `${where}${issue.message}`.slice(0, 300);
}

function parse<T>(schema: z.ZodType<T>, value: unknown): T {
  const result = schema.safeParse(value);
  if (!result.success) fail(400, firstIssue(result.error));
  return result.data;
}

function header(request: FastifyRequest, name: string): string | null {
  const value = request.headers[name];
  if (typeof value !== 'string' || value.length === 0) return null;
  if (value.length > MAX_KEY_CHARS) fail(401, 'Invalid key.');
  return value;
}

export interface DevnetServerDeps {
  store: DevnetStore;
  adminKey: string;
}

export function createDevnetServer(deps: DevnetServerDeps): FastifyInstance {
  const logger = createLogger('lightning-devnet');
  const app = createServer({ name: 'lightning-devnet', logger, bodyLimitBytes: 16 * 1024 });
  // Whatever the shared shell answers as `{error: {code, message}}` (bad JSON, too large, no
  // route) goes out in LNbits' shape.
  app.addHook('onSend', async (_request, reply, payload) => {
    if (reply.statusCode < 400 || typeof payload !== 'string') return payload;
    try {
      const parsed = JSON.parse(payload) as { error?: { code?: unknown; message?: unknown } };
      if (parsed && typeof parsed === 'object' && parsed.error && !('detail' in parsed)) {
        const message = parsed.error.message ?? parsed.error.code ?? 'error';
        return JSON.stringify({ detail: String(message) });
      }
    } catch {
      return JSON.stringify({ detail: 'error' });
    }
    return payload;
  });

  /** A handler whose DevnetError becomes `{detail}` with its status. */
  const handle =
    (fn: (request: FastifyRequest, reply: FastifyReply) => Promise<unknown>) =>
    async (request: FastifyRequest, reply: FastifyReply) => {
      try {
        return await fn(request, reply);
      } catch (error) {
        if (error instanceof DevnetError) return reply.code(error.status).send({ detail: error.detail });
        throw error;
      }
    };

  const walletOf = async (request: FastifyRequest) => {
    const key = header(request, 'x-api-key');
    if (!key) fail(401, 'Missing api key.');
    const found = await deps.store.walletForKey(key);
    if (!found) fail(401, 'Invalid key.');
    return found;
  };

  app.get('/health', async () => ({ ok: true }));

  app.get(
    '/api/v1/wallet',
    handle(async (request) => {
      const { wallet } = await walletOf(request);
      return { id: wallet.id, name: wallet.name, balance: wallet.balance_msat };
    }),
  );

  app.post(
    '/api/v1/payments',
    handle(async (request, reply) => {
      const { wallet, admin } = await walletOf(request);
      const body = request.body;
      if (typeof body !== 'object' || body === null || Array.isArray(body))
        fail(400, 'body must be a JSON object');
      // LNbits' default for `out` is true (a payment).
      const out = (body as { out?: unknown }).out ?? true;
      if (out === true) {
        if (!admin) fail(403, 'Admin key required to pay invoices.');
        const bolt11 = (body as { bolt11?: unknown }).bolt11;
        if (bolt11 === undefined) fail(400, 'BOLT11 string is invalid or not given');
        const pay = parse(payBody, { ...body, out });
        const paid = await deps.store.pay(wallet.id, pay.bolt11);
        return reply.code(201).send({ payment_hash: paid.paymentHash, checking_id: paid.paymentHash });
      }
      const create = parse(createBody, body);
      const created = await deps.store.createInvoice(wallet.id, {
        amountMsat: create.amount * 1000,
        memo: create.memo ?? '',
        expirySeconds: create.expiry ?? 3600,
        ...descriptionHashOf(create),
      });
      return reply.code(201).send({
        payment_hash: created.paymentHash,
        payment_request: created.bolt11,
        bolt11: created.bolt11,
        checking_id: created.paymentHash,
        amount: create.amount * 1000,
      });
    }),
  );

  app.get(
    '/api/v1/payments/:payment_hash',
    handle(async (request) => {
      const hash = (request.params as { payment_hash: string }).payment_hash;
      if (!hashParam.safeParse(hash).success) fail(404, 'Payment does not exist.');
      const key = header(request, 'x-api-key');
      const wallet = key ? await deps.store.walletForKey(key) : null;
      const view = await deps.store.paymentView(hash.toLowerCase(), wallet?.wallet.id ?? null);
      if (!view) fail(404, 'Payment does not exist.');
      return view;
    }),
  );

  // Devnet only: creating wallets (and the one mint wallet, the only place money is created).
  app.post(
    '/devnet/wallets',
    handle(async (request, reply) => {
      const given = header(request, 'x-admin-key');
      if (!given) fail(401, 'Missing admin key (X-Admin-Key).');
      if (!sameSecret(given, deps.adminKey)) fail(403, 'Invalid admin key.');
      const body = parse(walletBody, request.body);
      const wallet = await deps.store.createWallet(body.name, body.mint ?? false);
      return reply.code(201).send({
        id: wallet.id,
        name: wallet.name,
        adminkey: wallet.adminkey,
        inkey: wallet.inkey,
        mint: wallet.mint,
        balance: wallet.balance_msat,
      });
    }),
  );
  return app;
}

/** The admin key: inline, from its file, or created in DATA_DIR/admin.key (0600). */
function loadAdminKey(config: DevnetConfig, dataDir: string): string {
  if (config.DEVNET_ADMIN_KEY) return config.DEVNET_ADMIN_KEY;
  const path = resolve(config.DEVNET_ADMIN_KEY_FILE ?? `${dataDir}/admin.key`);
  if (!existsSync(path)) {
    if (config.DEVNET_ADMIN_KEY_FILE)
      throw new StartError(
        'KEY_FILE_MISSING',
        `DEVNET_ADMIN_KEY_FILE ${config.DEVNET_ADMIN_KEY_FILE} does not exist`,
        'fix the path, or set DEVNET_ADMIN_KEY',
      );
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(path, `${randomBytes(24).toString('hex')}\n`, {
      mode: 0o600,
      flag: 'wx',
    });
  }
  const key = readFileSync(path, 'utf8').trim();
  if (key.length < 16)
    throw new StartError(
      'KEY_FILE_UNSAFE',
      `the admin key in ${path} is shorter than 16 characters`,
      'write a longer key',
    );
  return key;
}

export interface RunningDevnet {
  url: string;
  store: DevnetStore;
  close(): Promise<void>;
}

export async function startLightningDevnet(config: DevnetConfig): Promise<RunningDevnet> {
  await initCrypto();
  const dataDir = resolve(config.DATA_DIR);
  const nodeKey = loadServiceKey(config.LIGHTNING_DEVNET_KEY, undefined, `${dataDir}/node.key`);
  const adminKey = loadAdminKey(config, dataDir);
  const db = await openDb({ url: config.DATABASE_URL, dataDir: resolve(dataDir, 'db'), maxConnections: 10 });
  try {
    await migrate(db, 'lightning-devnet', DEVNET_MIGRATIONS);
  } catch (error) {
    await db.close();
    throw error;
  }
  const store = new DevnetStore(db, bytesToHex(nodeKey));
  const app = createDevnetServer({ store, adminKey });
  let url: string;
  try {
    url = await app.listen({ host: config.LIGHTNING_DEVNET_HOST, port: config.LIGHTNING_DEVNET_PORT });
  } catch (error) {
    await db.close();
    throw error;
  }
  return {
    url,
    store,
    async close() {
      await app.close();
      await db.close();
    },
  };
}
