// The LNbits adapter (packages/lightning/src/lnbits.ts) against a running devnet Lightning service
// over real HTTP on 127.0.0.1: invoices in sat units (decoded and checked), payments between two
// wallets with a preimage that hashes to the payment hash, balances in msat, idempotent pay,
// refusals with their codes and `definite` flags, recovery after a "crash" (a new adapter), a
// service that is down, and hostile requests answered in LNbits' `{detail}` shape.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  decodeInvoice,
  LightningPaymentError,
  LnbitsBackend,
  LnbitsError,
  type PaymentFailureCode,
  sha256Hex,
} from '@fed-ai/lightning';
import { FedAiError } from '@fed-ai/protocol';
import { devnetConfigSchema } from '../src/config';
import { type RunningDevnet, startLightningDevnet } from '../src/server';
import { startHostileLnbits } from './hostile-lnbits-double';

const ADMIN = 'devnet-admin-key-for-tests-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'fedai-lnbits-'));
let devnet: RunningDevnet;

interface WalletKeys {
  id: string;
  adminkey: string;
  inkey: string;
}

async function call(
  method: 'GET' | 'POST',
  path: string,
  options: { key?: string; adminKey?: string; body?: string; contentType?: string } = {},
) {
  const response = await fetch(`${devnet.url}${path}`, {
    method,
    headers: {
      ...(options.key ? { 'x-api-key': options.key } : {}),
      ...(options.adminKey ? { 'x-admin-key': options.adminKey } : {}),
      ...(options.body === undefined ? {} : { 'content-type': options.contentType ?? 'application/json' }),
    },
    ...(options.body === undefined ? {} : { body: options.body }),
  });
  const text = await response.text();
  return { status: response.status, body: JSON.parse(text) as Record<string, unknown> };
}

async function wallet(name: string, mint = false): Promise<WalletKeys> {
  const answer = await call('POST', '/devnet/wallets', {
    adminKey: ADMIN,
    body: JSON.stringify({ name, mint }),
  });
  assert.equal(answer.status, 201, JSON.stringify(answer.body));
  return answer.body as unknown as WalletKeys;
}

const adapter = (key: string) => new LnbitsBackend({ url: devnet.url, apiKey: key, timeoutMs: 3000 });

const paymentError =
  (code: PaymentFailureCode, definite: boolean) =>
  (error: unknown): boolean => {
    assert.ok(error instanceof LightningPaymentError, String(error));
    assert.equal(error.code, code, error.message);
    assert.equal(error.definite, definite, error.message);
    return true;
  };

let mint: WalletKeys;

before(async () => {
  devnet = await startLightningDevnet(
    devnetConfigSchema.parse({ LIGHTNING_DEVNET_PORT: '0', DATA_DIR: dir, DEVNET_ADMIN_KEY: ADMIN }),
  );
  mint = await wallet('mint', true);
});

after(async () => {
  await devnet.close();
  rmSync(dir, { recursive: true, force: true });
});

/** A wallet holding `msat`, paid from the mint. */
async function funded(name: string, msat: number): Promise<{ keys: WalletKeys; ln: LnbitsBackend }> {
  const keys = await wallet(name);
  const ln = adapter(keys.adminkey);
  if (msat > 0) {
    const invoice = await ln.createInvoice({ amountMsat: msat, description: 'funding', expirySeconds: 600 });
    await adapter(mint.adminkey).payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
  }
  assert.equal(await ln.balanceMsat(), msat);
  return { keys, ln };
}

