// ClnBackend against a double of Core Lightning's clnrest (test/cln-double.ts): named params and
// the Rune header, msat as numbers and as old "1000msat" strings, real BOLT11 with real
// preimages, idempotent payments, each `pay` error code with its `definite` flag, a payment in
// flight past retry_for, bad runes and hostile answers.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  ClnBackend,
  ClnError,
  decodeInvoice,
  encodeInvoice,
  type Invoice,
  LightningPaymentError,
  sha256Hex,
} from '../src/index';
import { type ClnDouble, startClnDouble } from './cln-double';
import { testTlsCert } from './tls-fixture';

let cln: ClnDouble;
let backend: ClnBackend;
const payeeKey = randomBytes(32).toString('hex');

before(async () => {
  cln = await startClnDouble();
  backend = new ClnBackend({ url: cln.url, rune: cln.rune, timeoutMs: 2_000, payRetrySeconds: 1 });
});

after(async () => {
  backend.close();
  await cln.close();
});

function payee(amountMsat: number, expirySeconds = 600) {
  const invoice = encodeInvoice({
    amountMsat,
    description: 'remote',
    expirySeconds,
    nodeSecretKeyHex: payeeKey,
  });
  cln.addPayee(invoice);
  return invoice;
}

const paymentError = (code: string, definite: boolean) => (error: unknown) => {
  assert.ok(error instanceof LightningPaymentError, String(error));
  assert.equal(error.code, code, error.message);
  assert.equal(error.definite, definite, error.message);
  assert.ok(!error.message.includes(cln.rune), 'never the rune');
  return true;
};

test('create, look up, settle: named params, a random label, the Rune header, a real preimage', async () => {
  const settled: Invoice[] = [];
  const unsubscribe = backend.onSettled((invoice) => settled.push(invoice));
  const invoice = await backend.createInvoice({
    amountMsat: 5_500,
    description: 'top-up',
    expirySeconds: 600,
  });
  const sent = cln.requests.at(-1);
  assert.equal(sent?.method, 'invoice');
  assert.equal(sent?.rune, cln.rune);
  assert.match(String(sent?.params.label), /^fedai-[0-9a-f-]{36}$/);
  assert.deepEqual(
    { ...sent?.params, label: 'x' },
    { amount_msat: 5_500, label: 'x', description: 'top-up', expiry: 600 },
  );
  const second = await backend.createInvoice({
    amountMsat: 5_500,
    description: 'top-up',
    expirySeconds: 600,
  });
  assert.notEqual(cln.requests.at(-1)?.params.label, sent?.params.label, 'labels are unique');
  assert.notEqual(second.paymentHash, invoice.paymentHash);

  assert.equal(decodeInvoice(invoice.bolt11).paymentHash, invoice.paymentHash);
  assert.equal(invoice.amountMsat, 5_500);
  assert.equal(invoice.expiresAtS - invoice.createdAtS, 600);
  const open = await backend.lookupInvoice(invoice.paymentHash);
  assert.equal(open?.state, 'open');
  assert.equal(open?.preimage, undefined);
  assert.deepEqual(cln.requests.at(-1)?.params, { payment_hash: invoice.paymentHash });

  assert.equal(await backend.pollWatched(), 0);
  cln.settle(invoice.paymentHash);
  const paid = await backend.lookupInvoice(invoice.paymentHash);
  assert.equal(paid?.state, 'settled');
  assert.equal(sha256Hex(paid?.preimage ?? ''), invoice.paymentHash);
  assert.ok((paid?.settledAtS ?? 0) > 0);
  assert.equal(await backend.pollWatched(), 1);
  assert.deepEqual(
    settled.map((i) => i.paymentHash),
    [invoice.paymentHash],
  );
  unsubscribe();
  assert.equal(await backend.lookupInvoice(randomBytes(32).toString('hex')), null);
  assert.equal(await backend.lookupInvoice('nope'), null);
});

test('an expired invoice is expired', async () => {
  let clock = Math.floor(Date.now() / 1000);
  const lateCln = await startClnDouble({ nowS: () => clock });
  const late = new ClnBackend({ url: lateCln.url, rune: lateCln.rune, nowS: () => clock });
  try {
    const invoice = await late.createInvoice({ amountMsat: 1_000, description: 'x', expirySeconds: 60 });
    clock += 61;
    assert.equal((await late.lookupInvoice(invoice.paymentHash))?.state, 'expired');
  } finally {
    await lateCln.close();
  }
});

