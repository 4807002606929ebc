// invoiceFromLightningAddress against a Lightning-address server double (lnurl-double.ts): the
// honest path returns the wallet's invoice for exactly the amount asked; a server that lies about
// the amount, the metadata hash or the expiry, refuses, breaks or floods is refused with its code.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import {
  decodeInvoice,
  encodeInvoice,
  invoiceFromLightningAddress,
  LnurlError,
  parseLightningAddress,
} from '../src/index';
import { type LnurlDouble, type LnurlMode, startLnurlDouble } from './lnurl-double';

let double: LnurlDouble;
const minted: string[] = [];

before(async () => {
  double = await startLnurlDouble({
    minSendableMsat: 1000,
    maxSendableMsat: 10_000_000,
    mint: async (amountMsat, descriptionHash) => {
      const invoice = encodeInvoice({
        amountMsat,
        description: '',
        descriptionHash,
        expirySeconds: 600,
        nodeSecretKeyHex: randomBytes(32).toString('hex'),
      });
      minted.push(invoice.bolt11);
      return invoice.bolt11;
    },
  });
});
after(() => double.close());

const refusedWith = (code: string) => (error: unknown) => {
  assert.ok(error instanceof LnurlError, String(error));
  assert.equal(error.code, code, error.message);
  return true;
};

test('the honest server: the invoice is the wallet’s, for exactly the amount, committing to the metadata', async () => {
  double.mode = 'honest';
  const bolt11 = await invoiceFromLightningAddress(double.address('node1'), 21_000, { allowHttp: true });
  assert.equal(bolt11, minted.at(-1));
  const decoded = decodeInvoice(bolt11);
  assert.equal(decoded.amountMsat, 21_000);
  assert.match(decoded.descriptionHash, /^[0-9a-f]{64}$/);
  assert.equal(double.asked.at(-1), 21_000, 'the callback was asked for the amount in msat');
});

test('a lying or broken server is refused with a reason code', async () => {
  const cases: [LnurlMode, string][] = [
    ['wrong-amount', 'LNURL_INVOICE_MISMATCH'],
    ['wrong-hash', 'LNURL_INVOICE_MISMATCH'],
    ['expired', 'LNURL_INVOICE_MISMATCH'],
    ['refuse', 'LNURL_REFUSED'],
    ['http-500', 'LNURL_REFUSED'],
    ['not-pay-request', 'LNURL_BAD_ANSWER'],
    ['bad-invoice', 'LNURL_BAD_ANSWER'],
    ['oversized', 'LNURL_BAD_ANSWER'],
  ];
  for (const [mode, code] of cases) {
    double.mode = mode;
    await assert.rejects(
      invoiceFromLightningAddress(double.address('node1'), 21_000, { allowHttp: true }),
      refusedWith(code),
      mode,
    );
  }
  double.mode = 'honest';
});

test('amounts outside minSendable..maxSendable are refused before the callback is asked', async () => {
  double.mode = 'honest';
  const asked = double.asked.length;
  for (const amount of [999, 10_000_001])
    await assert.rejects(
      invoiceFromLightningAddress(double.address('node1'), amount, { allowHttp: true }),
      refusedWith('LNURL_AMOUNT_OUT_OF_RANGE'),
    );
  assert.equal(double.asked.length, asked);
});

test('https is required unless the caller allows http; unreachable hosts and bad addresses have codes', async () => {
  double.mode = 'honest';
  await assert.rejects(
    invoiceFromLightningAddress(double.address('node1'), 21_000, { timeoutMs: 2000 }),
    refusedWith('LNURL_UNREACHABLE'),
    'https:// to a plain-http server does not connect',
  );
  await assert.rejects(
    invoiceFromLightningAddress('node1@127.0.0.1:1', 21_000, { allowHttp: true, timeoutMs: 2000 }),
    refusedWith('LNURL_UNREACHABLE'),
  );
  for (const bad of [
    'no-at-sign',
    'a@',
    '@host',
    'a b@host',
    'a@host/path',
    'a@host?x=1',
    `${'u'.repeat(65)}@h`,
  ])
    assert.throws(() => parseLightningAddress(bad), refusedWith('LNURL_BAD_ADDRESS'), bad);
  assert.deepEqual(parseLightningAddress(' Node.One@Example.COM '), {
    user: 'node.one',
    domain: 'example.com',
  });
});
