// Money attacks (issue #9 items 4, 5, 6, 9, 18; issue #10 settlement checks): settlement, a router
// talking to it through an outage proxy, and signing node doubles, all real on 127.0.0.1.
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { verifyLedger } from '@fed-ai/ledger';
import {
  costMsat,
  createEnvelope,
  createNip98Header,
  finalizeEvent,
  generateSecretKey,
  KIND,
  outputSha256,
  promptSha256,
  publicKeyOf,
  secretKeyHex,
} from '@fed-ai/protocol';
import { type RunningRouter, routerConfigSchema, startRouter } from '@fed-ai/router';
import { FedAiClient } from '@fed-ai/sdk';
import OpenAI from 'openai';
import { SigningNodeDouble } from '../../router/test/signing-node-double';
import { settlementConfigSchema } from '../src/config';
import { type RunningSettlement, startSettlement } from '../src/settlement';
import { OutageProxy } from './outage-proxy';

const dir = mkdtempSync(join(tmpdir(), 'fedai-money-'));
const routerKey = generateSecretKey();
const routerPubkey = publicKeyOf(routerKey);
const proxy = new OutageProxy();
const node = new SigningNodeDouble();
let settlement: RunningSettlement;
let router: RunningRouter;

const routerEnv = {
  ROUTER_PORT: '0',
  ROUTER_KEY: secretKeyHex(routerKey),
  DATA_DIR: join(dir, 'router'),
  ALLOW_PRIVATE_ENDPOINTS: 'true',
  PROBE_INTERVAL_S: '0',
  OUTBOX_RETRY_MS: '100',
  CANCEL_GRACE_MS: '3000',
};

before(async () => {
  await proxy.start();
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      SETTLEMENT_ROUTER_PUBKEYS: routerPubkey,
      SETTLEMENT_PUBLIC_URL: proxy.url,
      FAUCET: 'true',
      ROUTER_FEE_BPS: '1000',
    }),
  );
  proxy.target = settlement.url;
  router = await startRouter(routerConfigSchema.parse({ ...routerEnv, SETTLEMENT_URL: proxy.url }));
  node.price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
  await node.start();
  assert.equal((await node.register(router.url, router.pubkey)).status, 200);
});

after(async () => {
  await router.close();
  await settlement.close();
  await node.stop();
  await proxy.stop();
  rmSync(dir, { recursive: true, force: true });
});

const tabs = (key: string, path: string, body?: unknown) =>
  fetch(`${router.url}/v1/tabs/${path}`, {
    method: body === undefined ? 'GET' : 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));

interface Charge {
  request_id: string;
  amount_msat: number;
  node_msat: number;
  receipt: { content: string };
}

async function fundedClient(amountMsat: number, limits: { max_parallel?: number } = {}) {
  const key = await router.createApiKey({
    name: 'money',
    requests_per_min: 10_000,
    max_parallel: 100,
    ...limits,
  });
  const invoice = await tabs(key.key, 'topup', { amount_msat: amountMsat });
  assert.equal((await tabs(key.key, 'faucet', { bolt11: invoice.body.bolt11 })).status, 200);
  return {
    key: key.key,
    client: new OpenAI({ baseURL: `${router.url}/v1`, apiKey: key.key, maxRetries: 0 }),
  };
}

