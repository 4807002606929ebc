// LndBackend against a double of LND's REST API (test/lnd-double.ts): msat units and proto3 JSON
// shapes, real BOLT11 with real preimages, idempotent payments, every failure reason with its
// `definite` flag, a payment in flight past the timeout, a broken stream, bad macaroons and
// hostile answers.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  decodeInvoice,
  encodeInvoice,
  type Invoice,
  LightningPaymentError,
  LndBackend,
  LndError,
  sha256Hex,
} from '../src/index';
import { type LndDouble, startLndDouble } from './lnd-double';
import { testTlsCert } from './tls-fixture';

let lnd: LndDouble;
let backend: LndBackend;
const payeeKey = randomBytes(32).toString('hex');

before(async () => {
  lnd = await startLndDouble();
  backend = new LndBackend({
    url: lnd.url,
    macaroonHex: lnd.macaroonHex,
    timeoutMs: 2_000,
    payTimeoutSeconds: 1,
  });
});

after(async () => {
  backend.close();
  await lnd.close();
});

/** An invoice of another node that the double can route to. */
function payee(amountMsat: number, expirySeconds = 600) {
  const invoice = encodeInvoice({
    amountMsat,
    description: 'remote',
    expirySeconds,
    nodeSecretKeyHex: payeeKey,
  });
  lnd.addPayee(invoice);
  return invoice;
}

const paymentError = (code: string, definite: boolean) => (error: unknown) => {
  assert.ok(error instanceof LightningPaymentError, String(error));
  assert.equal(error.code, code, error.message);
  assert.equal(error.definite, definite, error.message);
  assert.ok(!error.message.includes(lnd.macaroonHex), 'never the macaroon');
  return true;
};

test('create, look up, settle: msat amounts as strings, the macaroon header, a real preimage', async () => {
  const settled: Invoice[] = [];
  const unsubscribe = backend.onSettled((invoice) => settled.push(invoice));
  const invoice = await backend.createInvoice({
    amountMsat: 5_500,
    description: 'top-up',
    expirySeconds: 600,
  });
  const sent = lnd.requests.at(-1);
  assert.equal(sent?.path, '/v1/invoices');
  assert.equal(sent?.macaroon, lnd.macaroonHex);
  assert.deepEqual(sent?.body, { value_msat: '5500', memo: 'top-up', expiry: '600' });
  const decoded = decodeInvoice(invoice.bolt11);
  assert.equal(decoded.paymentHash, invoice.paymentHash);
  assert.equal(invoice.amountMsat, 5_500, 'msat, never rounded to sat');
  assert.equal(invoice.expiresAtS - invoice.createdAtS, 600);

  const open = await backend.lookupInvoice(invoice.paymentHash);
  assert.equal(open?.state, 'open');
  assert.equal(open?.preimage, undefined, 'secret until settled');
  assert.equal(open?.amountMsat, 5_500);
  assert.equal(lnd.requests.at(-1)?.path, `/v1/invoice/${invoice.paymentHash}`, 'r_hash_str is hex');

  assert.equal(await backend.pollWatched(), 0);
  lnd.settle(invoice.paymentHash);
  const paid = await backend.lookupInvoice(invoice.paymentHash);
  assert.equal(paid?.state, 'settled');
  assert.equal(sha256Hex(paid?.preimage ?? ''), invoice.paymentHash);
  assert.ok((paid?.settledAtS ?? 0) > 0);
  assert.equal(await backend.pollWatched(), 1);
  assert.equal(settled.length, 1);
  assert.equal(settled[0]?.paymentHash, invoice.paymentHash);
  assert.equal(await backend.pollWatched(), 0, 'told once');
  unsubscribe();

  assert.equal(await backend.lookupInvoice(randomBytes(32).toString('hex')), null, 'unknown: null');
  assert.equal(await backend.lookupInvoice('not-a-hash'), null);
  await assert.rejects(
    backend.createInvoice({ amountMsat: 1.5, description: 'x', expirySeconds: 60 }),
    /positive integer/,
  );
});

test('an expired invoice: LND cancels it, the adapter says expired', async () => {
  let clock = Math.floor(Date.now() / 1000);
  const lateLnd = await startLndDouble({ nowS: () => clock });
  const late = new LndBackend({ url: lateLnd.url, macaroonHex: lateLnd.macaroonHex, nowS: () => clock });
  try {
    const invoice = await late.createInvoice({ amountMsat: 1_000, description: 'x', expirySeconds: 60 });
    clock += 61;
    assert.equal((await late.lookupInvoice(invoice.paymentHash))?.state, 'expired');
  } finally {
    await lateLnd.close();
  }
});

