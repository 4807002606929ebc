// Two settlement services on the lnbits backend against one devnet Lightning service (over real
// HTTP on 127.0.0.1, speaking LNbits' REST API): money crosses between them only as a paid BOLT11
// invoice with a real preimage. Settlement A's faucet pays an account invoice from the devnet
// mint wallet; A's account then pays a top-up invoice of settlement B (`/v1/account/payments`),
// which credits the tab at B once B sees the invoice settled. Both ledgers verify; the devnet
// wallets' balances (msat) match the books.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ConfigError, parseConfig, StartError } from '@fed-ai/kit';
import { LnbitsBackend, SettlementAccountBackend, sha256Hex } from '@fed-ai/lightning';
import { FedAiError, generateSecretKey, publicKeyOf } from '@fed-ai/protocol';
import {
  openLightningBackend,
  type RunningSettlement,
  settlementConfigSchema,
  startSettlement,
  verifyLedger,
} from '@fed-ai/settlement';
import { devnetConfigSchema } from '../src/config';
import { type RunningDevnet, startLightningDevnet } from '../src/server';

const ADMIN = 'devnet-admin-key-settlement-test-0123';
const dir = mkdtempSync(join(tmpdir(), 'fedai-lnbits-settlement-'));
const walletKey = generateSecretKey();
let devnet: RunningDevnet;
let devnetUrl = '';
/** The account `svc:<pubkey>` (account-routes.ts) of the wallet key at settlement A. */
let a: RunningSettlement;
let b: RunningSettlement;
let mint: { adminkey: string };
let walletA: { adminkey: string };
let walletB: { adminkey: string };

async function devnetWallet(name: string, isMint = false): Promise<{ adminkey: string }> {
  const response = await fetch(`${devnetUrl}/devnet/wallets`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-admin-key': ADMIN },
    body: JSON.stringify({ name, mint: isMint }),
  });
  assert.equal(response.status, 201);
  return (await response.json()) as { adminkey: string };
}

const lnbitsEnv = (key: string) => ({
  LIGHTNING_BACKEND: 'lnbits',
  LNBITS_URL: devnetUrl,
  LNBITS_ADMIN_KEY: key,
});
const balanceOf = (key: string) => new LnbitsBackend({ url: devnetUrl, apiKey: key }).balanceMsat();

before(async () => {
  devnet = await startLightningDevnet(
    devnetConfigSchema.parse({
      LIGHTNING_DEVNET_PORT: '0',
      DATA_DIR: join(dir, 'devnet'),
      DEVNET_ADMIN_KEY: ADMIN,
    }),
  );
  devnetUrl = devnet.url;
  [mint, walletA, walletB] = await Promise.all([
    devnetWallet('mint', true),
    devnetWallet('settlement-a'),
    devnetWallet('settlement-b'),
  ]);
  [a, b] = await Promise.all([
    startSettlement(
      settlementConfigSchema.parse({
        SETTLEMENT_PORT: '0',
        DATA_DIR: join(dir, 'a'),
        FAUCET: 'true',
        LNBITS_FAUCET_KEY: mint.adminkey,
        SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(walletKey),
        ...lnbitsEnv(walletA.adminkey),
      }),
    ),
    startSettlement(
      settlementConfigSchema.parse({
        SETTLEMENT_PORT: '0',
        DATA_DIR: join(dir, 'b'),
        ...lnbitsEnv(walletB.adminkey),
      }),
    ),
  ]);
});