test('invoices are in sat: the BOLT11 decodes to the amount, hash and expiry asked for; msat fractions are refused', async () => {
  const { keys } = await funded('alice', 0);
  const ln = adapter(keys.inkey);
  const invoice = await ln.createInvoice({ amountMsat: 21_000, description: 'coffee', expirySeconds: 900 });
  const decoded = decodeInvoice(invoice.bolt11);
  assert.equal(decoded.amountMsat, 21_000);
  assert.equal(invoice.amountMsat, 21_000);
  assert.equal(decoded.paymentHash, invoice.paymentHash);
  assert.equal(decoded.description, 'coffee');
  assert.equal(invoice.expiresAtS - invoice.createdAtS, 900);
  assert.equal(decoded.expiresAtS, invoice.expiresAtS);
  assert.equal(invoice.state, 'open');
  const looked = await ln.lookupInvoice(invoice.paymentHash);
  assert.equal(looked?.state, 'open');
  assert.equal(looked?.preimage, undefined);
  await assert.rejects(
    ln.createInvoice({ amountMsat: 21_500, description: '', expirySeconds: 60 }),
    (error: unknown) => error instanceof FedAiError && /whole sat/.test(error.message),
  );
  // The wire: amount 21 (sat) gave a 21 000 msat invoice; a fraction of a sat on the wire is refused.
  const raw = await call('POST', '/api/v1/payments', {
    key: keys.inkey,
    body: JSON.stringify({ out: false, amount: 1.5, memo: 'x' }),
  });
  assert.equal(raw.status, 400);
  assert.match(String(raw.body.detail), /whole number of sat/);
});

test('pays between two wallets: preimage hashes to the hash, balances exact in msat, paying twice is ALREADY_PAID with no second debit', async () => {
  const payer = await funded('payer', 50_000);
  const payee = await funded('payee', 0);
  const invoice = await payee.ln.createInvoice({ amountMsat: 12_000, description: 'x', expirySeconds: 600 });
  const paid = await payer.ln.payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
  assert.equal(paid.paymentHash, invoice.paymentHash);
  assert.equal(sha256Hex(paid.preimage), invoice.paymentHash);
  assert.equal(paid.amountMsat, 12_000);
  assert.equal(paid.feeMsat, 0);
  assert.equal(await payer.ln.balanceMsat(), 38_000);
  assert.equal(await payee.ln.balanceMsat(), 12_000);
  const settled = await payee.ln.lookupInvoice(invoice.paymentHash);
  assert.equal(settled?.state, 'settled');
  assert.equal(settled?.preimage, paid.preimage);
  // The same wallet again: the adapter finds its payment and answers it (no second send).
  const again = await payer.ln.payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
  assert.deepEqual(again, paid);
  // Another wallet: LNbits refuses an invoice already paid.
  const other = await funded('other', 20_000);
  await assert.rejects(
    other.ln.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
    paymentError('ALREADY_PAID', true),
  );
  // The raw API refuses the payer's second send too.
  const raw = await call('POST', '/api/v1/payments', {
    key: payer.keys.adminkey,
    body: JSON.stringify({ out: true, bolt11: invoice.bolt11 }),
  });
  assert.equal(raw.status, 520);
  assert.match(String(raw.body.detail), /already paid/);
  assert.equal(await payer.ln.balanceMsat(), 38_000);
  assert.equal(await other.ln.balanceMsat(), 20_000);
  assert.equal(await payee.ln.balanceMsat(), 12_000);
  // Paying your own wallet's invoice is allowed (as LNbits allows it): the balance is unchanged.
  const own = await payer.ln.createInvoice({ amountMsat: 1000, description: 'self', expirySeconds: 60 });
  await payer.ln.payInvoice(own.bolt11, { maxFeeMsat: 0 });
  assert.equal(await payer.ln.balanceMsat(), 38_000);
  // No money was created or lost apart from the mint's debt.
  assert.equal(await devnet.store.totalMsat(), 0);
});