test('pay: the preimage hashes to the payment hash; the fee limit and timeout are sent; twice is one send', async () => {
  const invoice = payee(20_000);
  lnd.script(invoice.paymentHash, { kind: 'succeed', feeMsat: 7 });
  const balance = await backend.balanceMsat();
  const sendsBefore = lnd.sends;
  const paid = await backend.payInvoice(invoice.bolt11, { maxFeeMsat: 10 });
  assert.equal(sha256Hex(paid.preimage), invoice.paymentHash);
  assert.equal(paid.preimage, invoice.preimage);
  assert.equal(paid.amountMsat, 20_000);
  assert.equal(paid.feeMsat, 7);
  assert.equal(lnd.sends, sendsBefore + 1);
  const send = lnd.requests.find((r) => r.path === '/v2/router/send');
  assert.deepEqual(send?.body, {
    payment_request: invoice.bolt11,
    timeout_seconds: 1,
    fee_limit_msat: '10',
    no_inflight_updates: true,
  });
  const track = lnd.requests.find((r) => r.path.startsWith('/v2/router/track/'));
  assert.equal(
    decodeURIComponent(track?.path.slice('/v2/router/track/'.length) ?? ''),
    `${Buffer.from(invoice.paymentHash, 'hex').toString('base64url')}=`,
    'a bytes path parameter is padded base64url',
  );

  const again = await backend.payInvoice(invoice.bolt11, { maxFeeMsat: 10 });
  assert.deepEqual(again, paid, 'answered again from the track');
  assert.equal(lnd.sends, sendsBefore + 1, 'never sent twice');
  // A fresh adapter (a restart) still sends nothing.
  const restarted = new LndBackend({ url: lnd.url, macaroonHex: lnd.macaroonHex });
  assert.deepEqual(await restarted.payInvoice(invoice.bolt11, { maxFeeMsat: 10 }), paid);
  assert.equal(lnd.sends, sendsBefore + 1);
  assert.deepEqual(await backend.lookupPayment(invoice.paymentHash), { state: 'succeeded', ...paid });
  assert.equal(await backend.balanceMsat(), balance - 20_007, 'local_balance.msat');
});

test('each failure reason: its code, definite, and lookupPayment says failed', async () => {
  const cases: [string, string][] = [
    ['FAILURE_REASON_NO_ROUTE', 'NO_ROUTE'],
    ['FAILURE_REASON_TIMEOUT', 'NO_ROUTE'],
    ['FAILURE_REASON_INSUFFICIENT_BALANCE', 'INSUFFICIENT_BALANCE'],
    ['FAILURE_REASON_INCORRECT_PAYMENT_DETAILS', 'INVOICE_NOT_FOUND'],
    ['FAILURE_REASON_ERROR', 'BACKEND_ERROR'],
    ['FAILURE_REASON_CANCELED', 'BACKEND_ERROR'],
  ];
  for (const [reason, code] of cases) {
    const invoice = payee(3_000);
    lnd.script(invoice.paymentHash, { kind: 'fail', reason });
    await assert.rejects(backend.payInvoice(invoice.bolt11, { maxFeeMsat: 100 }), paymentError(code, true));
    assert.deepEqual(await backend.lookupPayment(invoice.paymentHash), {
      state: 'failed',
      paymentHash: invoice.paymentHash,
      code,
    });
  }
  // A failed payment may be tried again (LND allows it): this time it succeeds.
  const retried = payee(3_000);
  lnd.script(retried.paymentHash, { kind: 'fail', reason: 'FAILURE_REASON_NO_ROUTE' });
  await assert.rejects(backend.payInvoice(retried.bolt11, { maxFeeMsat: 0 }), paymentError('NO_ROUTE', true));
  lnd.script(retried.paymentHash, { kind: 'succeed', feeMsat: 0 });
  assert.equal((await backend.payInvoice(retried.bolt11, { maxFeeMsat: 0 })).preimage, retried.preimage);

  // The double's own rules: over the fee limit, over the balance, an invoice nobody routes to.
  const dear = payee(3_000);
  lnd.script(dear.paymentHash, { kind: 'succeed', feeMsat: 50 });
  await assert.rejects(backend.payInvoice(dear.bolt11, { maxFeeMsat: 49 }), paymentError('NO_ROUTE', true));
  const huge = payee(1_000_000_000);
  await assert.rejects(
    backend.payInvoice(huge.bolt11, { maxFeeMsat: 0 }),
    paymentError('INSUFFICIENT_BALANCE', true),
  );
  const stranger = encodeInvoice({
    amountMsat: 1_000,
    description: 'x',
    expirySeconds: 60,
    nodeSecretKeyHex: payeeKey,
  });
  await assert.rejects(
    backend.payInvoice(stranger.bolt11, { maxFeeMsat: 0 }),
    paymentError('INVOICE_NOT_FOUND', true),
  );
});

