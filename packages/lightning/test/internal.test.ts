// The internal backend behind the LightningBackend interface: real BOLT11, pay once, typed
// failures, payment lookups for crash recovery.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { type Db, openDb } from '@fed-ai/kit';
import {
  decodeInvoice,
  encodeInvoice,
  InternalLightning,
  type Invoice,
  LightningPaymentError,
  sha256Hex,
} from '../src/index';

const key = randomBytes(32).toString('hex');
let db: Db;
let clock = 1_700_000_000;
let lightning: InternalLightning;

before(async () => {
  db = await openDb({});
  lightning = await InternalLightning.open(db, key, () => clock);
  // Opening twice is safe (versioned migrations).
  await InternalLightning.open(db, key, () => clock);
});

after(async () => {
  await db.close();
});

const paymentError = (code: string) => (error: unknown) => {
  assert.ok(error instanceof LightningPaymentError, String(error));
  assert.equal(error.code, code);
  assert.equal(error.definite, true, 'internal failures are definite');
  return true;
};

test('create, decode, pay once, look up: the preimage hashes to the payment hash', async () => {
  const settled: Invoice[] = [];
  const unsubscribe = lightning.onSettled((invoice) => settled.push(invoice));
  const invoice = await lightning.createInvoice({ amountMsat: 5000, description: 'test', expirySeconds: 60 });
  const decoded = decodeInvoice(invoice.bolt11);
  assert.equal(decoded.paymentHash, invoice.paymentHash);
  assert.equal(decoded.amountMsat, 5000);
  assert.equal(decoded.expiresAtS, clock + 60);
  assert.equal((await lightning.lookupInvoice(invoice.paymentHash))?.state, 'open');
  assert.equal(
    (await lightning.lookupInvoice(invoice.paymentHash))?.preimage,
    undefined,
    'secret until paid',
  );
  assert.deepEqual(await lightning.lookupPayment(invoice.paymentHash), {
    state: 'unknown',
    paymentHash: invoice.paymentHash,
  });

  const paid = await lightning.payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
  assert.equal(sha256Hex(paid.preimage), invoice.paymentHash);
  assert.equal(paid.amountMsat, 5000);
  assert.equal(paid.feeMsat, 0);
  assert.equal(settled.length, 1);
  assert.equal(settled[0]!.state, 'settled');
  const status = await lightning.lookupPayment(invoice.paymentHash);
  assert.equal(status.state, 'succeeded');
  assert.equal(status.state === 'succeeded' && status.preimage, paid.preimage);

  await assert.rejects(lightning.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }), paymentError('ALREADY_PAID'));
  unsubscribe();
  await lightning.payInvoice(
    (await lightning.createInvoice({ amountMsat: 1000, description: 'x', expirySeconds: 60 })).bolt11,
    { maxFeeMsat: 0 },
  );
  assert.equal(settled.length, 1, 'unsubscribed listeners hear nothing');
});

test('refusals: expired, not ours, not an invoice', async () => {
  const invoice = await lightning.createInvoice({ amountMsat: 2000, description: 'late', expirySeconds: 10 });
  clock += 11;
  assert.equal((await lightning.lookupInvoice(invoice.paymentHash))?.state, 'expired');
  await assert.rejects(
    lightning.payInvoice(invoice.bolt11, { maxFeeMsat: 0 }),
    paymentError('INVOICE_EXPIRED'),
  );
  assert.equal((await lightning.lookupPayment(invoice.paymentHash)).state, 'unknown');

  const foreign = encodeInvoice({
    amountMsat: 3000,
    description: 'someone else',
    expirySeconds: 60,
    nodeSecretKeyHex: randomBytes(32).toString('hex'),
    nowS: clock,
  });
  await assert.rejects(
    lightning.payInvoice(foreign.bolt11, { maxFeeMsat: 0 }),
    paymentError('INVOICE_NOT_FOUND'),
  );
  assert.equal(await lightning.lookupInvoice(foreign.paymentHash), null);
  await assert.rejects(
    lightning.payInvoice('lnbcrt1garbage', { maxFeeMsat: 0 }),
    paymentError('INVOICE_NOT_FOUND'),
  );
});

test('listeners are bounded', () => {
  const offs: (() => void)[] = [];
  assert.throws(() => {
    for (let i = 0; i < 100; i++) offs.push(lightning.onSettled(() => {}));
  }, RangeError);
  assert.equal(offs.length, 64);
  for (const off of offs) off();
});
