// Accounts of services at settlement (`/v1/account/*`), driven through the Lightning adapter the
// wallet fleet uses (SettlementAccountBackend): invoices paid by the faucet, a router tab's refund
// or another account; payments to router tabs and other accounts, paid once and answered again on
// retry; isolation between accounts; refusals; bad bodies; a settlement that is down.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { verifyLedger } from '@fed-ai/ledger';
import {
  LightningPaymentError,
  type PaymentFailureCode,
  SettlementAccountBackend,
  SettlementAccountError,
  sha256Hex,
} from '@fed-ai/lightning';
import { createNip98Header, generateSecretKey, publicKeyOf } from '@fed-ai/protocol';
import { accountPayer } from '../src/account-routes';
import { settlementConfigSchema } from '../src/config';
import { type RunningSettlement, startSettlement } from '../src/settlement';

const dir = mkdtempSync(join(tmpdir(), 'fedai-account-'));
const walletA = generateSecretKey();
const walletB = generateSecretKey();
const routerKey = generateSecretKey();
let settlement: RunningSettlement;
let a: SettlementAccountBackend;
let b: SettlementAccountBackend;

before(async () => {
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: dir,
      FAUCET: 'true',
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
      SETTLEMENT_WALLET_PUBKEYS: `${publicKeyOf(walletA)},${publicKeyOf(walletB)}`,
    }),
  );
  a = new SettlementAccountBackend({ url: settlement.url, secretKey: walletA });
  b = new SettlementAccountBackend({ url: `${settlement.url}/`, secretKey: walletB });
});

