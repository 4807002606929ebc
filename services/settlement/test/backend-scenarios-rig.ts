// One rig per Lightning backend for backend-scenarios.test.ts: the real adapter (LnbitsBackend,
// LndBackend, ClnBackend) against its stand-in running in the test process (the devnet
// Lightning service behind a holding proxy; the LND and CLN doubles), and what a scenario needs
// to do at the far side: pay a top-up from outside, give an invoice of someone else, script a
// failure, hold a payment in flight and finish it, count the sends.
import { randomBytes } from 'node:crypto';
import { createServer, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import {
  ClnBackend,
  encodeInvoice,
  type Invoice,
  type LightningBackend,
  LnbitsBackend,
  LndBackend,
} from '@fed-ai/lightning';
import { type ClnDouble, startClnDouble } from '../../../packages/lightning/test/cln-double';
import { type LndDouble, startLndDouble } from '../../../packages/lightning/test/lnd-double';
import { devnetConfigSchema } from '../../lightning-devnet/src/config';
import { type RunningDevnet, startLightningDevnet } from '../../lightning-devnet/src/server';

export type BackendName = 'lnbits' | 'lnd' | 'cln';

export interface Rig {
  name: BackendName;
  /** A fresh adapter (a restarted settlement makes a new one), with short timeouts. */
  adapter(): LightningBackend & { destroy?(): Promise<void> };
  /** Settlement's environment for this backend (the child-process scenario). */
  env: Record<string, string>;
  /** Someone outside pays one of settlement's invoices. */
  payFromOutside(invoice: Invoice): Promise<void>;
  /** An invoice of someone else that the backend can pay (committing to a description hash: LNURL). */
  foreignInvoice(
    amountMsat: number,
    descriptionHash?: string,
  ): Promise<{ bolt11: string; paymentHash: string }>;
  /** The next payment of this hash fails definitely (no route). */
  failNext(hash: string): void;
  /** The invoice was paid by someone else first: the backend refuses with "already paid". */
  paidElsewhere(invoice: { bolt11: string; paymentHash: string }): Promise<void>;
  /** The payment of this hash is sent but its answer is held back (in flight) until `finish`. */
  hold(hash: string): void;
  finish(hash: string, outcome: 'succeed' | 'fail'): void;
  /** Payments the backend sent out for this hash. */
  sends(hash: string): number;
  /** Called once when a payment of `hash` has been sent (its answer not yet given). */
  onSent(hash: string, callback: () => void): void;
  close(): Promise<void>;
}

const ADMIN = 'devnet-admin-key-backend-scenarios-01';

export async function startRig(
  name: BackendName,
  options: { dir: string; databaseUrl: string },
): Promise<Rig> {
  if (name === 'lnd') return lndRig(await startLndDouble());
  if (name === 'cln') return clnRig(await startClnDouble());
  return lnbitsRig(options);
}

/** Counts the double's sends per payment hash and calls a waiting hook once on the first. */
function countSends(double: { onSend: ((hash: string) => void) | null }): Pick<Rig, 'sends' | 'onSent'> {
  const sent = new Map<string, number>();
  const hooks = new Map<string, () => void>();
  double.onSend = (hash) => {
    sent.set(hash, (sent.get(hash) ?? 0) + 1);
    hooks.get(hash)?.();
    hooks.delete(hash);
  };
  return {
    sends: (hash) => sent.get(hash) ?? 0,
    onSent: (hash, callback) => void hooks.set(hash, callback),
  };
}

/** An invoice of another node that the double will route to (committing to a hash for LNURL). */
function payeeInvoice(
  double: { addPayee(invoice: { paymentHash: string }): void },
  amountMsat: number,
  descriptionHash?: string,
): { bolt11: string; paymentHash: string } {
  const invoice = encodeInvoice({
    amountMsat,
    description: 'elsewhere',
    expirySeconds: 3600,
    nodeSecretKeyHex: randomBytes(32).toString('hex'),
    ...(descriptionHash ? { descriptionHash } : {}),
  });
  double.addPayee(invoice);
  return invoice;
}

function lndRig(lnd: LndDouble): Rig {
  const { sends, onSent } = countSends(lnd);
  return {
    name: 'lnd',
    adapter: () =>
      new LndBackend({ url: lnd.url, macaroonHex: lnd.macaroonHex, timeoutMs: 1000, payTimeoutSeconds: 1 }),
    env: { LIGHTNING_BACKEND: 'lnd', LND_REST_URL: lnd.url, LND_MACAROON_HEX: lnd.macaroonHex },
    payFromOutside: async (invoice) => lnd.settle(invoice.paymentHash),
    foreignInvoice: async (amountMsat, descriptionHash) => payeeInvoice(lnd, amountMsat, descriptionHash),
    failNext: (hash) => lnd.script(hash, { kind: 'fail', reason: 'FAILURE_REASON_NO_ROUTE' }),
    paidElsewhere: async (invoice) => lnd.script(invoice.paymentHash, { kind: 'already-paid' }),
    hold: (hash) => lnd.script(hash, { kind: 'hang' }),
    finish: (hash, outcome) =>
      lnd.resolve(
        hash,
        outcome === 'succeed'
          ? { kind: 'succeed', feeMsat: 0 }
          : { kind: 'fail', reason: 'FAILURE_REASON_NO_ROUTE' },
      ),
    sends,
    onSent,
    close: () => lnd.close(),
  };
}

function clnRig(cln: ClnDouble): Rig {
  const { sends, onSent } = countSends(cln);
  return {
    name: 'cln',
    adapter: () => new ClnBackend({ url: cln.url, rune: cln.rune, timeoutMs: 1000, payRetrySeconds: 1 }),
    env: { LIGHTNING_BACKEND: 'cln', CLN_REST_URL: cln.url, CLN_RUNE: cln.rune },
    payFromOutside: async (invoice) => cln.settle(invoice.paymentHash),
    foreignInvoice: async (amountMsat, descriptionHash) => payeeInvoice(cln, amountMsat, descriptionHash),
    // lightning-pay(7): 205 after trying (a failed attempt listpays shows).
    failNext: (hash) =>
      cln.script(hash, { kind: 'error', code: 205, message: 'Ran out of routes to try', sent: true }),
    paidElsewhere: async (invoice) =>
      cln.script(invoice.paymentHash, {
        kind: 'error',
        code: 201,
        message: 'Already paid with this hash using different amount or destination',
      }),
    hold: (hash) => cln.script(hash, { kind: 'hang' }),
    finish: (hash, outcome) =>
      cln.resolve(hash, outcome === 'succeed' ? { kind: 'succeed', feeMsat: 0 } : { kind: 'fail' }),
    sends,
    onSent,
    close: () => cln.close(),
  };
}

/**
 * LNbits: the devnet Lightning service (LNbits' REST subset) behind a proxy in the test process.
 * The devnet settles a payment in one transaction, so "in flight" here is the real LNbits case of
 * a payment made whose answer never reached settlement: the proxy forwards the pay call, then
 * holds the answer until `finish` (or forever, when settlement was killed meanwhile).
 */
async function lnbitsRig(options: { dir: string; databaseUrl: string }): Promise<Rig> {
  const devnet: RunningDevnet = await startLightningDevnet(
    devnetConfigSchema.parse({
      LIGHTNING_DEVNET_PORT: '0',
      DATA_DIR: join(options.dir, 'devnet'),
      DATABASE_URL: options.databaseUrl,
      DEVNET_ADMIN_KEY: ADMIN,
    }),
  );
  const wallet = async (walletName: string, mint = false) => {
    const answer = await fetch(`${devnet.url}/devnet/wallets`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-admin-key': ADMIN },
      body: JSON.stringify({ name: walletName, mint }),
    });
    if (answer.status !== 201) throw new Error(`devnet wallet: ${answer.status}`);
    return ((await answer.json()) as { adminkey: string }).adminkey;
  };
  const [mintKey, settlementKey, payeeKey] = [
    await wallet('mint', true),
    await wallet('settlement'),
    await wallet('payee'),
  ];
  const mint = new LnbitsBackend({ url: devnet.url, apiKey: mintKey });
  const payee = new LnbitsBackend({ url: devnet.url, apiKey: payeeKey });

  // The proxy: settlement's adapter talks to it; pay calls are counted by hash (bolt11 → hash).
  const sent = new Map<string, number>();
  const hooks = new Map<string, () => void>();
  const held = new Set<string>();
  const waiting = new Map<string, () => void>();
  const bolt11Hash = new Map<string, string>();
  const proxy = createServer(async (req, res: ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const body = Buffer.concat(chunks);
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(req.headers))
      if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers[k] = v;
    let payHash: string | undefined;
    if (req.method === 'POST' && req.url === '/api/v1/payments') {
      const parsed = (() => {
        try {
          return JSON.parse(body.toString('utf8')) as { out?: boolean; bolt11?: string };
        } catch {
          return {};
        }
      })();
      if (parsed.out === true && typeof parsed.bolt11 === 'string') payHash = bolt11Hash.get(parsed.bolt11);
    }
    const answer = await fetch(`${devnet.url}${req.url}`, {
      method: req.method ?? 'GET',
      headers,
      ...(body.length > 0 ? { body } : {}),
    }).catch(() => null);
    if (payHash && answer?.status === 201) {
      sent.set(payHash, (sent.get(payHash) ?? 0) + 1);
      hooks.get(payHash)?.();
      hooks.delete(payHash);
      if (held.has(payHash)) {
        held.delete(payHash);
        await new Promise<void>((release) => waiting.set(payHash!, release));
      }
    }
    if (!answer) return void res.writeHead(502).end();
    if (res.destroyed) return;
    res.writeHead(answer.status, {
      'content-type': answer.headers.get('content-type') ?? 'application/json',
    });
    res.end(Buffer.from(await answer.arrayBuffer()));
  });
  await new Promise<void>((done) => proxy.listen(0, '127.0.0.1', done));
  const proxyUrl = `http://127.0.0.1:${(proxy.address() as { port: number }).port}`;
  const remember = (invoice: { bolt11: string; paymentHash: string }) => {
    bolt11Hash.set(invoice.bolt11, invoice.paymentHash);
    return invoice;
  };
  return {
    name: 'lnbits',
    adapter: () => new LnbitsBackend({ url: proxyUrl, apiKey: settlementKey, timeoutMs: 1000 }),
    env: { LIGHTNING_BACKEND: 'lnbits', LNBITS_URL: proxyUrl, LNBITS_ADMIN_KEY: settlementKey },
    payFromOutside: async (invoice) => void (await mint.payInvoice(invoice.bolt11, { maxFeeMsat: 0 })),
    foreignInvoice: async (amountMsat, descriptionHash) => {
      if (!descriptionHash)
        return remember(
          await payee.createInvoice({ amountMsat, description: 'elsewhere', expirySeconds: 3600 }),
        );
      // LNbits' create-invoice field for LNURL-pay (the adapter's createInvoice has no use for it).
      const answer = await fetch(`${devnet.url}/api/v1/payments`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': payeeKey },
        body: JSON.stringify({ out: false, amount: amountMsat / 1000, description_hash: descriptionHash }),
      });
      const created = (await answer.json()) as { payment_hash: string; payment_request: string };
      return remember({ bolt11: created.payment_request, paymentHash: created.payment_hash });
    },
    // An invoice the devnet did not issue: "no route" (definite), as LNbits answers.
    failNext: () => undefined,
    paidElsewhere: async (invoice) => void (await mint.payInvoice(invoice.bolt11, { maxFeeMsat: 0 })),
    hold: (hash) => void held.add(hash),
    finish: (hash) => {
      waiting.get(hash)?.();
      waiting.delete(hash);
    },
    sends: (hash) => sent.get(hash) ?? 0,
    onSent: (hash, callback) => void hooks.set(hash, callback),
    close: async () => {
      for (const release of waiting.values()) release();
      waiting.clear();
      proxy.closeAllConnections();
      await new Promise<void>((done) => proxy.close(() => done()));
      await devnet.close();
    },
  };
}

/** An invoice nobody's node can route to (LNbits: not issued by the devnet → "no route"). */
export function unroutableInvoice(amountMsat: number): { bolt11: string; paymentHash: string } {
  return encodeInvoice({
    amountMsat,
    description: 'nowhere',
    expirySeconds: 3600,
    nodeSecretKeyHex: randomBytes(32).toString('hex'),
  });
}