test('refusals: insufficient balance, expired, a foreign invoice, an invoice key cannot pay', async () => {
  const payer = await funded('poor', 1000);
  const payee = await funded('rich', 0);
  const big = await payee.ln.createInvoice({ amountMsat: 2000, description: '', expirySeconds: 600 });
  await assert.rejects(
    payer.ln.payInvoice(big.bolt11, { maxFeeMsat: 0 }),
    paymentError('INSUFFICIENT_BALANCE', true),
  );
  assert.equal(await payer.ln.balanceMsat(), 1000);
  assert.equal((await payer.ln.lookupPayment(big.paymentHash)).state, 'unknown');
  // Expired: an invoice of one second, a little later.
  const short = await payee.ln.createInvoice({ amountMsat: 1000, description: '', expirySeconds: 1 });
  await new Promise((done) => setTimeout(done, 1100));
  await assert.rejects(
    payer.ln.payInvoice(short.bolt11, { maxFeeMsat: 0 }),
    paymentError('INVOICE_EXPIRED', true),
  );
  assert.equal((await payee.ln.lookupInvoice(short.paymentHash))?.state, 'expired');
  // An invoice this service did not issue (another devnet node key): no route.
  const { encodeInvoice } = await import('@fed-ai/lightning');
  const foreign = encodeInvoice({
    amountMsat: 1000,
    description: 'elsewhere',
    expirySeconds: 600,
    nodeSecretKeyHex: '11'.repeat(32),
  });
  await assert.rejects(
    payer.ln.payInvoice(foreign.bolt11, { maxFeeMsat: 0 }),
    paymentError('NO_ROUTE', true),
  );
  await assert.rejects(
    payer.ln.payInvoice('lnbcrt1nonsense', { maxFeeMsat: 0 }),
    paymentError('INVOICE_NOT_FOUND', true),
  );
  // The invoice key may create and read, never pay.
  await assert.rejects(
    adapter(payer.keys.inkey).payInvoice(big.bolt11, { maxFeeMsat: 0 }),
    paymentError('BACKEND_ERROR', true),
  );
  assert.equal(await payer.ln.balanceMsat(), 1000);
});

test('racing payments of one invoice: exactly one debit; the same wallet racing itself gets its one payment twice', async () => {
  const payee = await funded('race-payee', 0);
  const one = await funded('race-one', 5000);
  const two = await funded('race-two', 5000);
  const contested = await payee.ln.createInvoice({ amountMsat: 3000, description: '', expirySeconds: 600 });
  const results = await Promise.allSettled([
    one.ln.payInvoice(contested.bolt11, { maxFeeMsat: 0 }),
    two.ln.payInvoice(contested.bolt11, { maxFeeMsat: 0 }),
  ]);
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  const lost = results.find((r) => r.status === 'rejected');
  assert.ok(lost && paymentError('ALREADY_PAID', true)(lost.reason));
  assert.equal((await one.ln.balanceMsat()) + (await two.ln.balanceMsat()), 7000);
  assert.equal(await payee.ln.balanceMsat(), 3000);
  const mine = await payee.ln.createInvoice({ amountMsat: 1000, description: '', expirySeconds: 600 });
  // One wallet racing itself (two adapters): one debit, and both calls answer that payment.
  const twins = await Promise.all([
    one.ln.payInvoice(mine.bolt11, { maxFeeMsat: 0 }),
    adapter(one.keys.adminkey).payInvoice(mine.bolt11, { maxFeeMsat: 0 }),
  ]);
  assert.equal(twins[0].preimage, twins[1].preimage);
  assert.equal(await payee.ln.balanceMsat(), 4000);
  assert.equal(await devnet.store.totalMsat(), 0);
});

test('after a "crash" a new adapter finds the payment by hash and does not pay again', async () => {
  const payer = await funded('crasher', 10_000);
  const payee = await funded('shop', 0);
  const invoice = await payee.ln.createInvoice({ amountMsat: 4000, description: '', expirySeconds: 600 });
  await payer.ln.payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
  const fresh = adapter(payer.keys.adminkey);
  const status = await fresh.lookupPayment(invoice.paymentHash);
  assert.equal(status.state, 'succeeded');
  if (status.state === 'succeeded') {
    assert.equal(status.amountMsat, 4000);
    assert.equal(sha256Hex(status.preimage), invoice.paymentHash);
  }
  const again = await fresh.payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
  assert.equal(again.amountMsat, 4000);
  assert.equal(await fresh.balanceMsat(), 6000);
  // The payee's key sees its invoice, not an outgoing payment.
  assert.equal((await payee.ln.lookupPayment(invoice.paymentHash)).state, 'unknown');
});