after(async () => {
  await settlement.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

/** A NIP-98 signed request to settlement, by `key`. */
async function signed(key: Uint8Array | null, method: 'GET' | 'POST', path: string, body?: string) {
  const url = `${settlement.url}${path}`;
  const response = await fetch(url, {
    method,
    headers: {
      ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      ...(key ? { authorization: createNip98Header(url, method, body, key) } : {}),
    },
    ...(body === undefined ? {} : { body }),
  });
  const text = await response.text();
  return {
    status: response.status,
    body: JSON.parse(text) as Record<string, unknown> & { error?: { code: string } },
  };
}

const faucetPay = (bolt11: string) => signed(routerKey, 'POST', '/v1/faucet/pay', JSON.stringify({ bolt11 }));
const balanceOf = async (key: Uint8Array) =>
  (await settlement.books.balance(accountPayer(publicKeyOf(key)))).balanceMsat;
const tabBalance = async (payer: string) => (await settlement.books.tab(payer)).balance_msat;

const paymentError =
  (code: PaymentFailureCode, definite: boolean) =>
  (error: unknown): boolean => {
    assert.ok(error instanceof LightningPaymentError, String(error));
    assert.equal(error.code, code, error.message);
    assert.equal(error.definite, definite, error.message);
    return true;
  };

test('an invoice of the account, paid by the faucet, settles and credits the account once', async () => {
  const invoice = await a.createInvoice({
    amountMsat: 5000,
    description: 'fleet deposit',
    expirySeconds: 600,
  });
  assert.equal(invoice.state, 'open');
  assert.match(invoice.bolt11, /^lnbcrt/);
  assert.equal(invoice.description, 'fleet deposit');
  assert.equal(invoice.expiresAtS - invoice.createdAtS, 600);
  assert.equal((await a.lookupInvoice(invoice.paymentHash))?.state, 'open');
  assert.equal((await faucetPay(invoice.bolt11)).status, 200);
  const settled = await a.lookupInvoice(invoice.paymentHash);
  assert.equal(settled?.state, 'settled');
  assert.equal(sha256Hex(settled!.preimage!), invoice.paymentHash);
  assert.equal(typeof settled?.settledAtS, 'number');
  assert.equal(settled?.bolt11, invoice.bolt11);
  assert.equal(await balanceOf(walletA), 5000);
  const again = await faucetPay(invoice.bolt11);
  assert.equal(again.status, 409);
  assert.equal(await settlement.books.creditSettledTopups(), 0);
  assert.equal(await balanceOf(walletA), 5000, 'credited once');
  const balance = await signed(walletA, 'GET', '/v1/account/balance');
  assert.deepEqual(balance.body, { balance_msat: 5000, reserved_msat: 0 });
  // Accounts may ask for any amount from 1 msat (tab top-ups start at 1000).
  const tiny = await a.createInvoice({ amountMsat: 1, description: '', expirySeconds: 60 });
  assert.equal(tiny.amountMsat, 1);
});

test("pays a router tab's invoice once: the tab credited once, the account debited once, a retry answers the same payment", async () => {
  const tab = `api-key-${randomBytes(4).toString('hex')}`;
  const topup = await settlement.books.openTopup(tab, 2000);
  const before = await balanceOf(walletA);
  const paid = await a.payInvoice(topup.bolt11, { maxFeeMsat: 0 });
  assert.equal(paid.paymentHash, topup.paymentHash);
  assert.equal(sha256Hex(paid.preimage), topup.paymentHash);
  assert.equal(paid.amountMsat, 2000);
  assert.equal(paid.feeMsat, 0);
  assert.equal(await tabBalance(tab), 2000);
  assert.equal(await balanceOf(walletA), before - 2000);
  // The client crashed before it learned the outcome and asks again: the same payment, no debit.
  const retry = await a.payInvoice(topup.bolt11, { maxFeeMsat: 0 });
  assert.deepEqual(retry, paid);
  assert.equal(await balanceOf(walletA), before - 2000);
  assert.equal(await settlement.books.creditSettledTopups(), 0);
  assert.equal(await tabBalance(tab), 2000, 'the tab is credited once');
  const status = await a.lookupPayment(topup.paymentHash);
  assert.equal(status.state, 'succeeded');
  assert.equal(status.state === 'succeeded' && status.preimage, paid.preimage);
  const random = randomBytes(32).toString('hex');
  assert.deepEqual(await a.lookupPayment(random), { state: 'unknown', paymentHash: random });
  // Another account cannot pay it again.
  await assert.rejects(b.payInvoice(topup.bolt11, { maxFeeMsat: 0 }), paymentError('ALREADY_PAID', true));
});

test("an account's invoice paid by another account and by a router tab's refund: credited once each", async () => {
  const fromA = await b.createInvoice({ amountMsat: 1200, description: 'a to b', expirySeconds: 600 });
  const beforeA = await balanceOf(walletA);
  const paid = await a.payInvoice(fromA.bolt11, { maxFeeMsat: 0 });
  assert.equal(sha256Hex(paid.preimage), fromA.paymentHash);
  const seen = await b.lookupInvoice(fromA.paymentHash);
  assert.equal(seen?.state, 'settled');
  assert.equal(seen?.preimage, paid.preimage);
  assert.equal(await balanceOf(walletB), 1200);
  assert.equal(await balanceOf(walletA), beforeA - 1200);

  // A router tab refunds into account B (POST /v1/refunds, as the router).
  const tab = `api-key-${randomBytes(4).toString('hex')}`;
  const funding = await settlement.books.openTopup(tab, 3000);
  assert.equal((await faucetPay(funding.bolt11)).status, 200);
  const refundTo = await b.createInvoice({ amountMsat: 1000, description: 'refund', expirySeconds: 600 });
  const refund = await signed(
    routerKey,
    'POST',
    '/v1/refunds',
    JSON.stringify({ payer: tab, bolt11: refundTo.bolt11 }),
  );
  assert.equal(refund.status, 200, JSON.stringify(refund.body));
  assert.equal((await b.lookupInvoice(refundTo.paymentHash))?.state, 'settled');
  assert.equal(await settlement.books.creditSettledTopups(), 0);
  assert.equal(await balanceOf(walletB), 2200);
  assert.equal(await tabBalance(tab), 2000);
});

test('refusals: too little balance (definite), own invoice, a settled invoice, an unknown one', async () => {
  const tab = `api-key-${randomBytes(4).toString('hex')}`;
  const big = await settlement.books.openTopup(tab, 50_000_000);
  const before = await balanceOf(walletA);
  await assert.rejects(
    a.payInvoice(big.bolt11, { maxFeeMsat: 0 }),
    paymentError('INSUFFICIENT_BALANCE', true),
  );
  assert.equal(await balanceOf(walletA), before);
  assert.equal((await a.lookupPayment(big.paymentHash)).state, 'unknown', 'no payment was recorded');
  // The invoice is still open: the faucet pays it and the tab is credited once.
  assert.equal((await faucetPay(big.bolt11)).status, 200);
  assert.equal(await tabBalance(tab), 50_000_000);
  // Now it is paid: the account may not pay it.
  await assert.rejects(a.payInvoice(big.bolt11, { maxFeeMsat: 0 }), paymentError('ALREADY_PAID', true));
  // Its own invoice would pay itself.
  const own = await a.createInvoice({ amountMsat: 1000, description: 'self', expirySeconds: 600 });
  await assert.rejects(a.payInvoice(own.bolt11, { maxFeeMsat: 0 }), (error: unknown) => {
    assert.ok(error instanceof LightningPaymentError);
    assert.equal(error.definite, true);
    assert.match(error.message, /INVALID_REQUEST.*own tab/);
    return true;
  });
  // An invoice of another node: the internal backend pays only invoices of this system.
  const { encodeInvoice } = await import('@fed-ai/lightning');
  const foreign = encodeInvoice({
    amountMsat: 1000,
    description: 'elsewhere',
    expirySeconds: 600,
    nodeSecretKeyHex: randomBytes(32).toString('hex'),
  });
  await assert.rejects(
    a.payInvoice(foreign.bolt11, { maxFeeMsat: 10 }),
    paymentError('INVOICE_NOT_FOUND', true),
  );
  await assert.rejects(
    a.payInvoice('lnbcrt1nonsense', { maxFeeMsat: 0 }),
    paymentError('INVOICE_NOT_FOUND', true),
  );
  assert.equal(await balanceOf(walletA), before);
});

test('a payment a crash left pending: a retry answers pending (not definite), recovery voids it, the retry then fails definitely', async () => {
  const tab = `api-key-${randomBytes(4).toString('hex')}`;
  const topup = await settlement.books.openTopup(tab, 1000);
  const before = await balanceOf(walletA);
  // The hold and the pending row are written, then the process "dies" before paying.
  await settlement.books.holdForRefund(accountPayer(publicKeyOf(walletA)), topup.bolt11);
  assert.equal(await balanceOf(walletA), before - 1000);
  await assert.rejects(a.payInvoice(topup.bolt11, { maxFeeMsat: 0 }), paymentError('BACKEND_ERROR', false));
  assert.equal((await a.lookupPayment(topup.paymentHash)).state, 'pending');
  assert.equal(await settlement.books.resolvePendingPayments(), 1);
  assert.deepEqual(await a.lookupPayment(topup.paymentHash), {
    state: 'failed',
    paymentHash: topup.paymentHash,
    code: 'BACKEND_ERROR',
  });
  await assert.rejects(a.payInvoice(topup.bolt11, { maxFeeMsat: 0 }), paymentError('BACKEND_ERROR', true));
  assert.equal(await balanceOf(walletA), before, 'the hold was voided');
  assert.equal(await tabBalance(tab), 0);
});

test("accounts are apart: B sees neither A's invoices nor A's payments", async () => {
  const invoice = await a.createInvoice({ amountMsat: 2000, description: 'mine', expirySeconds: 600 });
  assert.equal(await b.lookupInvoice(invoice.paymentHash), null);
  const raw = await signed(walletB, 'GET', `/v1/account/invoices/${invoice.paymentHash}`);
  assert.equal(raw.status, 404);
  assert.equal(raw.body.error?.code, 'NOT_FOUND');
  const tab = `api-key-${randomBytes(4).toString('hex')}`;
  const topup = await settlement.books.openTopup(tab, 1000);
  await a.payInvoice(topup.bolt11, { maxFeeMsat: 0 });
  assert.deepEqual(await b.lookupPayment(topup.paymentHash), {
    state: 'unknown',
    paymentHash: topup.paymentHash,
  });
  // A router tab's invoice is no account's invoice.
  assert.equal(await a.lookupInvoice(topup.paymentHash), null);
});

test('keys outside SETTLEMENT_WALLET_PUBKEYS are refused (403), unsigned calls 401', async () => {
  for (const key of [generateSecretKey(), routerKey]) {
    const stranger = new SettlementAccountBackend({ url: settlement.url, secretKey: key });
    await assert.rejects(
      stranger.createInvoice({ amountMsat: 1000, description: 'x', expirySeconds: 600 }),
      (error: unknown) => {
        assert.ok(error instanceof SettlementAccountError);
        assert.equal(error.status, 403);
        assert.equal(error.code, 'FORBIDDEN');
        return true;
      },
    );
    await assert.rejects(stranger.lookupPayment(randomBytes(32).toString('hex')), SettlementAccountError);
    const invoice = await settlement.books.openTopup('some-api-key-id', 1000);
    await assert.rejects(
      stranger.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
      paymentError('BACKEND_ERROR', true),
    );
    for (const [method, path, body] of [
      ['GET', '/v1/account/balance', undefined],
      ['POST', '/v1/account/invoices', JSON.stringify({ amount_msat: 1000 })],
      ['POST', '/v1/account/payments', JSON.stringify({ bolt11: invoice.bolt11 })],
    ] as const) {
      const answer = await signed(key, method, path, body);
      assert.equal(answer.status, 403, `${method} ${path}`);
      assert.equal(answer.body.error?.code, 'FORBIDDEN');
      assert.equal((await signed(null, method, path, body)).status, 401, `${method} ${path}`);
    }
  }
});

test('bad bodies and hashes: 400 with a reason code', async () => {
  const long = 'x'.repeat(257);
  for (const body of [
    { amount_msat: 1000.5 },
    { amount_msat: 0 },
    { amount_msat: 100_000_000_001 },
    { amount_msat: '1000' },
    { amount_msat: 1000, extra: true },
    { amount_msat: 1000, description: long },
    { amount_msat: 1000, expiry_s: 59 },
    { amount_msat: 1000, expiry_s: 86_401 },
    { amount_msat: 1000, account: 'svc:someone-else' },
  ]) {
    const answer = await signed(walletA, 'POST', '/v1/account/invoices', JSON.stringify(body));
    assert.equal(answer.status, 400, JSON.stringify(body));
    assert.equal(answer.body.error?.code, 'INVALID_REQUEST');
  }
  for (const body of [
    { bolt11: 'short' },
    { bolt11: 'lnbcrt1xxxxxxxxxxxxxxxx', max_fee_msat: -1 },
    { bolt11: 'lnbcrt1xxxxxxxxxxxxxxxx', max_fee_msat: 1.5 },
    { bolt11: 'lnbcrt1xxxxxxxxxxxxxxxx', payer: 'someone' },
    [],
    null,
  ]) {
    const answer = await signed(walletA, 'POST', '/v1/account/payments', JSON.stringify(body));
    assert.equal(answer.status, 400, JSON.stringify(body));
    assert.equal(answer.body.error?.code, 'INVALID_REQUEST');
  }
  const notJson = await signed(walletA, 'POST', '/v1/account/invoices', '{"amount_msat":');
  assert.equal(notJson.status, 400);
  assert.equal(notJson.body.error?.code, 'INVALID_REQUEST');
  for (const hash of ['xyz', 'g'.repeat(64), 'a'.repeat(63), 'a'.repeat(65)]) {
    for (const kind of ['invoices', 'payments']) {
      const answer = await signed(walletA, 'GET', `/v1/account/${kind}/${hash}`);
      assert.equal(answer.status, 400, `${kind}/${hash}`);
      assert.equal(answer.body.error?.code, 'INVALID_REQUEST');
    }
  }
  assert.equal((await balanceOf(walletA)) >= 0, true);
});

test('a settlement that is down: payInvoice throws a LightningPaymentError that is not definite', async () => {
  const port = await new Promise<number>((resolve) => {
    const probe = createServer();
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      probe.close(() => resolve(typeof address === 'object' && address ? address.port : 0));
    });
  });
  const down = new SettlementAccountBackend({
    url: `http://127.0.0.1:${port}`,
    secretKey: walletA,
    timeoutMs: 2000,
  });
  const invoice = await settlement.books.openTopup('some-api-key-id', 1000);
  await assert.rejects(down.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }), (error: unknown) => {
    paymentError('BACKEND_ERROR', false)(error);
    assert.doesNotMatch((error as Error).message, /127\.0\.0\.1/, 'no address in the message');
    return true;
  });
  await assert.rejects(down.lookupPayment(invoice.paymentHash), (error: unknown) => {
    assert.ok(error instanceof SettlementAccountError);
    assert.equal(error.code, 'SETTLEMENT_UNAVAILABLE');
    return true;
  });
  await assert.rejects(down.lookupInvoice(invoice.paymentHash), SettlementAccountError);
  const unsubscribe = down.onSettled(() => {});
  unsubscribe();
});