test('refusals before sending: expired invoice, not a BOLT11, a bad fee limit', async () => {
  const sends = lnd.sends;
  const expired = encodeInvoice({
    amountMsat: 1_000,
    description: 'old',
    expirySeconds: 60,
    nodeSecretKeyHex: payeeKey,
    nowS: Math.floor(Date.now() / 1000) - 3600,
  });
  lnd.addPayee(expired);
  await assert.rejects(
    backend.payInvoice(expired.bolt11, { maxFeeMsat: 0 }),
    paymentError('INVOICE_EXPIRED', true),
  );
  await assert.rejects(
    backend.payInvoice('lnbcrt1garbage', { maxFeeMsat: 0 }),
    paymentError('INVOICE_NOT_FOUND', true),
  );
  await assert.rejects(
    backend.payInvoice(payee(1_000).bolt11, { maxFeeMsat: -1 }),
    paymentError('BACKEND_ERROR', true),
  );
  assert.equal(lnd.sends, sends);
});

test('in flight past the timeout: not definite, never sent again, later succeeded', async () => {
  const invoice = payee(4_000);
  lnd.script(invoice.paymentHash, { kind: 'hang' });
  const quick = new LndBackend({
    url: lnd.url,
    macaroonHex: lnd.macaroonHex,
    timeoutMs: 300,
    payTimeoutSeconds: 1,
  });
  const sends = lnd.sends;
  await assert.rejects(
    quick.payInvoice(invoice.bolt11, { maxFeeMsat: 5 }),
    paymentError('BACKEND_ERROR', false),
  );
  assert.deepEqual(await quick.lookupPayment(invoice.paymentHash), {
    state: 'pending',
    paymentHash: invoice.paymentHash,
  });
  await assert.rejects(
    quick.payInvoice(invoice.bolt11, { maxFeeMsat: 5 }),
    paymentError('BACKEND_ERROR', false),
  );
  assert.equal(lnd.sends, sends + 1, 'the track said in flight: not sent again');
  lnd.resolve(invoice.paymentHash, { kind: 'succeed', feeMsat: 2 });
  const status = await quick.lookupPayment(invoice.paymentHash);
  assert.equal(status.state, 'succeeded');
  assert.equal(status.state === 'succeeded' && sha256Hex(status.preimage), invoice.paymentHash);
  assert.equal(status.state === 'succeeded' && status.feeMsat, 2);
});

test('a broken payment stream is not definite; the track tells the outcome', async () => {
  const invoice = payee(2_000);
  lnd.script(invoice.paymentHash, { kind: 'break' });
  await assert.rejects(
    backend.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
    paymentError('BACKEND_ERROR', false),
  );
  assert.equal((await backend.lookupPayment(invoice.paymentHash)).state, 'succeeded');
});

test('an unknown payment is unknown ("payment isn\'t initiated", code 5)', async () => {
  const hash = randomBytes(32).toString('hex');
  assert.deepEqual(await backend.lookupPayment(hash), { state: 'unknown', paymentHash: hash });
  assert.deepEqual(await backend.lookupPayment('zz'), { state: 'unknown', paymentHash: 'zz' });
});

test('a bad macaroon: a clear error that never holds the macaroon', async () => {
  const wrong = randomBytes(64).toString('hex');
  const bad = new LndBackend({ url: lnd.url, macaroonHex: wrong });
  await assert.rejects(bad.balanceMsat(), (error: unknown) => {
    assert.ok(error instanceof LndError);
    assert.equal(error.status, 500);
    assert.match(error.message, /verification failed/);
    assert.ok(!error.message.includes(wrong));
    return true;
  });
  await assert.rejects(
    bad.createInvoice({ amountMsat: 1_000, description: 'x', expirySeconds: 60 }),
    (error: unknown) => {
      assert.ok(error instanceof LndError && !error.message.includes(wrong));
      return true;
    },
  );
  const sends = lnd.sends;
  await assert.rejects(bad.payInvoice(payee(1_000).bolt11, { maxFeeMsat: 0 }), (error: unknown) => {
    assert.ok(error instanceof LightningPaymentError && error.code === 'BACKEND_ERROR');
    assert.ok(!error.message.includes(wrong));
    return true;
  });
  assert.equal(lnd.sends, sends);
  assert.throws(() => new LndBackend({ url: lnd.url, macaroonHex: 'not hex' }), /hex/);
  const down = new LndBackend({ url: 'http://127.0.0.1:1', macaroonHex: wrong, timeoutMs: 500 });
  await assert.rejects(
    down.balanceMsat(),
    (error: unknown) => error instanceof LndError && error.status === 0,
  );
});

