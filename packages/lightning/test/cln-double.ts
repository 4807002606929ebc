// A test double of Core Lightning's clnrest, enough for ClnBackend: real HTTP on 127.0.0.1,
// `POST /v1/<method>` with named parameters and the `Rune` header; results with 201, RPC errors
// as `{code, message, data?}` with 500, a missing rune with 403 (code 1501), a refused rune with
// 401, an unknown method with 404 (-32601), as clnrest answers them. Methods: invoice,
// listinvoices, pay, listpays, listfunds. Invoices are real BOLT11 from `encodeInvoice` with real
// preimages; `legacyMsat` answers amounts as "1000msat" strings like old versions.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { decodeInvoice, type EncodedInvoice, encodeInvoice } from '../src/bolt11';

type ClnOutcome =
  | { kind: 'succeed'; feeMsat: number }
  /** `pay` fails with this RPC error (and listpays shows a failed payment if `sent`). */
  | { kind: 'error'; code: number; message: string; sent?: boolean }
  /** `pay` does not answer until `resolve`; listpays shows it pending. */
  | { kind: 'hang' }
  /** `pay` answers at once with status "pending". */
  | { kind: 'pending' };

interface DoubleInvoice {
  label: string;
  encoded: EncodedInvoice;
  description: string;
  amountMsat: number;
  status: 'unpaid' | 'paid';
  paidAt: number;
  payIndex: number;
}

interface DoublePay {
  hash: string;
  bolt11: string;
  status: 'pending' | 'complete' | 'failed';
  amountMsat: number;
  sentMsat: number;
  preimage: string;
  createdAt: number;
  index: number;
}

export interface ClnDouble {
  url: string;
  rune: string;
  /** `pay` calls that started a payment (refusals and instant repeats not counted). */
  sends: number;
  requests: { method: string; rune: string | undefined; params: Record<string, unknown> }[];
  /** Channels as listfunds shows them. */
  channels: { our_amount_msat: number; amount_msat: number; state: string }[];
  legacyMsat: boolean;
  hostile: { status: number; body: string; method?: string } | null;
  /** Called when `pay` starts a payment (it is out, its answer not yet given): crash tests. */
  onSend: ((paymentHash: string) => void) | null;
  addPayee(invoice: EncodedInvoice): void;
  script(paymentHash: string, outcome: ClnOutcome): void;
  resolve(paymentHash: string, outcome: { kind: 'succeed'; feeMsat: number } | { kind: 'fail' }): void;
  settle(paymentHash: string): void;
  close(): Promise<void>;
}

