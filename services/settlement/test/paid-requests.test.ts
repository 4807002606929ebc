// Paid requests end to end: settlement (ledger + internal Lightning) + router + a node, on
// 127.0.0.1. A tab with exactly enough for N requests gets 10N concurrent ones.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { verifyLedger } from '@fed-ai/ledger';
import {
  createEnvelope,
  createNip98Header,
  generateSecretKey,
  KIND,
  publicKeyOf,
  secretKeyHex,
} from '@fed-ai/protocol';
import { type RunningRouter, routerConfigSchema, startRouter } from '@fed-ai/router';
import OpenAI from 'openai';
import { SigningNodeDouble } from '../../router/test/signing-node-double';
import { settlementConfigSchema } from '../src/config';
import { type RunningSettlement, startSettlement } from '../src/settlement';

const dir = mkdtempSync(join(tmpdir(), 'fedai-paid-'));
const routerKey = generateSecretKey();
const operatorKey = generateSecretKey();
let settlement: RunningSettlement;
let router: RunningRouter;
const node = new SigningNodeDouble();
const N = 8;
const PER_REQUEST_MSAT = 125; // 4 output tokens at 31,250 msat per 1k; input free

before(async () => {
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
      FAUCET: 'true',
      ROUTER_FEE_BPS: '1000',
    }),
  );
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      ROUTER_KEY: secretKeyHex(routerKey),
      DATA_DIR: join(dir, 'router'),
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      SETTLEMENT_URL: settlement.url,
      OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
    }),
  );
  node.price = { input_msat_per_1k: 0, output_msat_per_1k: 31_250 };
  await node.start();
  assert.equal((await node.register(router.url, router.pubkey)).status, 200);
});

