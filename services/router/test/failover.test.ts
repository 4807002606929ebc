import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, beforeEach, test } from 'node:test';
import OpenAI from 'openai';
import { routerConfigSchema } from '../src/config';
import { type RunningRouter, startRouter } from '../src/router';
import { SigningNodeDouble } from './signing-node-double';

const dir = mkdtempSync(join(tmpdir(), 'fedai-failover-'));
let router: RunningRouter;
let client: OpenAI;
const first = new SigningNodeDouble();
const second = new SigningNodeDouble();

before(async () => {
  // rng 0 always picks the first of near-equal candidates, so the cheaper node is tried first.
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: dir,
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      FIRST_TOKEN_TIMEOUT_MS: '500',
    }),
    { rng: () => 0 },
  );
  first.price = { input_msat_per_1k: 100, output_msat_per_1k: 100 };
  second.price = { input_msat_per_1k: 5000, output_msat_per_1k: 5000 };
  await first.start();
  await second.start();
  assert.equal((await first.register(router.url, router.pubkey)).status, 200);
  assert.equal((await second.register(router.url, router.pubkey)).status, 200);
  const { key } = await router.createApiKey({ name: 'failover' });
  client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: key, maxRetries: 0 });
});

after(async () => {
  await router.close();
  await first.stop();
  await second.stop();
  rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
  first.requests = 0;
  second.requests = 0;
  // Fresh breakers: re-registering keeps health, so wait out nothing; modes reset.
  first.mode = 'ok';
  second.mode = 'ok';
  first.lastRequestId = undefined;
  second.lastRequestId = undefined;
});

const ask = (extra: Record<string, unknown> = {}) =>
  client.chat.completions.create({
    model: 'double-model',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 8,
    provider: { sort: 'price' },
    ...extra,
  } as OpenAI.ChatCompletionCreateParamsNonStreaming);

test('the first candidate fails before the first token: the answer comes from the second', async () => {
  first.mode = 'fail-before';
  const { data, response } = await ask().withResponse();
  assert.equal(data.choices[0]?.message.content, 'Hello from the double');
  assert.equal(response.headers.get('x-fedai-node'), second.pubkey);
  assert.equal(first.requests, 1);
  assert.equal(second.requests, 1);
});

test('a node that fails after the first token ends the stream with a clean error and no second answer', async () => {
  second.mode = 'ok';
  first.mode = 'fail-after';
  // The first node's breaker may be open from the previous test; make sure it is the one chosen.
  const stream = await client.chat.completions.create({
    model: 'double-model',
    messages: [{ role: 'user', content: 'hi' }],
    max_tokens: 8,
    stream: true,
    provider: { only: [first.pubkey] },
  } as OpenAI.ChatCompletionCreateParamsStreaming);
  let text = '';
  await assert.rejects(async () => {
    for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
  }, /NODE_FAILED|died mid-stream|after output/);
  assert.equal(text, 'Hello from');
  assert.equal(second.requests, 0, 'no failover after output was sent');
});

test('a bad metering signature is refused and counted against the node; a bad output hash too', async () => {
  second.mode = 'bad-signature';
  await assert.rejects(
    ask({ provider: { only: [second.pubkey] } }),
    (e: unknown) => e instanceof OpenAI.APIError && e.code === 'BAD_NODE_SIGNATURE',
  );
  const nodes = (await (await fetch(`${router.url}/nodes`)).json()) as {
    nodes: { id: string; health: { consecutiveFailures: number } }[];
  };
  assert.ok(nodes.nodes.find((n) => n.id === second.pubkey)!.health.consecutiveFailures >= 1);
  second.mode = 'bad-hash';
  await assert.rejects(
    ask({ provider: { only: [second.pubkey] } }),
    (e: unknown) => e instanceof OpenAI.APIError && e.code === 'BAD_METERING',
  );
});

test("the caller's x-request-id follows the request to the node and comes back", async () => {
  const response = await fetch(`${router.url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${(client as unknown as { apiKey: string }).apiKey}`,
      'content-type': 'application/json',
      'x-request-id': 'client-req-123456',
    },
    body: JSON.stringify({
      model: 'double-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 4,
    }),
  });
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('x-request-id'), 'client-req-123456');
  assert.equal(first.lastRequestId ?? second.lastRequestId, 'client-req-123456');
});

test('no eligible node: the 503 says which constraint removed the serving nodes', async () => {
  const before = first.requests + second.requests;
  await assert.rejects(ask({ provider: { only: ['ab'.repeat(32)] } }), (e: unknown) => {
    assert.ok(e instanceof OpenAI.APIError && e.status === 503 && e.code === 'NO_ELIGIBLE_NODE');
    assert.match(e.message, /\(\d+ serving: NOT_IN_ONLY \d+\)/);
    return true;
  });
  assert.equal(first.requests + second.requests, before, 'no node was asked');
});

test('allow_fallbacks: false tries only the first candidate', async () => {
  const third = new SigningNodeDouble();
  third.price = { input_msat_per_1k: 1, output_msat_per_1k: 1 };
  third.mode = 'fail-before';
  await third.start();
  await third.register(router.url, router.pubkey);
  try {
    await assert.rejects(
      ask({ provider: { sort: 'price', allow_fallbacks: false } }),
      (e: unknown) => e instanceof OpenAI.APIError && e.status === 502,
    );
    assert.equal(third.requests, 1);
    assert.equal(first.requests + second.requests, 0);
  } finally {
    await third.stop();
  }
});
