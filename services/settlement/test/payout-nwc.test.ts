// A payout to a node's NWC wallet takes only an invoice for exactly the payout's amount: a wallet
// that answers make_invoice with another amount is refused before anything is held (no payout
// row, no payment, the earnings untouched, the ledger balanced). The wallet is a NIP-47 service
// double on a real relay; the refusal comes from NwcBackend's check of the answer.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, test } from 'node:test';
import { verifyLedger } from '@fed-ai/ledger';
import { encodeInvoice } from '@fed-ai/lightning';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { Payouts } from '../src/payouts';
import { startNwcWalletDouble } from './nwc-wallet-double';
import { earningNode, testPayoutOptions } from './payout-fixtures';

let relay: RunningRelay;
before(async () => {
  relay = await startRelay({ port: 0 });
});
after(async () => {
  await relay.close();
});

/** An invoice of some other Lightning node for `amountMsat`. */
const foreignInvoice = (amountMsat: number, expirySeconds: number) =>
  encodeInvoice({
    amountMsat,
    description: 'fed-ai node payout',
    expirySeconds,
    nodeSecretKeyHex: randomBytes(32).toString('hex'),
  }).bolt11;

async function refusedPayout(tag: string, mint: (amountMsat: number, expiryS: number) => string) {
  const { db, ledger, books, routerKey, node } = await earningNode(tag);
  const payouts = new Payouts(db, ledger, books, testPayoutOptions(routerKey));
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