test('onSettled hears of an invoice this adapter created once it is paid', async () => {
  const payer = await funded('listener-payer', 5000);
  const payee = await funded('listener', 0);
  const ln = new LnbitsBackend({ url: devnet.url, apiKey: payee.keys.inkey, pollIntervalMs: 50 });
  const invoice = await ln.createInvoice({ amountMsat: 3000, description: '', expirySeconds: 600 });
  const heard = new Promise<string>((done) => {
    const stop = ln.onSettled((settled) => {
      stop();
      done(settled.paymentHash);
    });
  });
  await payer.ln.payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
  assert.equal(await heard, invoice.paymentHash);
});

test('a service that is down: not-definite payment errors, lookups throw', async () => {
  const port = await new Promise<number>((done) => {
    const server = createServer();
    server.listen(0, '127.0.0.1', () => {
      const address = server.address() as { port: number };
      server.close(() => done(address.port));
    });
  });
  const down = new LnbitsBackend({ url: `http://127.0.0.1:${port}`, apiKey: mint.adminkey, timeoutMs: 1000 });
  const payee = await funded('unreached', 0);
  const invoice = await payee.ln.createInvoice({ amountMsat: 1000, description: '', expirySeconds: 600 });
  await assert.rejects(
    down.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
    paymentError('BACKEND_ERROR', false),
  );
  await assert.rejects(down.lookupPayment(invoice.paymentHash), LnbitsError);
  await assert.rejects(down.balanceMsat(), (error: unknown) => {
    assert.ok(error instanceof LnbitsError);
    assert.equal(error.status, 0);
    assert.ok(!error.message.includes(mint.adminkey), 'the key never appears in errors');
    return true;
  });
});

test('hostile requests: bad keys, oversized and ill-typed bodies, all answered as {detail}', async () => {
  const { keys } = await funded('target', 0);
  const expectDetail = (answer: { status: number; body: Record<string, unknown> }, status: number) => {
    assert.equal(answer.status, status, JSON.stringify(answer.body));
    assert.equal(typeof answer.body.detail, 'string', JSON.stringify(answer.body));
    assert.deepEqual(Object.keys(answer.body), ['detail']);
  };
  expectDetail(await call('GET', '/api/v1/wallet'), 401);
  expectDetail(await call('GET', '/api/v1/wallet', { key: 'nope' }), 401);
  expectDetail(await call('GET', '/api/v1/wallet', { key: 'k'.repeat(5000) }), 401);
  const create = (body: string, key = keys.inkey) => call('POST', '/api/v1/payments', { key, body });
  expectDetail(await create(JSON.stringify({ out: false, amount: 10 }), 'wrong'), 401);
  expectDetail(await create(JSON.stringify({ out: true, bolt11: 'lnbcrt1x'.repeat(3) })), 403);
  expectDetail(await create(JSON.stringify({ out: false, amount: '10' })), 400);
  expectDetail(await create(JSON.stringify({ out: false, amount: -1 })), 400);
  expectDetail(await create(JSON.stringify({ out: false, amount: 1e12 })), 400);
  expectDetail(await create(JSON.stringify({ out: false, amount: 1, memo: 42 })), 400);
  expectDetail(await create(JSON.stringify({ out: false, amount: 1, expiry: 0 })), 400);
  expectDetail(await create(JSON.stringify({ out: 'yes', amount: 1 })), 400);
  expectDetail(await create('[1,2]'), 400);
  expectDetail(await create('{"out":false,'), 400);
  expectDetail(await create(JSON.stringify({ out: false, amount: 1, memo: 'x'.repeat(40_000) })), 413);
  expectDetail(
    await call('POST', '/api/v1/payments', { key: keys.inkey, body: 'x', contentType: 'text/plain' }),
    400,
  );
  expectDetail(await create(JSON.stringify({ out: true }), keys.adminkey), 400);
  expectDetail(
    await create(JSON.stringify({ out: true, bolt11: 'not an invoice at all' }), keys.adminkey),
    400,
  );
  expectDetail(await call('GET', `/api/v1/payments/${'ab'.repeat(32)}`, { key: keys.inkey }), 404);
  expectDetail(await call('GET', '/api/v1/payments/../../etc', { key: keys.inkey }), 404);
  expectDetail(await call('GET', '/nowhere'), 404);
  // The admin route: its own key, and nothing else.
  expectDetail(await call('POST', '/devnet/wallets', { body: JSON.stringify({ name: 'x' }) }), 401);
  expectDetail(
    await call('POST', '/devnet/wallets', { adminKey: keys.adminkey, body: JSON.stringify({ name: 'x' }) }),
    403,
  );
  expectDetail(
    await call('POST', '/devnet/wallets', { adminKey: ADMIN, body: JSON.stringify({ name: 7 }) }),
    400,
  );
  // One mint wallet only.
  expectDetail(
    await call('POST', '/devnet/wallets', {
      adminKey: ADMIN,
      body: JSON.stringify({ name: 'mint2', mint: true }),
    }),
    409,
  );
  // Without a key, a payment hash shows only whether it is paid.
  const invoice = await adapter(keys.inkey).createInvoice({
    amountMsat: 1000,
    description: '',
    expirySeconds: 60,
  });
  const anonymous = await call('GET', `/api/v1/payments/${invoice.paymentHash}`);
  assert.deepEqual(anonymous.body, { paid: false, status: 'pending', preimage: null });
});

