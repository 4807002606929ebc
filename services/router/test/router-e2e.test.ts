// Router + node with the embedded demo model on 127.0.0.1, driven by the official openai client.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { nodeConfigSchema, type RunningNode, startNode } from '@fed-ai/node';
import { decodeEnvelopeHeader, KIND, outputSha256, verifyEnvelope } from '@fed-ai/protocol';
import OpenAI from 'openai';
import { routerConfigSchema } from '../src/config';
import { type RunningRouter, startRouter } from '../src/router';

const dir = mkdtempSync(join(tmpdir(), 'fedai-router-e2e-'));
let router: RunningRouter;
let node: RunningNode;
let client: OpenAI;
const MODEL = 'fedai-demo-noise-v1';

before(async () => {
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: join(dir, 'router'),
      ALLOW_PRIVATE_ENDPOINTS: 'true',
    }),
  );
  node = await startNode(
    nodeConfigSchema.parse({
      NODE_PORT: '0',
      DATA_DIR: join(dir, 'node'),
      DEMO_MODEL: 'true',
      ROUTER_URLS: router.url,
      HEARTBEAT_INTERVAL_S: '1',
    }),
  );
  for (let i = 0; i < 1000 && router.registry.views(MODEL).length === 0; i++)
    await new Promise((r) => setTimeout(r, 50));
  const { key } = await router.createApiKey({ name: 'e2e' });
  client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: key, maxRetries: 0 });
});

after(async () => {
  await node.close();
  await router.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the official openai client gets a non-streamed completion with usage matching the node metering and a verifiable receipt', async () => {
  const { data, response } = await client.chat.completions
    .create({
      model: MODEL,
      messages: [{ role: 'user', content: 'Say hello' }],
      max_tokens: 12,
      temperature: 0,
    })
    .withResponse();
  const text = data.choices[0]?.message.content ?? '';
  const receipt = JSON.parse(decodeEnvelopeHeader(response.headers.get('x-fedai-receipt')!));
  const verified = await verifyEnvelope(receipt, {
    me: router.pubkey,
    kinds: [KIND.meteringRecord],
    nowS: receipt.created_at,
  });
  assert.ok(verified.ok);
  if (!verified.ok) return;
  assert.equal(verified.envelope.pubkey, node.pubkey);
  assert.equal(verified.payload.output_sha256, outputSha256(text));
  assert.equal(data.usage?.completion_tokens, verified.payload.tokens_out);
  assert.equal(data.usage?.prompt_tokens, verified.payload.tokens_in);
  assert.equal(data.usage?.completion_tokens, 12);
  assert.ok(Number(response.headers.get('x-fedai-overhead-ms')) >= 0);
});

test('the official openai client streams a completion; the final chunks carry usage and the receipt', async () => {
  const stream = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: 'Count to five' }],
    max_tokens: 10,
    temperature: 0,
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = '';
  let contentChunks = 0;
  let usage: OpenAI.CompletionUsage | undefined;
  let fedai: { receipt: unknown; cost_msat: number } | undefined;
  for await (const chunk of stream) {
    const delta = chunk.choices[0]?.delta?.content;
    if (delta) {
      text += delta;
      contentChunks += 1;
    }
    if (chunk.usage) usage = chunk.usage;
    const extra = (chunk as unknown as { fedai?: typeof fedai }).fedai;
    if (extra) fedai = extra;
  }
  assert.ok(contentChunks >= 2, 'tokens arrived as separate chunks');
  assert.equal(usage?.completion_tokens, 10);
  assert.ok(fedai);
  const verified = await verifyEnvelope(fedai!.receipt, {
    me: router.pubkey,
    kinds: [KIND.meteringRecord],
    nowS: (fedai!.receipt as { created_at: number }).created_at,
  });
  assert.ok(verified.ok);
  if (!verified.ok) return;
  assert.equal(verified.payload.output_sha256, outputSha256(text));
  assert.equal(verified.payload.tokens_out, usage?.completion_tokens);
  assert.equal(fedai!.cost_msat, verified.payload.cost_msat);
});

test('GET /v1/models lists the model with price and context; bad key and bad body answer in OpenAI error shape', async () => {
  const models = await client.models.list();
  const model = models.data.find((m) => m.id === MODEL) as unknown as {
    price: unknown;
    context_window: number;
    nodes: number;
  };
  assert.ok(model);
  assert.equal(model.nodes, 1);
  assert.ok(model.context_window > 0);
  const bad = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: 'fedai_sk_wrong', maxRetries: 0 });
  await assert.rejects(
    bad.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }),
    (e: unknown) => {
      return e instanceof OpenAI.APIError && e.status === 401 && e.code === 'UNAUTHORIZED';
    },
  );
  await assert.rejects(client.chat.completions.create({ model: MODEL, messages: [] }), (e: unknown) => {
    return e instanceof OpenAI.APIError && e.status === 400 && e.code === 'INVALID_REQUEST';
  });
  await assert.rejects(
    client.chat.completions.create({ model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e: unknown) => {
      // The message names what is served, so the caller can fix the model id at once.
      return (
        e instanceof OpenAI.APIError &&
        e.status === 404 &&
        e.code === 'MODEL_NOT_FOUND' &&
        e.message.includes(`Served: "${MODEL}"`)
      );
    },
  );
});