test('pay: preimage, maxfee in msat, fee = amount_sent - amount; twice is one send; balance from listfunds', async () => {
  const balance = await backend.balanceMsat();
  assert.equal(balance, 10_000_000, 'CHANNELD_NORMAL channels only (an ONCHAIN one is not spendable)');
  const invoice = payee(20_000);
  cln.script(invoice.paymentHash, { kind: 'succeed', feeMsat: 7 });
  const sends = cln.sends;
  const paid = await backend.payInvoice(invoice.bolt11, { maxFeeMsat: 10 });
  assert.equal(sha256Hex(paid.preimage), invoice.paymentHash);
  assert.deepEqual(paid, {
    paymentHash: invoice.paymentHash,
    preimage: invoice.preimage,
    amountMsat: 20_000,
    feeMsat: 7,
  });
  assert.deepEqual(cln.requests.find((r) => r.method === 'pay')?.params, {
    bolt11: invoice.bolt11,
    maxfee: 10,
    retry_for: 1,
  });
  assert.deepEqual(cln.requests.find((r) => r.method === 'listpays')?.params, {
    payment_hash: invoice.paymentHash,
  });
  assert.deepEqual(await backend.payInvoice(invoice.bolt11, { maxFeeMsat: 10 }), paid);
  const restarted = new ClnBackend({ url: cln.url, rune: cln.rune });
  assert.deepEqual(await restarted.payInvoice(invoice.bolt11, { maxFeeMsat: 10 }), paid);
  assert.equal(cln.sends, sends + 1, 'listpays first: never sent twice');
  assert.deepEqual(await backend.lookupPayment(invoice.paymentHash), { state: 'succeeded', ...paid });
  assert.equal(await backend.balanceMsat(), balance - 20_007);
});

test('old CLN: msat amounts as "1000msat" strings are read the same', async () => {
  cln.legacyMsat = true;
  try {
    const invoice = await backend.createInvoice({ amountMsat: 3_000, description: 'old', expirySeconds: 60 });
    cln.settle(invoice.paymentHash);
    assert.equal((await backend.lookupInvoice(invoice.paymentHash))?.amountMsat, 3_000);
    const out = payee(2_000);
    cln.script(out.paymentHash, { kind: 'succeed', feeMsat: 3 });
    const paid = await backend.payInvoice(out.bolt11, { maxFeeMsat: 5 });
    assert.equal(paid.amountMsat, 2_000);
    assert.equal(paid.feeMsat, 3);
    assert.deepEqual(await backend.lookupPayment(out.paymentHash), { state: 'succeeded', ...paid });
    assert.ok(Number.isSafeInteger(await backend.balanceMsat()));
  } finally {
    cln.legacyMsat = false;
  }
});