test('a lying or hostile LNbits: wrong preimage, wrong amount, oversized and ill-typed answers are refused', async () => {
  const { encodeInvoice } = await import('@fed-ai/lightning');
  const real = encodeInvoice({
    amountMsat: 5000,
    description: 'x',
    expirySeconds: 600,
    nodeSecretKeyHex: '33'.repeat(32),
  });
  let script: (method: string, url: string) => { status: number; body: string } = () => ({
    status: 500,
    body: '',
  });
  const hostile = await startHostileLnbits((request) => script(request.method ?? '', request.url ?? ''));
  try {
    const ln = new LnbitsBackend({ url: hostile.url, apiKey: 'k'.repeat(32), timeoutMs: 2000 });
    // An invoice of another amount than asked for.
    script = () => ({
      status: 201,
      body: JSON.stringify({ payment_hash: real.paymentHash, payment_request: real.bolt11 }),
    });
    await assert.rejects(
      ln.createInvoice({ amountMsat: 6000, description: 'x', expirySeconds: 600 }),
      /5000 msat, not 6000/,
    );
    // A paid payment whose preimage does not hash to the payment hash.
    const lie = {
      paid: true,
      status: 'success',
      preimage: '00'.repeat(32),
      details: { amount: -5000, fee: 0, bolt11: real.bolt11 },
    };
    script = () => ({ status: 200, body: JSON.stringify(lie) });
    await assert.rejects(ln.lookupPayment(real.paymentHash), /does not hash/);
    await assert.rejects(ln.payInvoice(real.bolt11, { maxFeeMsat: 0 }), paymentError('BACKEND_ERROR', false));
    // Wrong types and an oversized answer: unreadable, never trusted.
    script = () => ({ status: 200, body: JSON.stringify({ paid: 'yes', details: { amount: '5000' } }) });
    await assert.rejects(ln.lookupInvoice(real.paymentHash), LnbitsError);
    script = () => ({ status: 200, body: JSON.stringify({ name: 'w', balance: 1.5 }) });
    await assert.rejects(ln.balanceMsat(), LnbitsError);
    script = () => ({ status: 200, body: `{"name":"${'x'.repeat(300_000)}","balance":1}` });
    await assert.rejects(ln.balanceMsat(), LnbitsError);
    // The send answered with a 5xx that says nothing: the outcome is unknown (not definite).
    script = (method) =>
      method === 'GET'
        ? { status: 404, body: '{"detail":"Payment does not exist."}' }
        : { status: 502, body: 'bad gateway' };
    await assert.rejects(ln.payInvoice(real.bolt11, { maxFeeMsat: 0 }), paymentError('BACKEND_ERROR', false));
    // A 520 with LNbits' sentence for a balance that cannot cover: definite.
    script = (method) =>
      method === 'GET'
        ? { status: 404, body: '{"detail":"Payment does not exist."}' }
        : { status: 520, body: '{"detail":"Insufficient balance."}' };
    await assert.rejects(
      ln.payInvoice(real.bolt11, { maxFeeMsat: 0 }),
      paymentError('INSUFFICIENT_BALANCE', true),
    );
  } finally {
    await hostile.close();
  }
});