after(async () => {
  await router.close();
  await settlement.close();
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function newClient() {
  const key = await router.createApiKey({ name: 'paid', requests_per_min: 10_000, max_parallel: 1000 });
  return { key, client: new OpenAI({ baseURL: `${router.url}/v1`, apiKey: key.key, maxRetries: 0 }) };
}

const tabs = (key: string, path: string, body?: unknown) =>
  fetch(`${router.url}/v1/tabs/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));

/** Charges are captured just after each answer is sent: wait until no hold is left. */
async function settledTab(key: string) {
  for (let i = 0; i < 1000; i++) {
    const tab = await tabs(key, 'me');
    if (tab.body.reserved_msat === 0) return tab;
    await new Promise((r) => setTimeout(r, 50));
  }
  return tabs(key, 'me');
}

const ask = (client: OpenAI) =>
  client.chat.completions.create({
    model: 'double-model',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 4,
  });

test('no tab: 402 in OpenAI shape telling how to top up', async () => {
  const { client } = await newClient();
  await assert.rejects(
    ask(client),
    (e: unknown) =>
      e instanceof OpenAI.APIError &&
      e.status === 402 &&
      e.code === 'INSUFFICIENT_BALANCE' &&
      /top up/i.test(e.message),
  );
});

test('a tab with exactly N requests of credit: 10N concurrent requests, exactly N answered, balance 0, ledger verifies', async () => {
  const { key, client } = await newClient();
  const invoice = await tabs(key.key, 'topup', { amount_msat: N * PER_REQUEST_MSAT });
  assert.equal(invoice.status, 200);
  assert.match(String(invoice.body.bolt11), /^lnbcrt/);
  const paid = await tabs(key.key, 'faucet', { bolt11: invoice.body.bolt11 });
  assert.equal(paid.status, 200);
  // Paying the same invoice again credits nothing more.
  await tabs(key.key, 'faucet', { bolt11: invoice.body.bolt11 });
  assert.equal((await tabs(key.key, 'me')).body.balance_msat, N * PER_REQUEST_MSAT);

  const results = await Promise.allSettled(Array.from({ length: 10 * N }, () => ask(client)));
  const answered = results.filter((r) => r.status === 'fulfilled');
  const refused = results.filter(
    (r) => r.status === 'rejected' && (r.reason as InstanceType<typeof OpenAI.APIError>).status === 402,
  );
  assert.equal(answered.length, N);
  assert.equal(refused.length, 9 * N);

  const tab = await settledTab(key.key);
  assert.equal(tab.body.balance_msat, 0);
  assert.equal(tab.body.reserved_msat, 0);
  const charges = tab.body.charges as {
    amount_msat: number;
    node: string;
    node_msat: number;
    router_msat: number;
    receipt: { pubkey: string };
  }[];
  assert.equal(charges.length, N);
  for (const c of charges) {
    assert.equal(c.amount_msat, PER_REQUEST_MSAT);
    assert.equal(c.node_msat + c.router_msat, c.amount_msat);
    assert.equal(c.receipt.pubkey, node.pubkey, 'each charge rests on the node-signed metering record');
  }
  const report = await verifyLedger(settlement.ledger.db);
  assert.deepEqual(report.problems, []);
  // The router sent its operations with a MAC (settlement's /v1/info offers mac-v1), none signed.
  const metrics = await (await fetch(`${settlement.url}/metrics`)).text();
  assert.match(metrics, /^fedai_settlement_op_envelopes_total\{[^}]*auth="mac"[^}]*\} [1-9]\d*$/m);
  assert.doesNotMatch(metrics, /^fedai_settlement_op_envelopes_total\{[^}]*auth="signature"/m);
});

test('idempotency: a replayed capture and release change nothing; a capture without the node receipt is refused', async () => {
  const { key, client } = await newClient();
  const invoice = await tabs(key.key, 'topup', { amount_msat: 1000 });
  await tabs(key.key, 'faucet', { bolt11: invoice.body.bolt11 });
  const { data } = await client.chat.completions
    .create({ model: 'double-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 4 })
    .withResponse();
  const receipt = (data as unknown as { fedai: { receipt: { content: string } } }).fedai.receipt;
  const opId = (JSON.parse(receipt.content) as { request_id: string }).request_id;
  const before = (await settledTab(key.key)).body.balance_msat;
  const op = (payload: Record<string, unknown>) =>
    fetch(`${settlement.url}/v1/ops`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(
        createEnvelope(
          KIND.settlementRequest,
          payload as never,
          { audience: settlement.pubkey, tags: [['nonce', String(Math.random())]] },
          routerKey,
        ),
      ),
    });
  const again = await op({
    op: 'capture',
    op_id: opId,
    amount_msat: PER_REQUEST_MSAT,
    node: node.pubkey,
    metering: JSON.stringify(receipt),
  });
  assert.equal(again.status, 200, await again.clone().text());
  assert.equal((await op({ op: 'release', op_id: opId })).status, 200);
  assert.equal((await tabs(key.key, 'me')).body.balance_msat, before, 'charged once');
  const forged = await op({
    op: 'capture',
    op_id: opId,
    amount_msat: 1,
    node: publicKeyOf(generateSecretKey()),
    metering: JSON.stringify(receipt),
  });
  assert.equal(((await forged.json()) as { error: { code: string } }).error.code, 'BAD_METERING');
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test('refund: unused balance pays an invoice the client gives, atomically and once', async () => {
  const { key: alice } = await newClient();
  const { key: bob } = await newClient();
  const funding = await tabs(alice.key, 'topup', { amount_msat: 5000 });
  await tabs(alice.key, 'faucet', { bolt11: funding.body.bolt11 });
  // Bob's wallet here is his own tab: an invoice of this system, paid internally.
  const bobInvoice = await tabs(bob.key, 'topup', { amount_msat: 3000 });
  const refund = await tabs(alice.key, 'refund', { bolt11: bobInvoice.body.bolt11 });
  assert.equal(refund.status, 200, JSON.stringify(refund.body));
  assert.equal(refund.body.balance_msat, 2000);
  assert.equal((await tabs(bob.key, 'me')).body.balance_msat, 3000);
  const again = await tabs(alice.key, 'refund', { bolt11: bobInvoice.body.bolt11 });
  assert.equal((again.body as { error: { code: string } }).error.code, 'IDEMPOTENCY_CONFLICT');
  const tooBig = await tabs(bob.key, 'topup', { amount_msat: 9000 });
  const refused = await tabs(alice.key, 'refund', { bolt11: tooBig.body.bolt11 });
  assert.equal((refused.body as { error: { code: string } }).error.code, 'INSUFFICIENT_BALANCE');
  // The refused invoice is still open: paying it from the faucet later works and credits Bob once.
  await tabs(bob.key, 'faucet', { bolt11: tooBig.body.bolt11 });
  assert.equal((await tabs(bob.key, 'me')).body.balance_msat, 12_000);
  assert.equal((await tabs(alice.key, 'me')).body.balance_msat, 2000);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test('spend budget per key: 20 concurrent requests on a day budget of 3 requests -> exactly 3 answered, the rest 429 BUDGET_EXHAUSTED with Retry-After; raising it admits more', async () => {
  const key = await router.createApiKey({
    name: 'budgeted',
    requests_per_min: 10_000,
    max_parallel: 1000,
    budget_msat_per_day: 3 * PER_REQUEST_MSAT,
  });
  const client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: key.key, maxRetries: 0 });
  const invoice = await tabs(key.key, 'topup', { amount_msat: 20 * PER_REQUEST_MSAT });
  await tabs(key.key, 'faucet', { bolt11: invoice.body.bolt11 });
  const results = await Promise.allSettled(Array.from({ length: 20 }, () => ask(client)));
  const answered = results.filter((r) => r.status === 'fulfilled');
  const refused = results.filter((r) => {
    const e = r.status === 'rejected' ? (r.reason as InstanceType<typeof OpenAI.APIError>) : null;
    return e?.status === 429 && e.code === 'BUDGET_EXHAUSTED' && Number(e.headers?.get('retry-after')) >= 1;
  });
  assert.equal(answered.length, 3);
  assert.equal(refused.length, 17);
  const tab = await settledTab(key.key);
  assert.equal(tab.body.balance_msat, 17 * PER_REQUEST_MSAT, 'refused requests charged nothing');
  const budgets = tab.body.budgets as {
    period: string;
    limit_msat: number;
    spent_msat: number;
    held_msat: number;
  }[];
  assert.equal(budgets.length, 1);
  assert.match(budgets[0]!.period, /^d:\d{4}-\d{2}-\d{2}$/);
  assert.equal(budgets[0]!.spent_msat, 3 * PER_REQUEST_MSAT);
  assert.equal(budgets[0]!.held_msat, 0);
  // The operator raises the day budget over NIP-98 (`fedai apikey budget`); another key is refused.
  const url = `${router.url}/admin/apikeys/${key.id}/budgets`;
  const body = JSON.stringify({ budget_msat_per_day: 4 * PER_REQUEST_MSAT });
  const setBudget = (signer: Uint8Array) =>
    fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: createNip98Header(url, 'POST', body, signer),
      },
      body,
    });
  assert.equal((await setBudget(generateSecretKey())).status, 403);
  const raised = await setBudget(operatorKey);
  assert.equal(raised.status, 200);
  assert.equal(
    ((await raised.json()) as { budget_msat_per_day: number }).budget_msat_per_day,
    4 * PER_REQUEST_MSAT,
  );
  await ask(client);
  await assert.rejects(
    ask(client),
    (e: unknown) => e instanceof OpenAI.APIError && e.code === 'BUDGET_EXHAUSTED',
  );
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test('a well-funded payer draws from a spending lease: charged exactly, failures give their bound back, the tab view closes it', async () => {
  const { key, client } = await newClient();
  const FUND = 1_000_000; // far above 10 x a lease of 16 x 128 msat
  const invoice = await tabs(key.key, 'topup', { amount_msat: FUND });
  await tabs(key.key, 'faucet', { bolt11: invoice.body.bolt11 });
  const leaseRows = () =>
    settlement.books['db'].query<{ closed_at_s: number | null }>(
      'SELECT closed_at_s FROM leases WHERE account = $1',
      [`tab:${key.id}`],
    );
  await ask(client); // reserves on the spot and learns the balance: a lease is opened
  for (let i = 0; i < 200 && (await leaseRows()).rows.length === 0; i++)
    await new Promise((r) => setTimeout(r, 20));
  assert.equal((await leaseRows()).rows.length, 1, 'a lease was opened');

  const answers = [];
  for (let round = 0; round < 4; round++)
    answers.push(...(await Promise.all(Array.from({ length: 6 }, () => ask(client)))));
  node.mode = 'fail-before';
  const failed = await Promise.allSettled([ask(client), ask(client)]);
  node.mode = 'ok';
  assert.ok(failed.every((r) => r.status === 'rejected'));
  answers.push(await ask(client));

  const tab = await settledTab(key.key);
  const charges = await settlement.books['db'].query<{ amount_msat: number }>(
    'SELECT amount_msat FROM charges WHERE account = $1',
    [`tab:${key.id}`],
  );
  assert.equal(charges.rows.length, 1 + answers.length, 'one charge per answer, none for the failures');
  assert.ok(charges.rows.every((c) => c.amount_msat === PER_REQUEST_MSAT));
  assert.equal(tab.body.balance_msat, FUND - charges.rows.length * PER_REQUEST_MSAT);
  assert.equal(tab.body.reserved_msat, 0, 'the tab view closed the lease');
  assert.ok(
    (await leaseRows()).rows.every((r) => r.closed_at_s !== null),
    'every lease closed',
  );
  // Most requests drew from the lease: at most the first few reserved one of their own.
  const own = await settlement.books['db'].query<{ n: number }>(
    "SELECT COUNT(*)::int AS n FROM ledger_transfers WHERE id LIKE 'res:%' AND debit_account_id = $1",
    [`tab:${key.id}`],
  );
  assert.ok(own.rows[0]!.n <= 3, `${own.rows[0]!.n} reservations of their own`);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test("a MAC node's record is checked by its MAC at the router and by its signature at settlement: a bad signature is served, never charged, and its reservation goes back", async () => {
  const macNode = new SigningNodeDouble();
  macNode.price = node.price;
  macNode.registersMac = true;
  await macNode.start();
  try {
    assert.equal((await macNode.register(router.url, router.pubkey, 'mac-model')).status, 200);
    const { key, client } = await newClient();
    const invoice = await tabs(key.key, 'topup', { amount_msat: 10 * PER_REQUEST_MSAT });
    await tabs(key.key, 'faucet', { bolt11: invoice.body.bolt11 });
    const askMac = () =>
      client.chat.completions.create({
        model: 'mac-model',
        messages: [{ role: 'user', content: 'hi' }],
        max_tokens: 4,
      });
    await askMac();
    macNode.mode = 'garbled-signature';
    const unpaid = await askMac();
    assert.equal(unpaid.choices[0]!.message.content, 'Hello from the double');
    assert.deepEqual(macNode.auths, ['mac', 'mac']);

    const tab = await settledTab(key.key);
    assert.equal(tab.body.reserved_msat, 0, 'the refused capture gave its reservation back');
    assert.equal(tab.body.balance_msat, 9 * PER_REQUEST_MSAT, 'only the soundly signed answer was charged');
    const earned = await settlement.books['db'].query<{ n: number }>(
      'SELECT COUNT(*)::int AS n FROM charges WHERE node = $1',
      [macNode.pubkey],
    );
    assert.equal(earned.rows[0]!.n, 1);
    // The refusal reaches the node's breaker as a failure.
    const health = () => router.registry.get(macNode.pubkey)!.health.snapshot();
    for (let i = 0; i < 100 && health().consecutiveFailures === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    assert.equal(health().consecutiveFailures, 1);
    assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
  } finally {
    await macNode.stop();
  }
});
