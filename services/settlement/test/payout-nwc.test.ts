// A payout to a node's NWC wallet takes only an invoice for exactly the payout's amount: a wallet
// that answers make_invoice with another amount is refused before anything is held (no payout
// row, no payment, the earnings untouched, the ledger balanced). The wallet is a NIP-47 service
// double on a real relay; the refusal comes from NwcBackend's check of the answer.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { migrate, openDb } from '@fed-ai/kit';
import { Ledger, verifyLedger } from '@fed-ai/ledger';
import { encodeInvoice, InternalLightning } from '@fed-ai/lightning';
import { generateSecretKey, publicKeyOf } from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { BOOKS_MIGRATIONS, Books } from '../src/books';
import { Payouts } from '../src/payouts';
import { startNwcWalletDouble } from './nwc-wallet-double';
import { signedMetering } from './signed-metering';

let relay: RunningRelay;
before(async () => {
  relay = await startRelay({ port: 0 });
});
after(async () => {
  await relay.close();
});

/** Books with 19,000 msat of a node's earnings from four real node-signed captures. */
async function earningNode(tag: string) {
  const db = await openDb({});
  const ledger = await Ledger.open(db);
  const internal = await InternalLightning.open(db, randomBytes(32).toString('hex'));
  await migrate(db, 'settlement-books', BOOKS_MIGRATIONS);
  const books = new Books(db, ledger, internal, { routerFeeBps: 500, faucetEnabled: true });
  await books.init();
  const routerKey = generateSecretKey();
  const nodeKey = generateSecretKey();
  const node = publicKeyOf(nodeKey);
  const payer = `payer-${tag}`;
  await books.faucetPay((await books.openTopup(payer, 20_000)).bolt11);
  for (let i = 0; i < 4; i++) {
    const opId = `req-${tag}-${i}`;
    await books.reserve(opId, payer, 5000, 600);
    const { metering } = signedMetering({
      opId,
      router: publicKeyOf(routerKey),
      nodeKey,
      tokensIn: 100,
      tokensOut: 200,
      price: { input_msat_per_1k: 10_000, output_msat_per_1k: 20_000 },
    });
    await books.capture(opId, node, metering, publicKeyOf(routerKey));
  }
  const payouts = new Payouts(db, ledger, books, {
    secretKey: routerKey,
    routerFeeBps: 500,
    thresholdMsat: 10_000,
    maxFeeBps: 100,
    minFeeMsat: 1000,
    holdBackS: 0,
    holdTimeoutS: 3600,
    allowHttp: true,
    nowS: () => Math.floor(Date.now() / 1000) + 2,
  });
  return { db, node, payouts };
}

/** An invoice of some other Lightning node for `amountMsat`. */
const foreignInvoice = (amountMsat: number, expirySeconds: number) =>
  encodeInvoice({
    amountMsat,
    description: 'fed-ai node payout',
    expirySeconds,
    nodeSecretKeyHex: randomBytes(32).toString('hex'),
  }).bolt11;

async function refusedPayout(tag: string, mint: (amountMsat: number, expiryS: number) => string) {
  const { db, node, payouts } = await earningNode(tag);
  const wallet = await startNwcWalletDouble({ relayUrl: relay.url, mint });
  try {
    await payouts.setDestination(node, { kind: 'nwc', uri: wallet.uri });
    const error = await payouts.payOut(node).then(
      () => assert.fail('the payout went through'),
      (e: unknown) => e as { code?: string; message?: string },
    );
    assert.equal(error.code, 'PAYOUT_DESTINATION_FAILED');
    assert.deepEqual(wallet.asked, [18_000], 'the wallet was asked once, for earnings less the fee');
    assert.equal(await payouts.earningsMsat(node), 19_000, 'nothing held');
    assert.deepEqual((await db.query('SELECT payout_id FROM payouts')).rows, []);
    assert.deepEqual((await db.query('SELECT payment_hash FROM payments')).rows, []);
    assert.deepEqual((await verifyLedger(db)).problems, []);
    return error.message ?? '';
  } finally {
    wallet.close();
    await db.close();
  }
}

test("an NWC wallet's invoice for another amount is refused before anything is held", async () => {
  const message = await refusedPayout('nwc-amount', (amountMsat, expiryS) =>
    foreignInvoice(amountMsat + 1000, expiryS),
  );
  assert.match(message, /an invoice of 19000 msat, not 18000/);
});

test('control: the right amount from a foreign node gets past the amount check', async () => {
  // The internal backend then refuses it for what it is (an invoice of no wallet of this
  // system), which shows the first test was refused for its amount alone.
  const message = await refusedPayout('nwc-right-amount', foreignInvoice);
  assert.match(message, /pays only invoices of this system/);
});
