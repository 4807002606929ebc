// NwcBackend (packages/lightning) against the real wallet fleet as its NIP-47 wallet: a relay, a
// settlement service (the fleet's bank, with the devnet faucet) and the fleet, all in-process on
// 127.0.0.1. Invoices, a settlement top-up paid once (also when asked twice or by a new adapter),
// msat balances, policy refusals and the kill switch as definite errors, a dead relay as not
// definite, and the connection secret never in a message. (In wallet-fleet, not in
// packages/lightning: the fleet depends on lightning, so the other way round would be a cycle.)

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { verifyLedger } from '@fed-ai/ledger';
import {
  decodeInvoice,
  type Invoice,
  LightningPaymentError,
  NwcBackend,
  NwcCallError,
} from '@fed-ai/lightning';
import {
  checkPayoutStatement,
  createNip98Header,
  generateSecretKey,
  type PayoutStatement,
  publicKeyOf,
  secretKeyHex,
} from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '@fed-ai/settlement';
import { signedMetering } from '../../settlement/test/signed-metering';
import { walletFleetConfigSchema } from '../src/config';
import { type RunningWalletFleet, startWalletFleet } from '../src/wallet-fleet';

const dir = mkdtempSync(join(tmpdir(), 'fedai-nwc-up-'));
const ownerKey = generateSecretKey();
const owner = publicKeyOf(ownerKey);
const fleetKey = generateSecretKey();
/** A second fleet (another owner's wallets, same bank): the node's own wallet for payouts. */
const nodeFleetKey = generateSecretKey();
let relay: RunningRelay;
let settlement: RunningSettlement;
let fleet: RunningWalletFleet;
let nodeFleet: RunningWalletFleet;
const backends: NwcBackend[] = [];

before(async () => {
  relay = await startRelay({ port: 0 });
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      FAUCET: 'true',
      SETTLEMENT_WALLET_PUBKEYS: `${publicKeyOf(fleetKey)},${publicKeyOf(nodeFleetKey)}`,
    }),
  );
  fleet = await startWalletFleet(
    walletFleetConfigSchema.parse({
      WALLET_FLEET_PORT: '0',
      WALLET_FLEET_KEY: secretKeyHex(fleetKey),
      FLEET_OWNER_PUBKEYS: owner,
      RELAY_URLS: relay.url,
      SETTLEMENT_URL: settlement.url,
      DATA_DIR: join(dir, 'fleet'),
      SWEEP_INTERVAL_MS: '200',
    }),
  );
  nodeFleet = await startWalletFleet(
    walletFleetConfigSchema.parse({
      WALLET_FLEET_PORT: '0',
      WALLET_FLEET_KEY: secretKeyHex(nodeFleetKey),
      FLEET_OWNER_PUBKEYS: owner,
      RELAY_URLS: relay.url,
      SETTLEMENT_URL: settlement.url,
      DATA_DIR: join(dir, 'node-fleet'),
      SWEEP_INTERVAL_MS: '200',
    }),
  );
});

after(async () => {
  for (const b of backends) await b.destroy();
  await upstreamSettlement?.close();
  await nodeFleet.close();
  await fleet.close();
  await settlement.close();
  await relay.close();
  rmSync(dir, { recursive: true, force: true });
});

async function ownerCall(method: 'GET' | 'POST', path: string, body?: unknown, base = fleet.url) {
  const url = `${base}${path}`;
  const text = body === undefined ? undefined : JSON.stringify(body);
  const response = await fetch(url, {
    method,
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(url, method, text, ownerKey),
    },
    ...(text === undefined ? {} : { body: text }),
  });
  const type = response.headers.get('content-type') ?? '';
  return {
    status: response.status,
    body: (type.startsWith('application/json') ? await response.json() : await response.text()) as Record<
      string,
      unknown
    >,
  };
}

async function until(what: string, check: () => Promise<boolean>, limitMs = 10_000): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < limitMs) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`waited ${limitMs} ms for ${what}`);
}

