// LIGHTNING_NETWORK is enforced on every invoice: settlement refuses to pay one for another
// network (refunds, account payments) before anything is held, and refuses a top-up whose
// backend made an invoice for another network than configured (a misconfigured backend fails
// closed instead of handing out invoices nobody expected); a payout's destination invoice for
// another network is refused before anything is held.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { verifyLedger } from '@fed-ai/ledger';
import { decodeInvoice, encodeInvoice, invoiceNetwork } from '@fed-ai/lightning';
import { startLnurlDouble } from '../../../packages/lightning/test/lnurl-double';
import { Books } from '../src/books';
import { settlementConfigSchema } from '../src/config';
import { Payouts } from '../src/payouts';
import { type RunningSettlement, startSettlement } from '../src/settlement';
import { earningNode, testPayoutOptions } from './payout-fixtures';

const others = JSON.parse(
  readFileSync(new URL('./fixtures/invoices-other-networks.json', import.meta.url), 'utf8'),
) as Record<'testnet' | 'signet' | 'mainnet', string>;
const running: { settlement: RunningSettlement; dir: string }[] = [];
after(async () => {
  for (const r of running) {
    await r.settlement.close();
    rmSync(r.dir, { recursive: true, force: true });
  }
});

async function start(network?: string): Promise<RunningSettlement> {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-invoice-network-'));
  const settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: dir,
      FAUCET: 'true',
      ...(network ? { LIGHTNING_NETWORK: network } : {}),
    }),
  );
  running.push({ settlement, dir });
  return settlement;
}

test('the prefix names the network (BOLT 11: lnbc, lntb, lntbs, lnbcrt)', () => {
  assert.equal(invoiceNetwork(others.mainnet), 'mainnet');
  assert.equal(invoiceNetwork(others.testnet), 'testnet');
  assert.equal(invoiceNetwork(others.signet), 'signet');
  assert.equal(invoiceNetwork(`  ${others.testnet.toUpperCase()}`), 'testnet');
  assert.equal(invoiceNetwork('lnbcrt10n1xyz'), 'regtest');
  assert.equal(invoiceNetwork('not an invoice'), null);
  // Signet invoices decode too (the bolt11 package knows only mainnet and testnet by itself).
  assert.equal(decodeInvoice(others.signet).amountMsat, 5000);
  assert.equal(decodeInvoice(others.testnet).amountMsat, 5000);
});

test('a regtest settlement refuses to pay an invoice of another network, holding nothing', async () => {
  const settlement = await start();
  const payer = 'payer-network';
  const topup = await settlement.books.openTopup(payer, 100_000);
  assert.equal(invoiceNetwork(topup.bolt11), 'regtest');
  await settlement.books.faucetPay(topup.bolt11);
  for (const bolt11 of [others.testnet, others.signet, others.mainnet]) {
    await assert.rejects(settlement.books.refund(payer, bolt11), {
      code: 'INVOICE_WRONG_NETWORK',
      status: 400,
    });
    await assert.rejects(settlement.books.accountPay(payer, bolt11, { maxFeeMsat: 10 }), {
      code: 'INVOICE_WRONG_NETWORK',
    });
  }
  assert.deepEqual(await settlement.books.balance(payer), { balanceMsat: 100_000, reservedMsat: 0 });
  const info = await (await fetch(`${settlement.url}/v1/info`)).json();
  assert.equal((info as { lightning_network: string }).lightning_network, 'regtest');
});

test('a backend whose invoices are not on LIGHTNING_NETWORK fails the top-up, recording nothing', async () => {
  // The internal backend makes regtest invoices; this settlement is told it is on testnet.
  const settlement = await start('testnet');
  await assert.rejects(settlement.books.openTopup('payer-mismatch', 50_000), {
    code: 'LIGHTNING_NETWORK_MISMATCH',
    status: 503,
  });
  const rows = await settlement.ledger.db.query('SELECT payment_hash FROM topups');
  assert.deepEqual(rows.rows, []);
});

test("a payout destination's invoice for another network is refused before anything is held", async () => {
  // One database, two views of it: regtest books fund the node's earnings with real captures; the
  // payouts run on books that say LIGHTNING_NETWORK is testnet, so the destination's regtest
  // invoice is for another network.
  const { db, ledger, internal, routerKey, node } = await earningNode('payout-network');
  const testnetBooks = new Books(db, ledger, internal, { routerFeeBps: 500, network: 'testnet' });
  const lnurl = await startLnurlDouble({
    mint: async (amountMsat, descriptionHash) =>
      encodeInvoice({
        amountMsat,
        description: '',
        descriptionHash,
        expirySeconds: 3600,
        nodeSecretKeyHex: randomBytes(32).toString('hex'),
      }).bolt11,
  });
  try {
    const payouts = new Payouts(db, ledger, testnetBooks, testPayoutOptions(routerKey));
    await payouts.setDestination(node, { kind: 'lightning_address', address: lnurl.address('node') });
    await assert.rejects(payouts.payOut(node), {
      code: 'PAYOUT_DESTINATION_FAILED',
      message: /another network than testnet/,
    });
    assert.deepEqual(lnurl.asked, [18_000], 'the destination was asked once');
    assert.equal(await payouts.earningsMsat(node), 19_000, 'nothing held');
    assert.deepEqual((await db.query('SELECT payout_id FROM payouts')).rows, []);
    assert.deepEqual((await db.query('SELECT payment_hash FROM payments')).rows, []);
    assert.deepEqual((await verifyLedger(db)).problems, []);
  } finally {
    await lnurl.close();
    await db.close();
  }
});
