// The SDK with its own Nostr key against the router's signed native API (/infer, /infer/stream, /quote).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createEnvelope, generateSecretKey, KIND, maxCostMsat, promptTokensBound } from '@fed-ai/protocol';
import { FedAiClient, FedAiSdkError, verifyReceipt } from '@fed-ai/sdk';
import { routerConfigSchema } from '../src/config';
import { type RunningRouter, startRouter } from '../src/router';
import { SigningNodeDouble } from './signing-node-double';

const dir = mkdtempSync(join(tmpdir(), 'fedai-native-'));
let router: RunningRouter;
const node = new SigningNodeDouble();
let client: FedAiClient;

before(async () => {
  router = await startRouter(
    routerConfigSchema.parse({ ROUTER_PORT: '0', DATA_DIR: dir, ALLOW_PRIVATE_ENDPOINTS: 'true' }),
  );
  await node.start();
  await node.register(router.url, router.pubkey);
  client = new FedAiClient({ routerUrl: router.url, secretKey: generateSecretKey() });
});

after(async () => {
  await client.close();
  await router.close();
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

const messages = [{ role: 'user' as const, content: 'hello' }];

test('signed chat: the router-signed answer verifies and carries the node receipt', async () => {
  const result = await client.chat({ model: 'double-model', messages, maxTokens: 8 });
  assert.equal(result.text, 'Hello from the double');
  assert.equal(result.node, node.pubkey);
  assert.equal(result.usage.completion_tokens, 4);
  const verdict = await verifyReceipt(result.receipt, {
    text: result.text,
    messages,
    node: node.pubkey,
    router: router.pubkey,
  });
  assert.equal(verdict.ok, true);
  assert.equal(result.costMsat, verdict.ok ? verdict.record.cost_msat : -1);
});

test('signed stream: deltas arrive one by one, then the signed final answer', async () => {
  const deltas: string[] = [];
  let text = '';
  for await (const event of client.chatStream({ model: 'double-model', messages, maxTokens: 8 })) {
    if (event.type === 'delta') deltas.push(event.text);
    else text = event.result.text;
  }
  assert.deepEqual(deltas, ['Hello', ' from', ' the', ' double']);
  assert.equal(text, deltas.join(''));
});

test('signed quote names a node and a maximum cost', async () => {
  const quote = await client.quote({ model: 'double-model', messages, maxTokens: 100 });
  assert.equal(quote.node, node.pubkey);
  // The quote is what the router would reserve: the sound prompt bound at the node's prices.
  assert.equal(quote.max_cost_msat, maxCostMsat(promptTokensBound(messages), 100, node.price, 512));
  assert.equal(quote.candidates, 1);
});

test('typed errors: unknown model and a replayed envelope', async () => {
  await assert.rejects(
    client.chat({ model: 'nope', messages, maxTokens: 4 }),
    (e: unknown) => e instanceof FedAiSdkError && e.code === 'MODEL_NOT_FOUND' && e.status === 404,
  );
  const key = generateSecretKey();
  const envelope = createEnvelope(
    KIND.inferenceRequest,
    { request_id: 'replay-test-0001', model: 'double-model', messages, max_tokens: 4, stream: false },
    { audience: router.pubkey },
    key,
  );
  const first = await fetch(`${router.url}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(envelope),
  });
  assert.equal(first.status, 200);
  const again = await fetch(`${router.url}/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(envelope),
  });
  assert.equal(((await again.json()) as { error: { code: string } }).error.code, 'REPLAYED');
});
