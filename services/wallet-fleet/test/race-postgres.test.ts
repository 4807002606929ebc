// Budgets and the kill switch under concurrency, across two wallet-fleet instances (two database
// pools, two NWC services on one relay) on one real PostgreSQL, paying real invoices at a real
// settlement service. Also: a payment left in flight by a crash is resolved once after a restart.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startPostgres } from '@fed-ai/kit';
import { verifyLedger } from '@fed-ai/ledger';
import { type LightningBackend, LightningPaymentError } from '@fed-ai/lightning';
import { generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '@fed-ai/settlement';
import { walletFleetConfigSchema } from '../src/config';
import type { PayOutcome } from '../src/payments';
import { type RunningWalletFleet, type StartWalletFleetOptions, startWalletFleet } from '../src/wallet-fleet';
import { fundedAgentWallet } from './fleet-setup';

const dir = mkdtempSync(join(tmpdir(), 'fedai-wf-race-'));
const ownerKey = generateSecretKey();
const owner = publicKeyOf(ownerKey);
const fleetKey = generateSecretKey();
let pg: Awaited<ReturnType<typeof startPostgres>>;
let relay: RunningRelay;
let settlement: RunningSettlement;
const replicas: RunningWalletFleet[] = [];

const start = (name: string, options: StartWalletFleetOptions = {}) =>
  startWalletFleet(
    walletFleetConfigSchema.parse({
      WALLET_FLEET_PORT: '0',
      WALLET_FLEET_KEY: secretKeyHex(fleetKey),
      FLEET_OWNER_PUBKEYS: owner,
      RELAY_URLS: relay.url,
      SETTLEMENT_URL: settlement.url,
      DATA_DIR: join(dir, name),
      DATABASE_URL: pg.url,
      SWEEP_INTERVAL_MS: '200',
    }),
    options,
  );

before(async () => {
  pg = await startPostgres();
  relay = await startRelay({ port: 0 });
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      FAUCET: 'true',
      SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(fleetKey),
    }),
  );
  replicas.push(await start('a'), await start('b'));
});

after(async () => {
  for (const r of replicas) await r.close().catch(() => {});
  await settlement.close();
  await relay.close();
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
});

const fundedWallet = async (name: string, fundMsat: number, dailyMsat: number) =>
  (await fundedAgentWallet(replicas[0]!.fleet, settlement, owner, { name, fundMsat, dailyMsat })).walletId;

const invoices = (payer: string, n: number, msat: number) =>
  Promise.all(Array.from({ length: n }, () => settlement.books.openTopup(payer, msat)));