/** Waits until no hold is left on the tab and returns it. */
async function settledTab(key: string) {
  for (let i = 0; i < 1200; i++) {
    const tab = await tabs(key, 'me');
    if (tab.body.reserved_msat === 0) return tab.body as { balance_msat: number; charges: Charge[] };
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('a hold stayed on the tab');
}

const signedCost = (charge: Charge) =>
  JSON.parse(charge.receipt.content) as { cost_msat: number; finish_reason: string; tokens_out: number };

test('the charge is exactly the node-signed cost, even for prompts whose tokens outnumber chars/3', async () => {
  const { key, client } = await fundedClient(100_000);
  node.tokensInFor = (messages) => messages.reduce((n, m) => n + [...m.content].length, 0); // 1 token per character
  try {
    const answer = await client.chat.completions.create({
      model: 'double-model',
      messages: [{ role: 'user', content: '漢字'.repeat(250) }],
      max_tokens: 4,
    });
    const fedai = (
      answer as unknown as { fedai: { request_id: string; cost_msat: number; receipt: { content: string } } }
    ).fedai;
    const record = JSON.parse(fedai.receipt.content) as { cost_msat: number; tokens_in: number };
    assert.equal(record.tokens_in, 500);
    assert.equal(fedai.cost_msat, record.cost_msat, 'the answer says what the node signed');
    const tab = await settledTab(key);
    assert.equal(tab.charges[0]!.amount_msat, record.cost_msat, 'charged exactly the signed cost');
    // One id names the answer, the receipt and the tab charge.
    assert.equal(fedai.request_id, (JSON.parse(fedai.receipt.content) as { request_id: string }).request_id);
    assert.equal(tab.charges[0]!.request_id, fedai.request_id);
    assert.equal(tab.balance_msat, 100_000 - record.cost_msat);
  } finally {
    node.tokensInFor = undefined;
  }
});

test('a streamed answer abandoned by the client is paid for what the node generated up to the cancel', async () => {
  const { key } = await fundedClient(100_000);
  node.tokens = Array.from({ length: 200 }, (_, i) => ` t${i}`);
  node.tokenDelayMs = 50;
  const cancelsBefore = node.cancels;
  try {
    const controller = new AbortController();
    const response = await fetch(`${router.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      body: JSON.stringify({
        model: 'double-model',
        messages: [{ role: 'user', content: 'count' }],
        max_tokens: 300,
        stream: true,
      }),
      signal: controller.signal,
    });
    const reader = response.body!.getReader();
    let seen = '';
    while (!seen.includes(' t3')) seen += new TextDecoder().decode((await reader.read()).value);
    controller.abort();
    const tab = await settledTabWithCharges(key, 1);
    const record = signedCost(tab.charges[0]!);
    assert.equal(node.cancels, cancelsBefore + 1, 'the router told the node to stop');
    assert.equal(record.finish_reason, 'cancelled');
    assert.ok(record.tokens_out >= 4 && record.tokens_out < 200, `tokens_out ${record.tokens_out}`);
    assert.equal(tab.charges[0]!.amount_msat, record.cost_msat);
    assert.ok(tab.charges[0]!.node_msat > 0, 'the node is paid');
  } finally {
    node.tokens = ['Hello', ' from', ' the', ' double'];
    node.tokenDelayMs = 5;
  }
});

async function settledTabWithCharges(key: string, n: number) {
  for (let i = 0; i < 1200; i++) {
    const tab = await settledTab(key);
    if (tab.charges.length >= n) return tab;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`fewer than ${n} charges`);
}

test('captures are durable: settlement unreachable after the answer, then back; and across a router restart', async () => {
  const { key, client } = await fundedClient(100_000);
  proxy.drop = /capture/;
  const answer = await client.chat.completions.create({
    model: 'double-model',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 4,
  });
  const cost = (answer as unknown as { fedai: { cost_msat: number } }).fedai.cost_msat;
  assert.ok(cost > 0);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(proxy.dropped > 0, 'the capture did not get through');
  const owed = (await tabs(key, 'me')).body as { charges: unknown[]; reserved_msat: number };
  assert.equal(owed.charges.length, 0, 'not charged yet');
  assert.ok(owed.reserved_msat > 0, 'the hold is kept for the owed capture');

  // Restart the router while the capture is still owed: the new process finds it in its outbox.
  await router.close();
  proxy.drop = null;
  router = await startRouter(routerConfigSchema.parse({ ...routerEnv, SETTLEMENT_URL: proxy.url }));
  await node.register(router.url, router.pubkey);
  const tab = await settledTabWithCharges(key, 1);
  assert.equal(tab.charges[0]!.amount_msat, cost, 'charged once, exactly the signed cost');
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test('a reserve that times out at the router but commits at settlement is released, not held', async () => {
  const { key, client } = await fundedClient(50_000);
  proxy.delay = { match: /reserve/, ms: 6_000 }; // the router gives up after 5 s
  try {
    await assert.rejects(
      client.chat.completions.create({
        model: 'double-model',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: 4,
      }),
      (e) => e instanceof OpenAI.APIError && e.code === 'SETTLEMENT_UNAVAILABLE',
    );
  } finally {
    proxy.delay = null;
  }
  const tab = await settledTab(key);
  assert.equal(tab.balance_msat, 50_000, 'the hold was released long before its timeout');
  assert.equal(tab.charges.length, 0);
});

test('a key with max_parallel 1 used strictly one request after another never gets 429', async () => {
  const { client } = await fundedClient(100_000, { max_parallel: 1 });
  for (let i = 0; i < 6; i++) {
    await client.chat.completions.create({
      model: 'double-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 4,
    });
  }
});

// Settlement's own checks on a capture: it recomputes the charge from the node-signed record.
const op = (payload: Record<string, unknown>, signer = routerKey) =>
  fetch(`${settlement.url}/v1/ops`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(
      createEnvelope(
        KIND.settlementRequest,
        payload as never,
        { audience: settlement.pubkey, tags: [['nonce', String(Math.random())]] },
        signer,
      ),
    ),
  }).then(async (r) => ({
    status: r.status,
    body: (await r.json()) as { error?: { code: string }; charged_msat?: number },
  }));

function record(
  opId: string,
  over: Record<string, unknown> = {},
  signer = node.secretKey,
  audience = routerPubkey,
) {
  const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
  const payload = {
    request_id: opId,
    router: routerPubkey,
    model: 'double-model',
    prompt_sha256: promptSha256([{ role: 'user', content: 'x' }]),
    output_sha256: outputSha256('y'),
    tokens_in: 10,
    tokens_out: 10,
    ttft_ms: 1,
    wall_ms: 2,
    price,
    cost_msat: costMsat(10, 10, price),
    finish_reason: 'stop',
    count_source: 'tokenizer',
    ...over,
  };
  return JSON.stringify(
    createEnvelope(KIND.meteringRecord, payload as never, { audience, expiresInS: 0 }, signer),
  );
}

test('settlement charges the record, never the router: lower cost charged as signed; foreign, mismatched or forged records charge nothing', async () => {
  const { key } = await fundedClient(100_000);
  const payer = (await fetch(`${router.url}/v1/tabs/me`, {
    headers: { authorization: `Bearer ${key}` },
  }).then((r) => r.json())) as { account: string };
  const account = payer.account.replace(/^tab:/, '');
  const reserve = async (opId: string) =>
    assert.equal(
      (await op({ op: 'reserve', op_id: opId, account, amount_msat: 5000, timeout_s: 60 })).status,
      200,
    );
  const capture = (opId: string, metering: string, amount = 4000) =>
    op({ op: 'capture', op_id: opId, amount_msat: amount, node: node.pubkey, metering });

  await reserve('rq-lower-cost-1');
  const charged = await capture('rq-lower-cost-1', record('rq-lower-cost-1'));
  assert.equal(charged.status, 200);
  assert.equal(charged.body.charged_msat, 30, 'the record costs 30 msat; the router claimed 4000');

  const refusals: [string, string][] = [
    ['rq-other-router-1', record('rq-other-router-1', { router: publicKeyOf(generateSecretKey()) })],
    [
      'rq-other-audience-1',
      record('rq-other-audience-1', {}, node.secretKey, publicKeyOf(generateSecretKey())),
    ],
    ['rq-other-request-1', record('rq-something-else')],
    ['rq-bad-signature-1', record('rq-bad-signature-1', {}, generateSecretKey())],
    ['rq-bad-cost-1', record('rq-bad-cost-1', { cost_msat: 4000 })],
    [
      'rq-over-reserved-1',
      record('rq-over-reserved-1', {
        tokens_out: 10_000,
        cost_msat: costMsat(10, 10_000, { input_msat_per_1k: 1000, output_msat_per_1k: 2000 }),
      }),
    ],
    ['rq-not-json-1', 'null'],
  ];
  for (const [opId, metering] of refusals) {
    await reserve(opId);
    const answer = await capture(opId, metering);
    assert.equal(answer.status, 400, `${opId}: ${JSON.stringify(answer.body)}`);
    assert.equal(answer.body.error?.code, 'BAD_METERING', opId);
    assert.equal((await op({ op: 'release', op_id: opId })).status, 200);
  }
  const tab = await settledTab(key);
  assert.equal(tab.balance_msat, 100_000 - 30, 'only the honest record was charged');
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test('tab routes count against the key rate limit (item 15): the 6th call in a minute of a 5/min key is 429', async () => {
  const key = await router.createApiKey({ name: 'tab-limit', requests_per_min: 5 });
  const statuses: number[] = [];
  for (let i = 0; i < 8; i++) statuses.push((await tabs(key.key, 'topup', { amount_msat: 1000 })).status);
  assert.deepEqual(statuses, [200, 200, 200, 200, 200, 429, 429, 429]);
});

test('a Nostr-key payer funds its tab with NIP-98 and its signed native requests draw on it', async () => {
  const secret = generateSecretKey();
  const pubkey = publicKeyOf(secret);
  const signed = (path: string, body?: unknown) => {
    const url = `${router.url}/v1/tabs/${path}`;
    const text = body === undefined ? undefined : JSON.stringify(body);
    return fetch(url, {
      method: text === undefined ? 'GET' : 'POST',
      headers: {
        authorization: createNip98Header(url, text === undefined ? 'GET' : 'POST', text, secret),
        'content-type': 'application/json',
      },
      ...(text === undefined ? {} : { body: text }),
    }).then(async (r) => ({ status: r.status, body: (await r.json()) as Record<string, unknown> }));
  };
  const invoice = await signed('topup', { amount_msat: 50_000 });
  assert.equal(invoice.status, 200, JSON.stringify(invoice.body));
  assert.equal((await signed('faucet', { bolt11: invoice.body.bolt11 })).status, 200);
  const before = await signed('me');
  assert.equal(before.body.account, `tab:${pubkey}`);
  assert.equal(before.body.balance_msat, 50_000);

  const sdk = new FedAiClient({ routerUrl: router.url, secretKey: secret, maxAttempts: 1 });
  const answer = await sdk.chat({
    model: 'double-model',
    messages: [{ role: 'user', content: 'hi' }],
    maxTokens: 4,
  });
  let after = await signed('me');
  for (let i = 0; i < 1000 && after.body.reserved_msat !== 0; i++) {
    await new Promise((r) => setTimeout(r, 50));
    after = await signed('me');
  }
  assert.equal(
    after.body.balance_msat,
    50_000 - answer.costMsat,
    'the signed request was paid from the Nostr tab',
  );
  // A stranger's header for another URL, or no credentials, is refused.
  const bare = await fetch(`${router.url}/v1/tabs/me`);
  assert.equal(bare.status, 401);
});

test('a batch answers each op on its own: a bad record fails alone, a repeated capture charges once; oversized, nested or replayed batches are refused whole', async () => {
  const { key } = await fundedClient(100_000);
  const payer = (await fetch(`${router.url}/v1/tabs/me`, {
    headers: { authorization: `Bearer ${key}` },
  }).then((r) => r.json())) as { account: string };
  const account = payer.account.replace(/^tab:/, '');
  type Item = { op_id: string; ok: boolean; status?: number; code?: string; charged_msat?: number };
  // Signed without the schema check createEnvelope makes, as a hostile router would.
  const batch = async (ops: Record<string, unknown>[], tags: string[][] = [['nonce', randomUUID()]]) => {
    const envelope = finalizeEvent(
      {
        kind: KIND.settlementRequest,
        created_at: Math.floor(Date.now() / 1000),
        tags: [['p', settlement.pubkey], ...tags],
        content: JSON.stringify({ op: 'batch', ops }),
      },
      routerKey,
    );
    const r = await fetch(`${settlement.url}/v1/ops`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(envelope),
    });
    return { status: r.status, body: (await r.json()) as { results?: Item[]; error?: { code: string } } };
  };
  const ids = ['rq-batch-good-1', 'rq-batch-forged-1', 'rq-batch-released-1'];
  const reserved = await batch(
    ids.map((id) => ({ op: 'reserve', op_id: id, account, amount_msat: 5000, timeout_s: 60 })),
  );
  assert.equal(reserved.status, 200, JSON.stringify(reserved.body));
  assert.deepEqual(
    reserved.body.results?.map((r) => [r.op_id, r.ok]),
    ids.map((id) => [id, true]),
  );
  const capture = (opId: string, metering: string) => ({
    op: 'capture',
    op_id: opId,
    amount_msat: 4000,
    node: node.pubkey,
    metering,
  });
  const mixed = await batch([
    capture('rq-batch-good-1', record('rq-batch-good-1')),
    capture('rq-batch-forged-1', record('rq-batch-forged-1', {}, generateSecretKey())),
    capture('rq-batch-good-1', record('rq-batch-good-1')),
    { op: 'release', op_id: 'rq-batch-released-1' },
    capture('rq-batch-never-reserved-1', record('rq-batch-never-reserved-1')),
  ]);
  assert.equal(mixed.status, 200, JSON.stringify(mixed.body));
  const results = mixed.body.results ?? [];
  assert.deepEqual(
    results.map((r) => [r.op_id, r.ok, r.code ?? r.charged_msat ?? null, r.status ?? 200]),
    [
      ['rq-batch-good-1', true, 30, 200],
      ['rq-batch-forged-1', false, 'BAD_METERING', 400],
      ['rq-batch-good-1', true, 30, 200],
      ['rq-batch-released-1', true, null, 200],
      ['rq-batch-never-reserved-1', false, 'NOT_FOUND', 404],
    ],
  );
  // The forged record's reservation is still held: release it alone, as a router would.
  assert.equal((await op({ op: 'release', op_id: 'rq-batch-forged-1' })).status, 200);
  const tab = await settledTab(key);
  assert.equal(tab.balance_msat, 100_000 - 30, 'one charge of the signed cost, however often it was sent');
  assert.equal(tab.charges.filter((c) => c.request_id === 'rq-batch-good-1').length, 1);

  const release = (i: number) => ({ op: 'release', op_id: `rq-batch-many-${i}` });
  const tooMany = await batch(Array.from({ length: 65 }, (_, i) => release(i)));
  assert.equal(tooMany.status, 400);
  assert.equal(tooMany.body.error?.code, 'BAD_PAYLOAD');
  const nested = await batch([{ op: 'batch', ops: [release(1)] }]);
  assert.equal(nested.status, 400, 'a batch inside a batch is refused');
  const offload = await batch([
    { op: 'capture_offload', op_id: 'rq-batch-off-1', amount_msat: 1, peer: 'a'.repeat(64), result: '{}' },
  ]);
  assert.equal(offload.status, 400, 'offload captures go alone');
  assert.equal((await batch([])).status, 400, 'an empty batch is refused');

  const once = [['nonce', 'batch-replay']];
  assert.equal((await batch([release(2)], once)).status, 200);
  const replayed = await batch([release(2)], once);
  assert.equal(replayed.body.error?.code, 'REPLAYED', 'a batch envelope is replay-protected like any other');
  const stranger = await op({ op: 'batch', ops: [release(3)] }, generateSecretKey());
  assert.equal(stranger.status, 403);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test('concurrent captures share batch envelopes; a batch lost on the way is sent again from the outbox and charged once', async () => {
  const { key, client } = await fundedClient(1_000_000);
  // The first batch that starts with a capture never reaches settlement (the connection is cut).
  proxy.dropOnce = /\\"op\\":\\"batch\\",\\"ops\\":\[\{\\"op\\":\\"capture/;
  // Every capture answer is held back 300 ms, so the captures that finish meanwhile queue behind
  // it and go out together (the router's lane sends one envelope at a time): they meet in a batch
  // however slow the machine, not only when they happen to fall within one 50 ms linger.
  proxy.delay = { match: /\\"op\\":\\"capture/, ms: 300 };
  try {
    const answers = [];
    // Two waves of 8: as many as the node double takes at once (4 running, 4 queued).
    for (let wave = 0; wave < 2; wave++)
      answers.push(
        ...(await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            client.chat.completions.create({
              model: 'double-model',
              messages: [{ role: 'user', content: `batch me ${wave} ${i}` }],
              max_tokens: 4,
            }),
          ),
        )),
      );
    for (let i = 0; i < 200 && proxy.dropOnce !== null; i++) await new Promise((r) => setTimeout(r, 50));
    assert.equal(proxy.dropOnce, null, 'captures met in a batch envelope (and one was cut off)');
    proxy.delay = null;
    const signed = answers.map(
      (a) => (a as unknown as { fedai: { request_id: string; cost_msat: number } }).fedai,
    );
    // The batch cut off waits in the router's outbox after its lease closed (the hold is gone,
    // its charges not there yet): wait for them, then check none came twice.
    const tab = await settledTabWithCharges(key, 16);
    assert.equal(tab.charges.length, 16, 'every answer charged, none twice');
    assert.equal(new Set(tab.charges.map((c) => c.request_id)).size, 16, 'no answer charged twice');
    for (const charge of tab.charges) {
      const mine = signed.find((s) => s.request_id === charge.request_id);
      assert.ok(mine, `charge ${charge.request_id} is for an answer the client got`);
      assert.equal(charge.amount_msat, mine.cost_msat, 'charged exactly the signed cost');
    }
    const total = signed.reduce((n, s) => n + s.cost_msat, 0);
    assert.equal(tab.balance_msat, 1_000_000 - total);
    assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
  } finally {
    proxy.dropOnce = null;
    proxy.delay = null;
  }
});
