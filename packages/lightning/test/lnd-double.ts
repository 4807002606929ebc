// A test double of LND's REST API (the grpc-gateway in front of lnd's gRPC services), enough for
// LndBackend: real HTTP on 127.0.0.1, the proto3 JSON shapes LND answers (64-bit integers as
// strings, `bytes` as base64, router Payments with hex hashes and preimages), server-streaming
// calls as newline-delimited `{"result": …}` / `{"error": …}` messages, and gRPC status errors
// (`{code, message, details}`, HTTP status from the gRPC code). Invoices are real BOLT11 from
// `encodeInvoice` with real preimages. Payments are scripted per payment hash.
import { randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { decodeInvoice, type EncodedInvoice, encodeInvoice } from '../src/bolt11';

type LndOutcome =
  | { kind: 'succeed'; feeMsat: number }
  | { kind: 'fail'; reason: string }
  /** Stays IN_FLIGHT until `resolve`. */
  | { kind: 'hang' }
  /** Sends the payment, then drops the connection. */
  | { kind: 'break' }
  /** Refused before sending: another node paid the invoice (AlreadyExists, 6, as LND answers). */
  | { kind: 'already-paid' };

interface DoubleInvoice {
  encoded: EncodedInvoice;
  memo: string;
  valueMsat: number;
  expiry: number;
  addIndex: number;
  state: 'OPEN' | 'SETTLED' | 'CANCELED' | 'ACCEPTED';
  settleDate: number;
  amtPaidMsat: number;
}

interface DoublePayment {
  hash: string;
  bolt11: string;
  valueMsat: number;
  feeMsat: number;
  status: 'IN_FLIGHT' | 'SUCCEEDED' | 'FAILED';
  preimage: string;
  failureReason: string;
  index: number;
  createdS: number;
}

export interface LndDouble {
  url: string;
  macaroonHex: string;
  /** Payments started by POST /v2/router/send (refusals not counted). */
  sends: number;
  /** Every request seen (method, path, macaroon header, parsed body); the last 1000. */
  requests: { method: string; path: string; macaroon: string | undefined; body: unknown }[];
  balanceMsat: number;
  /** When set, every request (or those whose path starts with `path`) gets this raw answer. */
  hostile: { status: number; body: string; path?: string } | null;
  /** Invoices the "network" can route to: their preimages are known to the double. */
  addPayee(invoice: EncodedInvoice): void;
  /** What a send of this payment hash does (default: succeed with 0 fee). */
  script(paymentHash: string, outcome: LndOutcome): void;
  /** Called when a send starts (the payment is out, its answer not yet given): crash tests. */
  onSend: ((paymentHash: string) => void) | null;
  /** Ends a hanging payment. */
  resolve(
    paymentHash: string,
    outcome: { kind: 'succeed'; feeMsat: number } | { kind: 'fail'; reason: string },
  ): void;
  /** Pays one of the node's own invoices (as a payer elsewhere would). */
  settle(paymentHash: string): void;
  close(): Promise<void>;
}

const GRPC_HTTP: Record<number, number> = { 2: 500, 3: 400, 5: 404, 6: 409, 7: 403, 16: 401 };

export async function startLndDouble(
  options: { nowS?: () => number; tls?: { key: string; cert: string } } = {},
): Promise<LndDouble> {
  const nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
  const nodeKeyHex = randomBytes(32).toString('hex');
  const macaroonHex = randomBytes(64).toString('hex');
  const invoices = new Map<string, DoubleInvoice>();
  const payees = new Map<string, EncodedInvoice>();
  const scripts = new Map<string, LndOutcome>();
  const payments = new Map<string, DoublePayment>();
  const waiting = new Map<string, ServerResponse>();
  let addIndex = 0;
  let paymentIndex = 0;

  const b64 = (hex: string) => Buffer.from(hex, 'hex').toString('base64');
  const invoiceJson = (inv: DoubleInvoice) => ({
    memo: inv.memo,
    r_preimage: b64(inv.encoded.preimage),
    r_hash: b64(inv.encoded.paymentHash),
    value: String(Math.floor(inv.valueMsat / 1000)),
    value_msat: String(inv.valueMsat),
    settled: inv.state === 'SETTLED',
    creation_date: String(inv.encoded.createdAtS),
    settle_date: String(inv.settleDate),
    payment_request: inv.encoded.bolt11,
    description_hash: '',
    expiry: String(inv.expiry),
    fallback_addr: '',
    cltv_expiry: '18',
    route_hints: [],
    private: false,
    add_index: String(inv.addIndex),
    settle_index: inv.state === 'SETTLED' ? String(inv.addIndex) : '0',
    amt_paid: String(inv.amtPaidMsat),
    amt_paid_sat: String(Math.floor(inv.amtPaidMsat / 1000)),
    amt_paid_msat: String(inv.amtPaidMsat),
    state: inv.state,
    htlcs: [],
    features: {},
    is_keysend: false,
    payment_addr: b64(randomBytes(32).toString('hex')),
    is_amp: false,
    amp_invoice_state: {},
  });
  const paymentJson = (p: DoublePayment) => ({
    payment_hash: p.hash,
    value: String(Math.floor(p.valueMsat / 1000)),
    creation_date: String(p.createdS),
    fee: String(Math.floor(p.feeMsat / 1000)),
    payment_preimage: p.status === 'SUCCEEDED' ? p.preimage : '0'.repeat(64),
    value_sat: String(Math.floor(p.valueMsat / 1000)),
    value_msat: String(p.valueMsat),
    payment_request: p.bolt11,
    status: p.status,
    fee_sat: String(Math.floor(p.feeMsat / 1000)),
    fee_msat: String(p.feeMsat),
    creation_time_ns: String(p.createdS * 1e9),
    htlcs: [],
    payment_index: String(p.index),
    failure_reason: p.failureReason,
  });

  const double: LndDouble = {
    url: '',
    macaroonHex,
    sends: 0,
    requests: [],
    balanceMsat: 10_000_000,
    hostile: null,
    onSend: null,
    addPayee: (invoice) => void payees.set(invoice.paymentHash, invoice),
    script: (hash, outcome) => void scripts.set(hash, outcome),
    resolve: (hash, outcome) => {
      const p = payments.get(hash);
      if (p?.status !== 'IN_FLIGHT') throw new Error('no payment in flight');
      finish(p, outcome);
      const response = waiting.get(hash);
      waiting.delete(hash);
      if (response && !response.destroyed) response.end(`${JSON.stringify({ result: paymentJson(p) })}\n`);
    },
    settle: (hash) => {
      const inv = invoices.get(hash);
      if (!inv) throw new Error('no such invoice');
      inv.state = 'SETTLED';
      inv.settleDate = nowS();
      inv.amtPaidMsat = inv.valueMsat;
      double.balanceMsat += inv.valueMsat;
    },
    close: async () => {},
  };

  function finish(
    p: DoublePayment,
    outcome: { kind: 'succeed'; feeMsat: number } | { kind: 'fail'; reason: string },
  ) {
    if (outcome.kind === 'succeed') {
      p.status = 'SUCCEEDED';
      p.feeMsat = outcome.feeMsat;
      p.preimage = payees.get(p.hash)?.preimage ?? '';
      double.balanceMsat -= p.valueMsat + p.feeMsat;
    } else {
      p.status = 'FAILED';
      p.failureReason = outcome.reason;
    }
  }

  const json = (response: ServerResponse, status: number, body: unknown) => {
    response.writeHead(status, { 'content-type': 'application/json' });
    response.end(JSON.stringify(body));
  };
  const grpcError = (response: ServerResponse, code: number, message: string) =>
    json(response, GRPC_HTTP[code] ?? 500, { code, message, details: [] });
  /** A server-streaming call that fails before its first message. */
  const streamError = (response: ServerResponse, code: number, message: string) => {
    response.writeHead(GRPC_HTTP[code] ?? 500, { 'content-type': 'application/json' });
    response.end(`${JSON.stringify({ error: { code, message, details: [] } })}\n`);
  };

  /** grpc-gateway's `runtime.Bytes`: padded standard base64, then padded URL-safe base64. */
  const gatewayBytes = (text: string): Buffer | null => {
    if (text.length % 4 !== 0) return null;
    if (/^[A-Za-z0-9+/]*={0,2}$/.test(text)) return Buffer.from(text, 'base64');
    if (/^[A-Za-z0-9_-]*={0,2}$/.test(text)) return Buffer.from(text, 'base64url');
    return null;
  };

  function send(body: Record<string, unknown>, response: ServerResponse) {
    const bolt11 = typeof body.payment_request === 'string' ? body.payment_request : '';
    let decoded: ReturnType<typeof decodeInvoice>;
    try {
      decoded = decodeInvoice(bolt11);
    } catch {
      return streamError(response, 2, 'unable to decode payment request');
    }
    if (body.no_inflight_updates !== true)
      return streamError(response, 3, 'double: only no_inflight_updates');
    if (typeof body.timeout_seconds !== 'number' || body.timeout_seconds <= 0)
      return streamError(response, 3, 'timeout_seconds must be specified');
    const feeLimitMsat = Number(body.fee_limit_msat ?? 0);
    if (nowS() >= decoded.expiresAtS)
      return streamError(
        response,
        2,
        `invoice expired. Valid until ${new Date(decoded.expiresAtS * 1000).toISOString()}`,
      );
    if (scripts.get(decoded.paymentHash)?.kind === 'already-paid')
      return streamError(response, 6, 'invoice is already paid');
    const existing = payments.get(decoded.paymentHash);
    if (existing?.status === 'SUCCEEDED') return streamError(response, 6, 'invoice is already paid');
    if (existing?.status === 'IN_FLIGHT') return streamError(response, 6, 'payment is in transition');
    double.sends += 1;
    paymentIndex += 1;
    const p: DoublePayment = {
      hash: decoded.paymentHash,
      bolt11,
      valueMsat: decoded.amountMsat,
      feeMsat: 0,
      status: 'IN_FLIGHT',
      preimage: '',
      failureReason: 'FAILURE_REASON_NONE',
      index: paymentIndex,
      createdS: nowS(),
    };
    payments.set(p.hash, p);
    // 'already-paid' was refused above, before the send.
    const outcome = (scripts.get(p.hash) ?? { kind: 'succeed', feeMsat: 0 }) as Exclude<
      LndOutcome,
      { kind: 'already-paid' }
    >;
    response.writeHead(200, { 'content-type': 'application/json' });
    response.flushHeaders();
    double.onSend?.(p.hash);
    if (outcome.kind === 'hang') {
      waiting.set(p.hash, response);
      return;
    }
    if (outcome.kind === 'break') {
      finish(p, { kind: 'succeed', feeMsat: 0 });
      response.socket?.destroy();
      return;
    }
    if (outcome.kind === 'fail') finish(p, outcome);
    else if (!payees.has(p.hash))
      finish(p, { kind: 'fail', reason: 'FAILURE_REASON_INCORRECT_PAYMENT_DETAILS' });
    else if (outcome.feeMsat > feeLimitMsat) finish(p, { kind: 'fail', reason: 'FAILURE_REASON_NO_ROUTE' });
    else if (p.valueMsat + outcome.feeMsat > double.balanceMsat)
      finish(p, { kind: 'fail', reason: 'FAILURE_REASON_INSUFFICIENT_BALANCE' });
    else finish(p, outcome);
    response.end(`${JSON.stringify({ result: paymentJson(p) })}\n`);
  }

  function route(method: string, path: string, body: Record<string, unknown>, response: ServerResponse) {
    if (method === 'POST' && path === '/v1/invoices') {
      const valueMsat = Number(body.value_msat ?? 0) || Number(body.value ?? 0) * 1000;
      const expiry = Number(body.expiry ?? 0) || 86400;
      if (!Number.isSafeInteger(valueMsat) || valueMsat <= 0)
        return grpcError(response, 2, 'amount required');
      const memo = typeof body.memo === 'string' ? body.memo : '';
      const encoded = encodeInvoice({
        amountMsat: valueMsat,
        description: memo,
        expirySeconds: expiry,
        nodeSecretKeyHex: nodeKeyHex,
        nowS: nowS(),
      });
      addIndex += 1;
      invoices.set(encoded.paymentHash, {
        encoded,
        memo,
        valueMsat,
        expiry,
        addIndex,
        state: 'OPEN',
        settleDate: 0,
        amtPaidMsat: 0,
      });
      return json(response, 200, {
        r_hash: b64(encoded.paymentHash),
        payment_request: encoded.bolt11,
        add_index: String(addIndex),
        payment_addr: b64(randomBytes(32).toString('hex')),
      });
    }
    const invoiceMatch = /^\/v1\/invoice\/([^/]+)$/.exec(path);
    if (method === 'GET' && invoiceMatch) {
      const hash = decodeURIComponent(invoiceMatch[1] ?? '');
      if (!/^[0-9a-f]{64}$/i.test(hash)) return grpcError(response, 2, 'encoding/hex: invalid byte');
      const inv = invoices.get(hash.toLowerCase());
      if (!inv) return grpcError(response, 5, 'unable to locate invoice');
      if (inv.state === 'OPEN' && nowS() >= inv.encoded.createdAtS + inv.expiry) inv.state = 'CANCELED';
      return json(response, 200, invoiceJson(inv));
    }
    if (method === 'POST' && path === '/v2/router/send') return send(body, response);
    const trackMatch = /^\/v2\/router\/track\/([^/]+)$/.exec(path);
    if (method === 'GET' && trackMatch) {
      const bytes = gatewayBytes(decodeURIComponent(trackMatch[1] ?? ''));
      if (!bytes)
        return grpcError(response, 3, 'type mismatch, parameter: payment_hash, error: illegal base64 data');
      if (bytes.length !== 32)
        return streamError(response, 2, `invalid hash length of ${bytes.length}, want 32`);
      const p = payments.get(bytes.toString('hex'));
      if (!p) return streamError(response, 5, "payment isn't initiated");
      response.writeHead(200, { 'content-type': 'application/json' });
      response.write(`${JSON.stringify({ result: paymentJson(p) })}\n`);
      // A terminal payment ends the stream; one in flight stays open for updates.
      if (p.status !== 'IN_FLIGHT') response.end();
      return;
    }
    if (method === 'GET' && path === '/v1/balance/channels') {
      const amount = (msat: number) => ({ sat: String(Math.floor(msat / 1000)), msat: String(msat) });
      return json(response, 200, {
        balance: String(Math.floor(double.balanceMsat / 1000)),
        pending_open_balance: '0',
        local_balance: amount(double.balanceMsat),
        remote_balance: amount(5_000_000),
        unsettled_local_balance: amount(0),
        unsettled_remote_balance: amount(0),
        pending_open_local_balance: amount(0),
        pending_open_remote_balance: amount(0),
      });
    }
    return json(response, 404, { code: 5, message: 'Not Found', details: [] });
  }

  const handler = (request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const url = new URL(request.url ?? '/', 'http://double');
      let body: Record<string, unknown> = {};
      try {
        const text = Buffer.concat(chunks).toString('utf8');
        body = text ? (JSON.parse(text) as Record<string, unknown>) : {};
      } catch {
        return grpcError(response, 3, 'invalid character in JSON');
      }
      const macaroon = request.headers['grpc-metadata-macaroon'];
      const header = Array.isArray(macaroon) ? macaroon[0] : macaroon;
      double.requests.push({ method: request.method ?? '', path: url.pathname, macaroon: header, body });
      if (double.requests.length > 1000) double.requests.shift();
      if (double.hostile && url.pathname.startsWith(double.hostile.path ?? '/')) {
        response.writeHead(double.hostile.status, { 'content-type': 'application/json' });
        response.end(double.hostile.body);
        return;
      }
      if (header === undefined) return grpcError(response, 2, 'expected 1 macaroon, got 0');
      if (header !== macaroonHex)
        return grpcError(response, 2, 'verification failed: signature mismatch after caveat verification');
      route(request.method ?? 'GET', url.pathname, body, response);
    });
  };
  const server = options.tls ? createHttpsServer(options.tls, handler) : createServer(handler);
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  double.url = `${options.tls ? 'https' : 'http'}://127.0.0.1:${port}`;
  double.close = () =>
    new Promise<void>((done) => {
      for (const response of waiting.values()) response.destroy();
      waiting.clear();
      server.closeAllConnections();
      server.close(() => done());
    });
  return double;
}