const sha256 = (hex: string) => createHash('sha256').update(Buffer.from(hex, 'hex')).digest('hex');
const tabBalance = async (payer: string) => (await settlement.books.tab(payer)).balance_msat;

/** A permissive agent wallet (every method, a cap of 60,000 msat), funded, and its NWC URI. */
async function agentWallet(name: string, amountMsat: number, base = fleet.url) {
  const call = (method: 'GET' | 'POST', path: string, payload?: unknown) =>
    ownerCall(method, path, payload, base);
  const created = await call('POST', '/v1/wallets', {
    name,
    policy: {
      version: 1,
      mode: 'live',
      maxPaymentMsat: 60_000,
      budgets: [
        { id: 'daily', limitMsat: 1_000_000, period: { kind: 'calendar', unit: 'day', timeZone: 'UTC' } },
      ],
      methods: [
        'pay_invoice',
        'make_invoice',
        'lookup_invoice',
        'list_transactions',
        'get_balance',
        'get_info',
      ],
    },
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const id = created.body.id as string;
  const treasury = await call('POST', '/v1/treasury/invoices', { amount_msat: amountMsat });
  await settlement.books.faucetPay(treasury.body.bolt11 as string);
  await until(
    'treasury credited',
    async () => ((await call('GET', '/v1/treasury')).body.balance_msat as number) >= amountMsat,
  );
  const moved = await call('POST', `/v1/wallets/${id}/fund`, {
    amount_msat: amountMsat,
    op_id: `fund-${name}`,
  });
  assert.equal(moved.status, 200, JSON.stringify(moved.body));
  const connection = await call('POST', `/v1/wallets/${id}/connections`, { name: `${name}-upstream` });
  const uri = connection.body.uri as string;
  const secret = new URL(uri.replace('nostr+walletconnect:', 'http:')).searchParams.get('secret') ?? '';
  assert.match(secret, /^[0-9a-f]{64}$/);
  return { id, uri, secret };
}

function backendFor(uri: string, options: { timeoutMs?: number } = {}): NwcBackend {
  const backend = new NwcBackend({
    url: uri,
    timeoutMs: options.timeoutMs ?? 5_000,
    payTimeoutMs: 10_000,
    pollIntervalMs: 100,
  });
  backends.push(backend);
  return backend;
}

let alice: { id: string; uri: string; secret: string };
let upstreamSettlement: RunningSettlement | undefined;
let aliceBackend: NwcBackend;

test('make_invoice: an invoice of the fleet (through its settlement), settled when paid, with onSettled', async () => {
  alice = await agentWallet('alice', 100_000);
  aliceBackend = backendFor(alice.uri);
  assert.equal(aliceBackend.walletPubkey, fleet.pubkey);
  assert.equal(await aliceBackend.balanceMsat(), 100_000);

  const heard: Invoice[] = [];
  const unsubscribe = aliceBackend.onSettled((invoice) => heard.push(invoice));
  const invoice = await aliceBackend.createInvoice({
    amountMsat: 7_000,
    description: 'upstream',
    expirySeconds: 600,
  });
  assert.match(invoice.bolt11, /^lnbcrt/);
  assert.equal(invoice.state, 'open');
  assert.equal(invoice.amountMsat, 7_000);
  assert.equal(decodeInvoice(invoice.bolt11).paymentHash, invoice.paymentHash);
  assert.equal(invoice.expiresAtS - invoice.createdAtS, 600);
  assert.equal((await aliceBackend.lookupInvoice(invoice.paymentHash))?.state, 'open');
  // Settlement (the fleet's bank) pays it: the fleet credits the wallet.
  await settlement.books.faucetPay(invoice.bolt11);
  await until(
    'settled',
    async () => (await aliceBackend.lookupInvoice(invoice.paymentHash))?.state === 'settled',
  );
  const settled = await aliceBackend.lookupInvoice(invoice.paymentHash);
  assert.equal(sha256(settled?.preimage ?? ''), invoice.paymentHash);
  await until('onSettled', async () => heard.some((i) => i.paymentHash === invoice.paymentHash));
  unsubscribe();
  assert.equal(await aliceBackend.balanceMsat(), 107_000, 'msat, exactly');
  assert.equal(await aliceBackend.lookupInvoice('ab'.repeat(32)), null, 'unknown hash: null');
  assert.equal(
    (await aliceBackend.lookupPayment(invoice.paymentHash)).state,
    'unknown',
    'an invoice is no payment',
  );
});

test('pay a settlement top-up: the preimage hashes to the payment hash; asked twice (and by a new adapter) it is paid once', async () => {
  const topup = await settlement.books.openTopup('key_nwc_up', 10_000);
  const paid = await aliceBackend.payInvoice(topup.bolt11, { maxFeeMsat: 0 });
  assert.equal(paid.paymentHash, topup.paymentHash);
  assert.equal(sha256(paid.preimage), topup.paymentHash);
  assert.equal(paid.amountMsat, 10_000);
  assert.equal(paid.feeMsat, 0);
  assert.equal(await tabBalance('key_nwc_up'), 10_000);
  assert.equal(await aliceBackend.balanceMsat(), 97_000);

  const again = await aliceBackend.payInvoice(topup.bolt11, { maxFeeMsat: 0 });
  assert.equal(again.preimage, paid.preimage);
  // A new adapter (a restarted settlement) asks again: answered from the wallet, not sent.
  const restarted = backendFor(alice.uri);
  assert.equal((await restarted.payInvoice(topup.bolt11, { maxFeeMsat: 0 })).preimage, paid.preimage);
  assert.equal(await tabBalance('key_nwc_up'), 10_000, 'the tab is credited once');
  assert.equal(await aliceBackend.balanceMsat(), 97_000, 'the wallet is debited once');
  const rows = await fleet.fleet.db.query<{ n: string }>(
    'SELECT count(*) AS n FROM wf_payments WHERE payment_hash = $1',
    [topup.paymentHash],
  );
  assert.equal(Number(rows.rows[0]?.n), 1, 'one payment row in the fleet');
  const status = await aliceBackend.lookupPayment(topup.paymentHash);
  assert.equal(status.state, 'succeeded');
  assert.equal(status.state === 'succeeded' && status.preimage, paid.preimage);
  assert.deepEqual((await fleet.verifyLedger()).problems, []);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test('a policy refusal (over the per-payment cap) and too little money are definite, with nothing paid', async () => {
  const tooBig = await settlement.books.openTopup('key_nwc_cap', 70_000);
  await assert.rejects(aliceBackend.payInvoice(tooBig.bolt11, { maxFeeMsat: 0 }), (e: unknown) => {
    assert.ok(e instanceof LightningPaymentError);
    assert.equal(e.code, 'INSUFFICIENT_BALANCE');
    assert.equal(e.definite, true);
    assert.match(e.message, /QUOTA_EXCEEDED: OVER_PAYMENT_CAP/);
    assert.doesNotMatch(e.message, new RegExp(alice.secret));
    return true;
  });
  const poor = await agentWallet('poor', 2_000);
  const poorBackend = backendFor(poor.uri);
  const bill = await settlement.books.openTopup('key_nwc_poor', 5_000);
  await assert.rejects(
    poorBackend.payInvoice(bill.bolt11, { maxFeeMsat: 0 }),
    (e: unknown) => e instanceof LightningPaymentError && e.code === 'INSUFFICIENT_BALANCE' && e.definite,
  );
  assert.equal(await tabBalance('key_nwc_cap'), 0);
  assert.equal(await tabBalance('key_nwc_poor'), 0);
  assert.equal(await poorBackend.balanceMsat(), 2_000);
  // Not an invoice: refused before anything is asked.
  await assert.rejects(
    aliceBackend.payInvoice('lnbcrt1garbage', { maxFeeMsat: 0 }),
    (e: unknown) => e instanceof LightningPaymentError && e.code === 'INVOICE_NOT_FOUND' && e.definite,
  );
});

test('the owner kills the fleet: a definite RESTRICTED refusal; reads still answer; revived, it pays', async () => {
  const killed = await ownerCall('POST', '/v1/switches', { target: { fleet: true }, status: 'killed' });
  assert.equal(killed.status, 200, JSON.stringify(killed.body));
  const bill = await settlement.books.openTopup('key_nwc_kill', 1_000);
  await assert.rejects(aliceBackend.payInvoice(bill.bolt11, { maxFeeMsat: 0 }), (e: unknown) => {
    assert.ok(e instanceof LightningPaymentError);
    assert.equal(e.code, 'BACKEND_ERROR');
    assert.equal(e.definite, true);
    assert.match(e.message, /RESTRICTED: WALLET_KILLED/);
    return true;
  });
  assert.equal(await tabBalance('key_nwc_kill'), 0);
  assert.equal(await aliceBackend.balanceMsat(), 97_000);
  assert.equal(
    (await ownerCall('POST', '/v1/switches', { target: { fleet: true }, status: 'active' })).status,
    200,
  );
  assert.equal(
    sha256((await aliceBackend.payInvoice(bill.bolt11, { maxFeeMsat: 0 })).preimage),
    bill.paymentHash,
  );
  assert.equal(await tabBalance('key_nwc_kill'), 1_000);
});

test('a relay that is down: not definite, nothing paid; the secret never in a message; a bad URI is refused without it', async () => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as { port: number }).port;
  await new Promise<void>((r) => closed.close(() => r()));
  const deadUri = alice.uri.replace(/relay=[^&]+/, `relay=${encodeURIComponent(`ws://127.0.0.1:${port}`)}`);
  const dead = backendFor(deadUri, { timeoutMs: 2_000 });
  const bill = await settlement.books.openTopup('key_nwc_dead', 1_000);
  await assert.rejects(dead.payInvoice(bill.bolt11, { maxFeeMsat: 0 }), (e: unknown) => {
    assert.ok(e instanceof LightningPaymentError);
    assert.equal(e.code, 'BACKEND_ERROR');
    assert.equal(e.definite, false);
    assert.doesNotMatch(e.message, new RegExp(alice.secret));
    return true;
  });
  await assert.rejects(dead.balanceMsat(), (e: unknown) => {
    assert.ok(e instanceof NwcCallError);
    assert.equal(e.code, 'NO_ANSWER');
    assert.equal(e.answered, false);
    assert.doesNotMatch(e.message, new RegExp(alice.secret));
    return true;
  });
  assert.equal(await tabBalance('key_nwc_dead'), 0);
  for (const bad of [
    alice.uri.replace(/secret=[0-9a-f]+/, 'secret=xyz'),
    alice.uri.replace('nostr+walletconnect', 'https'),
    alice.uri.replace(/relay=[^&]+/, 'relay=http%3A%2F%2Fx'),
  ])
    assert.throws(
      () => new NwcBackend({ url: bad }),
      (e: unknown) => e instanceof Error && !e.message.includes(alice.secret) && /NWC URL/.test(e.message),
    );
});

test('settlement on the NWC upstream: a top-up is credited once; a node payout to its own NWC wallet pays once with a statement that checks', async () => {
  const upstream = await agentWallet('settlement-upstream', 50_000);
  const routerKey = generateSecretKey();
  const nodeKey = generateSecretKey();
  const node = publicKeyOf(nodeKey);
  const s1 = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement-nwc'),
      LIGHTNING_BACKEND: 'nwc',
      NWC_URL: upstream.uri,
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
      SETTLEMENT_OPERATOR_PUBKEYS: publicKeyOf(routerKey),
      ROUTER_FEE_BPS: '500',
      PAYOUT_INTERVAL_S: '0',
      PAYOUT_HOLD_BACK_S: '0',
      PAYOUT_THRESHOLD_MSAT: '1000',
      PAYOUT_MIN_FEE_MSAT: '0',
      PAYOUT_ALLOW_PRIVATE: 'true',
      SWEEP_INTERVAL_MS: '200',
    }),
  );
  upstreamSettlement = s1;
  // The top-up: settlement's invoice is the upstream wallet's (make_invoice); paid from outside.
  const topup = await s1.books.openTopup('nwc-payer', 20_000);
  await settlement.books.faucetPay(topup.bolt11);
  await until('credited', async () => (await s1.books.tab('nwc-payer')).balance_msat === 20_000);
  assert.equal(await s1.books.creditSettledTopups(), 0, 'a second sweep credits nothing');
  assert.equal((await s1.books.tab('nwc-payer')).balance_msat, 20_000);

  // A charge on a node-signed record: 1,000 in / 2,000 out tokens at 1/2 msat per token = 5,000.
  const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
  const opId = `req-nwc-payout-${process.pid}`;
  await s1.books.reserve(opId, 'nwc-payer', 6000, 600);
  const { record, metering } = signedMetering({
    opId,
    router: publicKeyOf(routerKey),
    nodeKey,
    tokensIn: 1000,
    tokensOut: 2000,
    price,
  });
  assert.equal((await s1.books.capture(opId, node, metering, publicKeyOf(routerKey))).chargedMsat, 5000);

  // The node's own wallet: an agent of the second fleet, asked for the invoice over NIP-47.
  const nodeWallet = await agentWallet('node-wallet', 1000, nodeFleet.url);
  const nodeBackend = backendFor(nodeWallet.uri);
  const walletBefore = await nodeBackend.balanceMsat();
  const call = async (key: Uint8Array, method: 'GET' | 'PUT' | 'POST', path: string, body?: unknown) => {
    const text = body === undefined ? undefined : JSON.stringify(body);
    const response = await fetch(`${s1.url}${path}`, {
      method,
      headers: {
        'content-type': 'application/json',
        authorization: createNip98Header(`${s1.url}${path}`, method, text, key),
      },
      ...(text === undefined ? {} : { body: text }),
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };
  const set = await call(nodeKey, 'PUT', '/v1/payouts/destination', { kind: 'nwc', uri: nodeWallet.uri });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  assert.ok(!JSON.stringify(set.body).includes(nodeWallet.secret), 'the secret is never answered');
  const run = await call(routerKey, 'POST', '/v1/admin/payouts/run', {});
  const outcome = (run.body.outcomes as { node: string; state: string; amount_msat: number }[])[0];
  assert.equal(outcome?.state, 'succeeded', JSON.stringify(run.body));
  // 4,750 earned; fee budget 1 % = 48; whole sats of the rest: 4,000.
  assert.equal(outcome.amount_msat, 4000);
  await until(
    'the node wallet is credited',
    async () => (await nodeBackend.balanceMsat()) === walletBefore + 4000,
  );
  const again = await call(routerKey, 'POST', '/v1/admin/payouts/run', {});
  assert.equal((again.body.outcomes as { state: string }[])[0]?.state, 'skipped', 'nothing paid twice');

  const listed = await call(nodeKey, 'GET', '/v1/payouts');
  const payouts = listed.body.payouts as { state: string; statement: { content: string } | null }[];
  assert.equal(payouts.length, 1);
  const statement = JSON.parse(payouts[0]!.statement!.content) as PayoutStatement;
  assert.deepEqual(checkPayoutStatement(statement, node, new Map([[metering.id, record]])), []);
  assert.equal(statement.fee_msat, 0, 'an invoice of the same bank routes for nothing');
  assert.equal(listed.body.earnings_msat, 750, 'the unspent fee budget stays for the next payout');
  for (const db of [s1.ledger.db, settlement.ledger.db])
    assert.deepEqual((await verifyLedger(db)).problems, []);
  assert.deepEqual((await fleet.verifyLedger()).problems, []);
  assert.deepEqual((await nodeFleet.verifyLedger()).problems, []);
});