test('100 concurrent payments across two replicas with a day budget for exactly 10: exactly 10 paid, budget at zero, ledgers verify', async () => {
  const walletId = await fundedWallet('racer', 50_000, 10_000);
  const bills = await invoices('key_race', 100, 1_000);
  const outcomes = await Promise.all(
    bills.map((bill, i) => replicas[i % 2]!.payments.pay(walletId, bill.bolt11, 'system')),
  );
  const paid = outcomes.filter((o) => o.kind === 'paid');
  const overBudget = outcomes.filter((o) => o.kind === 'denied' && o.decision.code === 'OVER_BUDGET');
  assert.equal(
    paid.length,
    10,
    JSON.stringify(outcomes.filter((o) => o.kind !== 'paid' && o.kind !== 'denied')),
  );
  assert.equal(overBudget.length, 90);
  assert.equal((await settlement.books.tab('key_race')).balance_msat, 10_000);
  assert.equal(await replicas[1]!.fleet.balanceMsat(`wallet:${walletId}`), 40_000);
  // The day's allowance account is spent to zero by the posted holds.
  const allowance = await replicas[0]!.fleet.db.query<{
    credits_posted: string;
    debits_posted: string;
    debits_pending: string;
  }>('SELECT credits_posted, debits_posted, debits_pending FROM ledger_accounts WHERE id LIKE $1', [
    `budget:${walletId}:daily:%`,
  ]);
  assert.equal(allowance.rows.length, 1);
  assert.equal(Number(allowance.rows[0]!.credits_posted) - Number(allowance.rows[0]!.debits_posted), 0);
  assert.equal(Number(allowance.rows[0]!.debits_pending), 0);
  assert.deepEqual((await replicas[0]!.verifyLedger()).problems, []);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test('kill switch during a race across replicas: no payment is allowed after the kill commits', async () => {
  const walletId = await fundedWallet('killed', 100_000, 100_000);
  const bills = await invoices('key_kill', 60, 1_000);
  // 20 payments start, then the kill (from the other replica), then 40 more: all race for the wallet.
  const pay = (i: number) => replicas[i % 2]!.payments.pay(walletId, bills[i]!.bolt11, 'system');
  const racing: Promise<PayOutcome>[] = bills.slice(0, 20).map((_, i) => pay(i));
  const kill = replicas[1]!.fleet.setSwitch(owner, { wallet: walletId }, 'killed');
  racing.push(...bills.slice(20).map((_, i) => pay(i + 20)));
  await kill;
  const outcomes = await Promise.all(racing);
  // The kill's own audit entry: appended in the kill's transaction, so its seq is its commit's place.
  let killSeq = 0;
  for await (const e of replicas[0]!.fleet.audit.entries())
    if (e.action === 'kill' && e.subject === `wallet:${walletId}`) killSeq = e.seq;
  assert.ok(killSeq > 0);
  const paid = outcomes.filter((o) => o.kind === 'paid').length;
  const killed = outcomes.filter((o) => o.kind === 'denied' && o.decision.code === 'WALLET_KILLED').length;
  assert.equal(paid + killed, 60);
  assert.ok(killed > 0, 'the kill stopped part of the race');
  // Every allowed decision for this wallet comes before the kill in the audit chain.
  let allowedAfterKill = 0;
  let allowed = 0;
  for await (const e of replicas[0]!.fleet.audit.entries()) {
    if (e.action !== 'decision' || e.subject !== walletId || e.data.outcome !== 'allow') continue;
    allowed += 1;
    if (e.seq > killSeq) allowedAfterKill += 1;
  }
  assert.equal(allowedAfterKill, 0);
  assert.equal(allowed, paid);
  assert.equal((await settlement.books.tab('key_kill')).balance_msat, paid * 1_000);
  const late = await settlement.books.openTopup('key_kill', 1_000);
  const after = await replicas[0]!.payments.pay(walletId, late.bolt11, 'system');
  assert.equal(after.kind === 'denied' && after.decision.code, 'WALLET_KILLED');
  assert.deepEqual((await replicas[0]!.verifyLedger()).problems, []);
});

test('a crash after the hold and before the answer: after a restart the payment is resolved from the backend once', async () => {
  const walletId = await fundedWallet('crashy', 10_000, 10_000);
  const [bill] = await invoices('key_crash', 1, 2_000);
  // A backend that pays and then "crashes" before answering: the money moved, the fleet never heard.
  const real = replicas[0]!.fleet.backend;
  const crashing: LightningBackend = {
    ...real,
    name: real.name,
    createInvoice: (i) => real.createInvoice(i),
    lookupInvoice: (h) => real.lookupInvoice(h),
    lookupPayment: (h) => real.lookupPayment(h),
    onSettled: (l) => real.onSettled(l),
    payInvoice: async (b, o) => {
      await real.payInvoice(b, o);
      throw new LightningPaymentError('BACKEND_ERROR', 'connection reset', false);
    },
  };
  let nowS = Math.floor(Date.now() / 1000);
  const crashed = await start('crash', { backend: crashing });
  const outcome = await crashed.payments.pay(walletId, bill!.bolt11, 'system');
  assert.equal(outcome.kind, 'pending');
  await crashed.close();
  assert.equal((await settlement.books.tab('key_crash')).balance_msat, 2_000);
  // The hold stays while the outcome is unknown: the wallet cannot spend it twice.
  assert.equal(await replicas[0]!.fleet.balanceMsat(`wallet:${walletId}`), 8_000);
  nowS += 60;
  const restarted = await start('restart');
  // Recovery looks the payment up only once it is older than any send (PAYMENT_RECOVER_AFTER_S).
  const clock = restarted.fleet as unknown as { nowS: () => number };
  clock.nowS = () => nowS;
  // (A replica's own sweeper may get there first on a slow machine: either way it resolves once.)
  await restarted.payments.recoverPayments();
  assert.equal(await restarted.payments.recoverPayments(), 0);
  const row = await restarted.fleet.db.query<{ state: string }>(
    'SELECT state FROM wf_payments WHERE wallet_id = $1',
    [walletId],
  );
  assert.deepEqual(row.rows, [{ state: 'succeeded' }]);
  assert.equal(await restarted.fleet.balanceMsat(`wallet:${walletId}`), 8_000);
  assert.equal((await settlement.books.tab('key_crash')).balance_msat, 2_000, 'paid exactly once');
  assert.deepEqual((await restarted.verifyLedger()).problems, []);
  await restarted.close();
});