test("each of pay's error codes: its failure code and definite flag", async () => {
  const cases: [number, string, string, boolean][] = [
    [201, 'Already paid with this hash using different amount or destination', 'ALREADY_PAID', true],
    [203, 'failed: WIRE_INCORRECT_OR_UNKNOWN_PAYMENT_DETAILS (reply from remote)', 'INVOICE_NOT_FOUND', true],
    [205, 'Unable to find a route', 'NO_ROUTE', true],
    [205, 'We could not find a usable set of paths: insufficient capacity', 'INSUFFICIENT_BALANCE', true],
    [206, 'Fee exceeds our fee budget', 'FEE_TOO_HIGH', true],
    [207, 'Invoice expired', 'INVOICE_EXPIRED', true],
    [210, 'Timed out after after 8 attempts', 'NO_ROUTE', true],
    [-32602, 'maxfee: should be a millisatoshi amount', 'BACKEND_ERROR', true],
    [200, 'In progress', 'BACKEND_ERROR', false],
    [209, 'Unspecified error', 'BACKEND_ERROR', false],
    [-1, 'Catchall nonspecific error', 'BACKEND_ERROR', false],
  ];
  for (const [code, message, expected, definite] of cases) {
    const invoice = payee(3_000);
    cln.script(invoice.paymentHash, { kind: 'error', code, message });
    await assert.rejects(
      backend.payInvoice(invoice.bolt11, { maxFeeMsat: 100 }),
      paymentError(expected, definite),
    );
  }
  // A payment CLN attempted and failed: listpays says failed; it may be tried again.
  const tried = payee(3_000);
  cln.script(tried.paymentHash, {
    kind: 'error',
    code: 205,
    message: 'Ran out of routes to try',
    sent: true,
  });
  await assert.rejects(backend.payInvoice(tried.bolt11, { maxFeeMsat: 0 }), paymentError('NO_ROUTE', true));
  assert.deepEqual(await backend.lookupPayment(tried.paymentHash), {
    state: 'failed',
    paymentHash: tried.paymentHash,
    code: 'BACKEND_ERROR',
  });
  cln.script(tried.paymentHash, { kind: 'succeed', feeMsat: 0 });
  assert.equal((await backend.payInvoice(tried.bolt11, { maxFeeMsat: 0 })).preimage, tried.preimage);
  assert.equal(
    (await backend.lookupPayment(tried.paymentHash)).state,
    'succeeded',
    'a complete attempt wins',
  );

  // The double's own rules: over maxfee, over the balance, nobody routes to it, expired.
  const dear = payee(3_000);
  cln.script(dear.paymentHash, { kind: 'succeed', feeMsat: 50 });
  await assert.rejects(
    backend.payInvoice(dear.bolt11, { maxFeeMsat: 49 }),
    paymentError('FEE_TOO_HIGH', true),
  );
  await assert.rejects(
    backend.payInvoice(payee(1_000_000_000).bolt11, { maxFeeMsat: 0 }),
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
  const expired = encodeInvoice({
    amountMsat: 1_000,
    description: 'old',
    expirySeconds: 60,
    nodeSecretKeyHex: payeeKey,
    nowS: Math.floor(Date.now() / 1000) - 3600,
  });
  cln.addPayee(expired);
  await assert.rejects(
    backend.payInvoice(expired.bolt11, { maxFeeMsat: 0 }),
    paymentError('INVOICE_EXPIRED', true),
  );
  await assert.rejects(
    backend.payInvoice('lnbcrt1garbage', { maxFeeMsat: 0 }),
    paymentError('INVOICE_NOT_FOUND', true),
  );
  await assert.rejects(
    backend.payInvoice(payee(1_000).bolt11, { maxFeeMsat: 0.5 }),
    paymentError('BACKEND_ERROR', true),
  );
});

test('in flight past retry_for: not definite, never sent again, later succeeded', async () => {
  const invoice = payee(4_000);
  cln.script(invoice.paymentHash, { kind: 'hang' });
  const quick = new ClnBackend({ url: cln.url, rune: cln.rune, timeoutMs: 300, payRetrySeconds: 1 });
  const sends = cln.sends;
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
  assert.equal(cln.sends, sends + 1);
  cln.resolve(invoice.paymentHash, { kind: 'succeed', feeMsat: 2 });
  const status = await quick.lookupPayment(invoice.paymentHash);
  assert.equal(status.state, 'succeeded');
  assert.equal(status.state === 'succeeded' && sha256Hex(status.preimage), invoice.paymentHash);
  assert.equal(status.state === 'succeeded' && status.feeMsat, 2);

  // pay answering status "pending" is not an outcome either.
  const slow = payee(1_000);
  cln.script(slow.paymentHash, { kind: 'pending' });
  await assert.rejects(
    backend.payInvoice(slow.bolt11, { maxFeeMsat: 0 }),
    paymentError('BACKEND_ERROR', false),
  );
  assert.equal((await backend.lookupPayment(slow.paymentHash)).state, 'pending');
});

test('an unknown payment is unknown (listpays answers no pays)', async () => {
  const hash = randomBytes(32).toString('hex');
  assert.deepEqual(await backend.lookupPayment(hash), { state: 'unknown', paymentHash: hash });
});

test('a refused rune: a clear error that never holds the rune', async () => {
  const wrong = randomBytes(48).toString('base64url');
  const bad = new ClnBackend({ url: cln.url, rune: wrong });
  await assert.rejects(bad.balanceMsat(), (error: unknown) => {
    assert.ok(error instanceof ClnError);
    assert.equal(error.status, 401);
    assert.equal(error.rpcCode, 1502);
    assert.match(error.message, /Not authorized/);
    assert.ok(!error.message.includes(wrong));
    return true;
  });
  const sends = cln.sends;
  await assert.rejects(bad.payInvoice(payee(1_000).bolt11, { maxFeeMsat: 0 }), (error: unknown) => {
    assert.ok(error instanceof LightningPaymentError && error.code === 'BACKEND_ERROR');
    assert.ok(!error.message.includes(wrong));
    return true;
  });
  assert.equal(cln.sends, sends);
  // A rune refused on pay itself (a rune restricted to reading): definite, nothing was sent.
  cln.hostile = {
    status: 401,
    body: JSON.stringify({ code: 1502, message: 'Not authorized: method is pay' }),
    method: 'pay',
  };
  try {
    await assert.rejects(
      backend.payInvoice(payee(1_000).bolt11, { maxFeeMsat: 0 }),
      paymentError('BACKEND_ERROR', true),
    );
  } finally {
    cln.hostile = null;
  }
  assert.throws(() => new ClnBackend({ url: cln.url, rune: 'a rune with spaces' }), /rune/);
  const down = new ClnBackend({ url: 'http://127.0.0.1:1', rune: wrong, timeoutMs: 500 });
  await assert.rejects(
    down.balanceMsat(),
    (error: unknown) => error instanceof ClnError && error.status === 0,
  );
});

test('garbage and oversized answers: BACKEND_ERROR, not definite', async () => {
  const oversized = JSON.stringify({ pays: [], pad: 'x'.repeat(300 * 1024) });
  try {
    for (const body of ['not json', '{"status": 42}', oversized]) {
      cln.hostile = { status: 201, body, method: 'pay' };
      const invoice = payee(1_000);
      await assert.rejects(
        backend.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
        paymentError('BACKEND_ERROR', false),
      );
      cln.hostile = { status: 201, body };
      await assert.rejects(backend.balanceMsat(), ClnError);
      await assert.rejects(backend.lookupInvoice(invoice.paymentHash), ClnError);
      await assert.rejects(backend.lookupPayment(invoice.paymentHash), ClnError);
      await assert.rejects(
        backend.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
        paymentError('BACKEND_ERROR', false),
      );
      await assert.rejects(
        backend.createInvoice({ amountMsat: 1_000, description: 'x', expirySeconds: 60 }),
        ClnError,
      );
    }
    // A bare 502 from a proxy in front of clnrest: unknown.
    cln.hostile = { status: 502, body: '', method: 'pay' };
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
    cln.hostile = {
      status: 201,
      body: JSON.stringify({
        payment_hash: other.paymentHash,
        bolt11: other.bolt11,
        expires_at: other.expiresAtS,
      }),
    };
    await assert.rejects(
      backend.createInvoice({ amountMsat: 1_000, description: 'x', expirySeconds: 60 }),
      /9999 msat/,
    );
    cln.hostile = {
      status: 201,
      body: JSON.stringify({
        payment_hash: 'ab'.repeat(32),
        bolt11: other.bolt11,
        expires_at: other.expiresAtS,
      }),
    };
    await assert.rejects(
      backend.createInvoice({ amountMsat: 9_999, description: 'x', expirySeconds: 60 }),
      /another payment hash/,
    );
    // A complete pay whose preimage is of another hash is not believed.
    const invoice = payee(1_000);
    cln.hostile = {
      status: 201,
      body: JSON.stringify({
        payment_preimage: 'ab'.repeat(32),
        payment_hash: invoice.paymentHash,
        created_at: 1,
        parts: 1,
        amount_msat: 1_000,
        amount_sent_msat: 1_000,
        status: 'complete',
      }),
      method: 'pay',
    };
    await assert.rejects(
      backend.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
      paymentError('BACKEND_ERROR', false),
    );
  } finally {
    cln.hostile = null;
  }
});

test("TLS with clnrest's own certificate (tlsCertPem → connect.ca)", async () => {
  const tls = testTlsCert();
  const secure = await startClnDouble({ tls });
  const trusting = new ClnBackend({ url: secure.url, rune: secure.rune, tlsCertPem: tls.cert });
  const untrusting = new ClnBackend({ url: secure.url, rune: secure.rune, timeoutMs: 2_000 });
  try {
    assert.ok(secure.url.startsWith('https://'));
    assert.equal(await trusting.balanceMsat(), 10_000_000);
    await assert.rejects(
      untrusting.balanceMsat(),
      (error: unknown) => error instanceof ClnError && error.status === 0,
    );
  } finally {
    await trusting.destroy();
    await secure.close();
  }
});
