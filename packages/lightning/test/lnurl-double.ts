// Test double of a Lightning-address server (LUD-16 over LNURL-pay, LUD-06), as a wallet provider
// serves it: `GET /.well-known/lnurlp/<user>` answers the pay request (callback, minSendable and
// maxSendable in msat, metadata as a JSON string) and `GET <callback>?amount=<msat>` answers
// `{pr, routes: []}` with an invoice whose `h` tag is sha256 of the metadata text, or LUD-06's
// `{"status":"ERROR","reason":...}`. The honest invoice comes from `mint` (the wallet behind the
// address); the other modes are a lying or broken server.
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { encodeInvoice } from '../src/bolt11';

export type LnurlMode =
  | 'honest'
  | 'wrong-amount'
  | 'wrong-hash'
  | 'expired'
  | 'refuse'
  | 'http-500'
  | 'not-pay-request'
  | 'bad-invoice'
  | 'oversized';

export interface LnurlDouble {
  /** `user@127.0.0.1:<port>` (served over http: callers pass allowHttp). */
  address(user: string): string;
  mode: LnurlMode;
  /** Amounts (msat) asked of the callback, in order. */
  readonly asked: number[];
  close(): Promise<void>;
}

export interface LnurlDoubleOptions {
  /** The wallet behind the address: an invoice for exactly this amount committing to this hash. */
  mint(amountMsat: number, descriptionHashHex: string): Promise<string>;
  minSendableMsat?: number;
  maxSendableMsat?: number;
}

const sha256 = (text: string) => createHash('sha256').update(text, 'utf8').digest('hex');
const strangerInvoice = (amountMsat: number, descriptionHash: string, expirySeconds = 3600) =>
  encodeInvoice({
    amountMsat,
    description: '',
    descriptionHash,
    expirySeconds,
    nodeSecretKeyHex: randomBytes(32).toString('hex'),
  }).bolt11;

export async function startLnurlDouble(options: LnurlDoubleOptions): Promise<LnurlDouble> {
  let host = '';
  const asked: number[] = [];
  const metadataOf = (user: string) =>
    JSON.stringify([
      ['text/plain', `Payment to ${user}`],
      ['text/identifier', `${user}@${host}`],
    ]);
  const double: LnurlDouble = {
    address: (user) => `${user}@${host}`,
    mode: 'honest',
    asked,
    close: () => new Promise<void>((done) => server.close(() => done())),
  };
  const server: Server = createServer((req, res) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(typeof body === 'string' ? body : JSON.stringify(body));
    };
    void (async () => {
      const url = new URL(req.url ?? '/', `http://${host}`);
      const payRequest = /^\/\.well-known\/lnurlp\/([a-z0-9._+-]+)$/.exec(url.pathname);
      const callback = /^\/lnurlp\/callback\/([a-z0-9._+-]+)$/.exec(url.pathname);
      if (double.mode === 'http-500') return send(500, 'Internal Server Error');
      if (double.mode === 'oversized') return send(200, { pad: 'x'.repeat(100_000) });
      if (payRequest) {
        const user = payRequest[1]!;
        if (double.mode === 'not-pay-request') return send(200, { tag: 'withdrawRequest' });
        return send(200, {
          tag: 'payRequest',
          callback: `http://${host}/lnurlp/callback/${user}`,
          minSendable: options.minSendableMsat ?? 1000,
          maxSendable: options.maxSendableMsat ?? 100_000_000_000,
          metadata: metadataOf(user),
          commentAllowed: 0,
        });
      }
      if (callback) {
        const user = callback[1]!;
        const amountMsat = Number(url.searchParams.get('amount'));
        asked.push(amountMsat);
        const hash = sha256(metadataOf(user));
        if (double.mode === 'refuse') return send(200, { status: 'ERROR', reason: 'wallet is closed' });
        if (double.mode === 'bad-invoice') return send(200, { pr: 'lnbcrt1notaninvoice', routes: [] });
        if (double.mode === 'wrong-amount')
          return send(200, { pr: strangerInvoice(amountMsat + 1000, hash), routes: [] });
        if (double.mode === 'wrong-hash')
          return send(200, { pr: strangerInvoice(amountMsat, sha256('other metadata')), routes: [] });
        if (double.mode === 'expired')
          return send(200, { pr: strangerInvoice(amountMsat, hash, 1), routes: [] });
        return send(200, { pr: await options.mint(amountMsat, hash), routes: [] });
      }
      send(404, { status: 'ERROR', reason: 'not found' });
    })().catch(() => send(500, { status: 'ERROR', reason: 'mint failed' }));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  host = `127.0.0.1:${(server.address() as { port: number }).port}`;
  return double;
}