test('garbage and oversized answers: BACKEND_ERROR, not definite', async () => {
  const oversized = JSON.stringify({ result: { pad: 'x'.repeat(300 * 1024) } });
  try {
    for (const body of ['not json', '{"result": {"status": 42}}', oversized]) {
      lnd.hostile = { status: 200, body, path: '/v2/router/send' };
      const invoice = payee(1_000);
      await assert.rejects(
        backend.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
        paymentError('BACKEND_ERROR', false),
      );
      lnd.hostile = { status: 200, body };
      await assert.rejects(backend.balanceMsat(), LndError);
      await assert.rejects(backend.lookupInvoice(invoice.paymentHash), LndError);
      await assert.rejects(backend.lookupPayment(invoice.paymentHash), LndError);
      await assert.rejects(
        backend.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
        paymentError('BACKEND_ERROR', false),
      );
      await assert.rejects(
        backend.createInvoice({ amountMsat: 1_000, description: 'x', expirySeconds: 60 }),
        LndError,
      );
    }
    // A bare 5xx on send: the outcome is unknown.
    lnd.hostile = { status: 503, body: '', path: '/v2/router/send' };
    await assert.rejects(
      backend.payInvoice(payee(1_000).bolt11, { maxFeeMsat: 0 }),
      paymentError('BACKEND_ERROR', false),
    );
    // An invoice for another amount or hash than asked is refused.
    const other = encodeInvoice({
      amountMsat: 9_999,
      description: 'x',
      expirySeconds: 60,
      nodeSecretKeyHex: payeeKey,
    });
    lnd.hostile = {
      status: 200,
      body: JSON.stringify({
        r_hash: Buffer.from(other.paymentHash, 'hex').toString('base64'),
        payment_request: other.bolt11,
      }),
    };
    await assert.rejects(
      backend.createInvoice({ amountMsat: 1_000, description: 'x', expirySeconds: 60 }),
      /9999 msat/,
    );
    lnd.hostile = {
      status: 200,
      body: JSON.stringify({
        r_hash: Buffer.from(randomBytes(32)).toString('base64'),
        payment_request: other.bolt11,
      }),
    };
    await assert.rejects(
      backend.createInvoice({ amountMsat: 9_999, description: 'x', expirySeconds: 60 }),
      /another payment hash/,
    );
  } finally {
    lnd.hostile = null;
  }
  // A succeeded payment with a preimage of another hash is not believed.
  const invoice = payee(1_000);
  lnd.hostile = {
    status: 200,
    body: `${JSON.stringify({ result: { payment_hash: invoice.paymentHash, status: 'SUCCEEDED', payment_preimage: 'ab'.repeat(32), value_msat: '1000', fee_msat: '0' } })}\n`,
    path: '/v2/router/send',
  };
  try {
    await assert.rejects(
      backend.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
      paymentError('BACKEND_ERROR', false),
    );
  } finally {
    lnd.hostile = null;
  }
});

test('bare gRPC status bodies: "not initiated" is unknown, a bare 404 is an error, a refused macaroon on send is definite', async () => {
  const invoice = payee(1_000);
  try {
    lnd.hostile = {
      status: 404,
      body: JSON.stringify({ code: 5, message: "payment isn't initiated", details: [] }),
      path: '/v2/router/track/',
    };
    assert.equal((await backend.lookupPayment(invoice.paymentHash)).state, 'unknown');
    lnd.hostile = { status: 404, body: '404 page not found\n', path: '/v2/router/track/' };
    await assert.rejects(backend.lookupPayment(invoice.paymentHash), LndError);
    lnd.hostile = {
      status: 500,
      body: JSON.stringify({
        code: 2,
        message: 'verification failed: signature mismatch after caveat verification',
      }),
      path: '/v2/router/send',
    };
    await assert.rejects(
      backend.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
      paymentError('BACKEND_ERROR', true),
    );
    lnd.hostile = {
      status: 409,
      body: JSON.stringify({ code: 6, message: 'invoice is already paid', details: [] }),
      path: '/v2/router/send',
    };
    await assert.rejects(
      backend.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
      paymentError('ALREADY_PAID', true),
    );
  } finally {
    lnd.hostile = null;
  }
});

test("TLS with the node's own certificate (tlsCertPem → connect.ca)", async () => {
  const tls = testTlsCert();
  const secure = await startLndDouble({ tls });
  const trusting = new LndBackend({ url: secure.url, macaroonHex: secure.macaroonHex, tlsCertPem: tls.cert });
  const untrusting = new LndBackend({ url: secure.url, macaroonHex: secure.macaroonHex, timeoutMs: 2_000 });
  try {
    assert.ok(secure.url.startsWith('https://'));
    assert.equal(await trusting.balanceMsat(), 10_000_000);
    await assert.rejects(
      untrusting.balanceMsat(),
      (error: unknown) => error instanceof LndError && error.status === 0,
    );
  } finally {
    await trusting.destroy();
    await secure.close();
  }
});