export async function startClnDouble(
  options: { nowS?: () => number; tls?: { key: string; cert: string } } = {},
): Promise<ClnDouble> {
  const nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
  const nodeKeyHex = randomBytes(32).toString('hex');
  const rune = randomBytes(48).toString('base64url');
  const invoices = new Map<string, DoubleInvoice>();
  const labels = new Set<string>();
  const payees = new Map<string, EncodedInvoice>();
  const scripts = new Map<string, ClnOutcome>();
  const pays = new Map<string, DoublePay[]>();
  const waiting = new Map<string, { response: ServerResponse; pay: DoublePay }>();
  let payIndex = 0;
  let createdIndex = 0;

  const amount = (msat: number) => (double.legacyMsat ? `${msat}msat` : msat);
  const spendable = () =>
    double.channels
      .filter((c) => c.state === 'CHANNELD_NORMAL')
      .reduce((sum, c) => sum + c.our_amount_msat, 0);
  const spend = (msat: number) => {
    const channel = double.channels.find((c) => c.state === 'CHANNELD_NORMAL');
    if (channel) channel.our_amount_msat -= msat;
  };

  const double: ClnDouble = {
    url: '',
    rune,
    sends: 0,
    requests: [],
    channels: [
      { our_amount_msat: 6_000_000, amount_msat: 10_000_000, state: 'CHANNELD_NORMAL' },
      { our_amount_msat: 4_000_000, amount_msat: 5_000_000, state: 'CHANNELD_NORMAL' },
      { our_amount_msat: 9_000_000, amount_msat: 9_000_000, state: 'ONCHAIN' },
    ],
    legacyMsat: false,
    hostile: null,
    onSend: null,
    addPayee: (invoice) => void payees.set(invoice.paymentHash, invoice),
    script: (hash, outcome) => void scripts.set(hash, outcome),
    resolve: (hash, outcome) => {
      const held = waiting.get(hash);
      if (!held) throw new Error('no payment in flight');
      waiting.delete(hash);
      if (outcome.kind === 'succeed') complete(held.pay, outcome.feeMsat);
      else held.pay.status = 'failed';
      if (!held.response.destroyed) {
        if (held.pay.status === 'complete') ok(held.response, payJson(held.pay));
        else rpcError(held.response, 205, 'Ran out of routes to try after 3 attempts: see `paystatus`');
      }
    },
    settle: (hash) => {
      const inv = invoices.get(hash);
      if (!inv) throw new Error('no such invoice');
      payIndex += 1;
      inv.status = 'paid';
      inv.paidAt = nowS();
      inv.payIndex = payIndex;
    },
    close: async () => {},
  };

  function complete(pay: DoublePay, feeMsat: number) {
    pay.status = 'complete';
    pay.sentMsat = pay.amountMsat + feeMsat;
    pay.preimage = payees.get(pay.hash)?.preimage ?? '';
    spend(pay.sentMsat);
  }
  const payJson = (pay: DoublePay) => ({
    destination: `02${'ab'.repeat(32)}`,
    payment_hash: pay.hash,
    created_at: pay.createdAt,
    parts: 1,
    amount_msat: amount(pay.amountMsat),
    amount_sent_msat: amount(pay.sentMsat),
    payment_preimage: pay.status === 'complete' ? pay.preimage : '0'.repeat(64),
    status: pay.status,
  });

  const ok = (response: ServerResponse, body: unknown) => {
    response.writeHead(201, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  const rpcError = (response: ServerResponse, code: number, message: string, data?: unknown) => {
    response.writeHead(500, { 'content-type': 'application/json' });
    response.end(JSON.stringify({ code, message, ...(data === undefined ? {} : { data }) }));
  };

  function invoiceJson(inv: DoubleInvoice) {
    const expired = inv.status === 'unpaid' && nowS() >= inv.encoded.expiresAtS;
    return {
      label: inv.label,
      bolt11: inv.encoded.bolt11,
      payment_hash: inv.encoded.paymentHash,
      amount_msat: amount(inv.amountMsat),
      status: expired ? 'expired' : inv.status,
      description: inv.description,
      expires_at: inv.encoded.expiresAtS,
      created_index: 1,
      ...(inv.status === 'paid'
        ? {
            pay_index: inv.payIndex,
            amount_received_msat: amount(inv.amountMsat),
            paid_at: inv.paidAt,
            payment_preimage: inv.encoded.preimage,
          }
        : {}),
    };
  }

  function pay(params: Record<string, unknown>, response: ServerResponse) {
    const bolt11 = typeof params.bolt11 === 'string' ? params.bolt11 : '';
    let decoded: ReturnType<typeof decodeInvoice>;
    try {
      decoded = decodeInvoice(bolt11);
    } catch {
      return rpcError(response, -32602, 'bolt11: Invalid bolt11: Bad bech32 string');
    }
    if (typeof params.maxfee !== 'number' && typeof params.maxfee !== 'string')
      return rpcError(response, -32602, 'double: maxfee is required');
    const maxFeeMsat = Number(String(params.maxfee).replace(/msat$/, ''));
    const earlier = pays.get(decoded.paymentHash) ?? [];
    const done = earlier.find((p) => p.status === 'complete');
    // "Once a payment has succeeded, calls to pay with the same bolt11 will succeed immediately."
    if (done) return ok(response, payJson(done));
    if (earlier.some((p) => p.status === 'pending'))
      return rpcError(response, 200, 'Payment of this hash is in progress');
    if (nowS() >= decoded.expiresAtS)
      return rpcError(response, 207, 'Invoice expired', { now: nowS(), expiry: decoded.expiresAtS });
    const outcome = scripts.get(decoded.paymentHash) ?? { kind: 'succeed', feeMsat: 0 };
    if (outcome.kind === 'error' && !outcome.sent) return rpcError(response, outcome.code, outcome.message);
    if (outcome.kind === 'succeed' && outcome.feeMsat > maxFeeMsat)
      return rpcError(
        response,
        206,
        `Fee exceeds our fee budget: ${outcome.feeMsat}msat > ${maxFeeMsat}msat, discarding route`,
      );
    if (outcome.kind === 'succeed' && decoded.amountMsat + outcome.feeMsat > spendable())
      return rpcError(
        response,
        205,
        `We could not find a usable set of paths: insufficient capacity, we have ${spendable()}msat spendable`,
      );
    if (!payees.has(decoded.paymentHash))
      return rpcError(response, 203, 'failed: WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS (reply from remote)');
    double.sends += 1;
    createdIndex += 1;
    const record: DoublePay = {
      hash: decoded.paymentHash,
      bolt11,
      status: 'pending',
      amountMsat: decoded.amountMsat,
      sentMsat: decoded.amountMsat,
      preimage: '',
      createdAt: nowS(),
      index: createdIndex,
    };
    pays.set(record.hash, [...earlier, record]);
    double.onSend?.(record.hash);
    if (outcome.kind === 'hang') return void waiting.set(record.hash, { response, pay: record });
    if (outcome.kind === 'pending') return ok(response, payJson(record));
    if (outcome.kind === 'error') {
      record.status = 'failed';
      return rpcError(response, outcome.code, outcome.message);
    }
    complete(record, outcome.feeMsat);
    return ok(response, payJson(record));
  }

  function route(method: string, params: Record<string, unknown>, response: ServerResponse) {
    switch (method) {
      case 'invoice': {
        const amountMsat = Number(String(params.amount_msat ?? '').replace(/msat$/, ''));
        const label = String(params.label ?? '');
        if (
          !Number.isSafeInteger(amountMsat) ||
          amountMsat <= 0 ||
          !label ||
          typeof params.description !== 'string'
        )
          return rpcError(response, -32602, 'amount_msat|label|description: should be valid');
        if (labels.has(label)) return rpcError(response, 900, `Duplicate label '${label}'`);
        labels.add(label);
        const encoded = encodeInvoice({
          amountMsat,
          description: params.description,
          expirySeconds: Number(params.expiry ?? 604800),
          nodeSecretKeyHex: nodeKeyHex,
          nowS: nowS(),
        });
        invoices.set(encoded.paymentHash, {
          label,
          encoded,
          description: params.description,
          amountMsat,
          status: 'unpaid',
          paidAt: 0,
          payIndex: 0,
        });
        return ok(response, {
          payment_hash: encoded.paymentHash,
          expires_at: encoded.expiresAtS,
          bolt11: encoded.bolt11,
          payment_secret: randomBytes(32).toString('hex'),
          created_index: invoices.size,
        });
      }
      case 'listinvoices': {
        const hash = typeof params.payment_hash === 'string' ? params.payment_hash : undefined;
        if (hash !== undefined && !/^[0-9a-f]{64}$/i.test(hash))
          return rpcError(response, -32602, 'payment_hash: should be a 32 byte hex value');
        const listed = [...invoices.values()].filter(
          (inv) => hash === undefined || inv.encoded.paymentHash === hash,
        );
        return ok(response, { invoices: listed.map(invoiceJson) });
      }
      case 'pay':
        return pay(params, response);
      case 'listpays': {
        const hash = typeof params.payment_hash === 'string' ? params.payment_hash : undefined;
        const listed = [...pays.values()].flat().filter((p) => hash === undefined || p.hash === hash);
        return ok(response, {
          pays: listed.map((p) => ({
            payment_hash: p.hash,
            status: p.status,
            destination: `02${'ab'.repeat(32)}`,
            created_at: p.createdAt,
            created_index: p.index,
            bolt11: p.bolt11,
            ...(p.status === 'complete'
              ? { completed_at: nowS(), preimage: p.preimage, amount_msat: amount(p.amountMsat) }
              : {}),
            amount_sent_msat: amount(p.sentMsat),
          })),
        });
      }
      case 'listfunds':
        return ok(response, {
          outputs: [],
          channels: double.channels.map((c, i) => ({
            peer_id: `03${String(i).padStart(2, '0')}${'cd'.repeat(31)}`,
            connected: true,
            state: c.state,
            our_amount_msat: amount(c.our_amount_msat),
            amount_msat: amount(c.amount_msat),
            funding_txid: 'ef'.repeat(32),
            funding_output: i,
          })),
        });
      default:
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ code: -32601, message: `Unknown command '${method}'` }));
    }
  }

  const handler = (request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const url = new URL(request.url ?? '/', 'http://double');
      const match = /^\/v1\/([a-z0-9_-]+)$/.exec(url.pathname);
      let params: Record<string, unknown> = {};
      try {
        const text = Buffer.concat(chunks).toString('utf8');
        params = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      } catch {
        params = {};
      }
      const header = request.headers.rune;
      const given = Array.isArray(header) ? header[0] : header;
      const method = match?.[1] ?? '';
      double.requests.push({ method, rune: given, params });
      if (double.requests.length > 1000) double.requests.shift();
      if (double.hostile && (double.hostile.method === undefined || double.hostile.method === method)) {
        response.writeHead(double.hostile.status, { 'content-type': 'application/json' });
        response.end(double.hostile.body);
        return;
      }
      if (request.method !== 'POST' || !match) {
        response.writeHead(404, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ code: -32601, message: 'Path not registered' }));
        return;
      }
      if (given === undefined) {
        response.writeHead(403, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ code: 1501, message: 'Not authorized: Missing rune' }));
        return;
      }
      if (given !== rune) {
        response.writeHead(401, { 'content-type': 'application/json' });
        response.end(JSON.stringify({ code: 1502, message: 'Not authorized: Not derived from master' }));
        return;
      }
      route(method, params, response);
    });
  };
  const server = options.tls ? createHttpsServer(options.tls, handler) : createServer(handler);
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  double.url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  double.close = () =>
    new Promise<void>((done) => {
      for (const held of waiting.values()) held.response.destroy();
      waiting.clear();
      server.closeAllConnections();
      server.close(() => done());
    });
  return double;
}