after(async () => {
  await Promise.all([a?.close(), b?.close()]);
  await devnet?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a top-up invoice of settlement B paid by settlement A over devnet Lightning credits the tab at B once', async () => {
  const account = new SettlementAccountBackend({ url: a.url, secretKey: walletKey });
  // The faucet (devnet mint wallet) pays an invoice of A's account: real devnet money arrives at A.
  const deposit = await account.createInvoice({
    amountMsat: 50_000,
    description: 'deposit',
    expirySeconds: 600,
  });
  assert.equal((await a.books.faucetPay(deposit.bolt11)).creditedMsat, 50_000);
  assert.equal((await a.books.balance(`svc:${publicKeyOf(walletKey)}`)).balanceMsat, 50_000);
  assert.equal(await balanceOf(walletA.adminkey), 50_000);
  assert.equal(await balanceOf(mint.adminkey), -50_000);
  await assert.rejects(
    a.books.faucetPay(deposit.bolt11),
    (e: unknown) => e instanceof FedAiError && e.code === 'ALREADY_PAID',
  );
  assert.equal(await balanceOf(walletA.adminkey), 50_000, 'the faucet paid once');

  // B's top-up invoice for a router tab, paid by A's account.
  const topup = await b.books.openTopup('tab-at-b', 20_000);
  const paid = await account.payInvoice(topup.bolt11, { maxFeeMsat: 0 });
  assert.equal(sha256Hex(paid.preimage), topup.paymentHash);
  assert.equal(paid.amountMsat, 20_000);
  assert.equal(await balanceOf(walletA.adminkey), 30_000);
  assert.equal(await balanceOf(walletB.adminkey), 20_000);
  // B learns of it by polling its open invoices (the sweeper's job), and credits the tab once.
  assert.equal(await b.books.creditSettledTopups(), 1);
  assert.equal(await b.books.creditSettledTopups(), 0);
  assert.equal((await b.books.tab('tab-at-b')).balance_msat, 20_000);
  // Asking again is the same payment: no second debit anywhere.
  const again = await account.payInvoice(topup.bolt11, { maxFeeMsat: 0 });
  assert.equal(again.preimage, paid.preimage);
  assert.equal((await a.books.balance(`svc:${publicKeyOf(walletKey)}`)).balanceMsat, 30_000);
  assert.equal(await balanceOf(walletA.adminkey), 30_000);
  assert.equal((await b.books.tab('tab-at-b')).balance_msat, 20_000);

  // LNbits invoices are whole sat: settlement refuses a fraction instead of rounding.
  await assert.rejects(
    account.createInvoice({ amountMsat: 1500, description: '', expirySeconds: 60 }),
    (e: unknown) => e instanceof Error && /whole sat/.test(e.message),
  );
  for (const s of [a, b]) assert.deepEqual((await verifyLedger(s.ledger.db)).problems, []);
});

test('LIGHTNING_BACKEND=lnbits without its settings is one line naming the variable; the key is never shown', () => {
  const refused = (env: Record<string, string>, variable: string) =>
    assert.throws(
      () => parseConfig(settlementConfigSchema, env),
      (error: unknown) => {
        assert.ok(error instanceof ConfigError);
        assert.equal(error.variable, variable);
        assert.doesNotMatch(error.message, /\n/);
        assert.doesNotMatch(error.message, /secret-admin-key/);
        return true;
      },
    );
  refused({ LIGHTNING_BACKEND: 'lnbits', LNBITS_ADMIN_KEY: 'secret-admin-key' }, 'LNBITS_URL');
  refused({ LIGHTNING_BACKEND: 'lnbits', LNBITS_URL: 'http://127.0.0.1:7400' }, 'LNBITS_ADMIN_KEY');
  refused(
    { LIGHTNING_BACKEND: 'lnbits', LNBITS_URL: 'ftp://x', LNBITS_ADMIN_KEY: 'secret-admin-key' },
    'LNBITS_URL',
  );
  refused(
    {
      LIGHTNING_BACKEND: 'lnbits',
      LNBITS_URL: 'http://x',
      LNBITS_ADMIN_KEY: 'secret-admin-key',
      FAUCET: 'true',
    },
    'LNBITS_FAUCET_KEY',
  );
  assert.equal(parseConfig(settlementConfigSchema, {}).LIGHTNING_BACKEND, 'internal');
});

test('a refused LNbits key or an unreachable LNbits stops start with one line naming the variable', async () => {
  // The lnbits backend needs no database: the start check alone, without a whole settlement.
  const open = (url: string, key: string) =>
    openLightningBackend(
      { LIGHTNING_BACKEND: 'lnbits', LNBITS_URL: url, LNBITS_ADMIN_KEY: key },
      {} as never,
      '',
    );
  await assert.rejects(open(devnetUrl, 'not-a-key-at-all'), (error: unknown) => {
    assert.ok(error instanceof StartError, String(error));
    assert.equal(error.code, 'LNBITS_KEY_REFUSED');
    assert.match(error.message, /LNBITS_ADMIN_KEY/);
    assert.doesNotMatch(error.message, /not-a-key/);
    return true;
  });
  await assert.rejects(open('http://127.0.0.1:1', walletA.adminkey), (error: unknown) => {
    assert.ok(error instanceof StartError, String(error));
    assert.equal(error.code, 'UPSTREAM_UNREACHABLE');
    assert.match(error.message, /LNBITS_URL/);
    return true;
  });
  assert.equal((await open(devnetUrl, walletA.adminkey)).name, 'lnbits');
});
