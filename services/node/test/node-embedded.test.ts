// The embedded runner on the generated demo model: real llama.cpp inference in a child process.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { KIND, outputSha256, verifyEnvelope } from '@fed-ai/protocol';
import { nodeConfigSchema } from '../src/config';
import { DEMO_MODEL_ID, ensureDemoModel, writeDemoModel } from '../src/demo-model';
import { type RunningNode, startNode } from '../src/node';
import { EmbeddedGgufRunner } from '../src/runners/embedded';
import { RunnerError } from '../src/runners/runner';
import { inferenceRequest, postInfer, readEvents, routerPubkey, signedRequest } from './helpers';

const dir = mkdtempSync(join(tmpdir(), 'fedai-embedded-'));
let runner: EmbeddedGgufRunner;
let node: RunningNode;

before(async () => {
  runner = new EmbeddedGgufRunner({
    modelPath: ensureDemoModel(dir),
    modelId: DEMO_MODEL_ID,
    parallel: 2,
    restartBackoffMs: 100,
    demo: true,
  });
  const config = nodeConfigSchema.parse({ NODE_PORT: '0', DATA_DIR: dir, DEMO_MODEL: 'true' });
  node = await startNode(
    { ...config, ROUTER_URLS: ['http://127.0.0.1:9'], ROUTER_PUBKEYS: [routerPubkey] },
    { runner },
  );
});

after(async () => {
  await node.close();
  rmSync(dir, { recursive: true, force: true });
});

test('the demo model is deterministic byte for byte', () => {
  const a = writeDemoModel(join(dir, 'a.gguf'));
  const b = writeDemoModel(join(dir, 'b.gguf'));
  assert.equal(a.sha256, b.sha256);
  assert.equal(
    createHash('sha256')
      .update(readFileSync(join(dir, 'a.gguf')))
      .digest('hex'),
    a.sha256,
  );
  assert.notEqual(writeDemoModel(join(dir, 'c.gguf'), { seed: 2 }).sha256, a.sha256);
});

test('runner: tokens stream one by one, counts come from the tokenizer, temperature 0 repeats', async () => {
  const run = async () => {
    const deltas: string[] = [];
    const generator = runner.generate({
      model: DEMO_MODEL_ID,
      messages: [{ role: 'user', content: 'Say hello' }],
      maxTokens: 12,
      temperature: 0,
      signal: new AbortController().signal,
    });
    let step = await generator.next();
    while (!step.done) {
      deltas.push(step.value.text);
      step = await generator.next();
    }
    return { deltas, result: step.value };
  };
  const first = await run();
  assert.equal(first.result.finishReason, 'length');
  assert.equal(first.result.completionTokens, 12);
  assert.ok(first.deltas.length >= 2, 'streamed in pieces');
  assert.equal(first.deltas.join(''), first.result.text);
  assert.equal(
    first.result.promptTokens,
    await runner.countPromptTokens(DEMO_MODEL_ID, [{ role: 'user', content: 'Say hello' }]),
  );
  const second = await run();
  assert.equal(second.result.text, first.result.text);
});

test('node: signed stream on the demo model; metering matches the runner; signatures verify', async () => {
  const payload = inferenceRequest({ model: DEMO_MODEL_ID, max_tokens: 10 });
  const events = await readEvents(await postInfer(node.url, signedRequest(node.pubkey, payload)));
  const text = events
    .filter((e) => e.type === 'delta')
    .map((e) => e.delta as string)
    .join('');
  const done = events.at(-1)!;
  assert.equal(done.type, 'done');
  const verified = await verifyEnvelope(done.metering, { me: routerPubkey, kinds: [KIND.meteringRecord] });
  assert.ok(verified.ok);
  if (!verified.ok) return;
  assert.equal(verified.payload.tokens_out, 10);
  assert.equal(verified.payload.count_source, 'tokenizer');
  assert.equal(verified.payload.output_sha256, outputSha256(text));
  assert.equal(verified.payload.tokens_in, await runner.countPromptTokens(DEMO_MODEL_ID, payload.messages));
});

test('cancelling mid-stream frees the slot', async () => {
  const abort = new AbortController();
  const response = await postInfer(
    node.url,
    signedRequest(node.pubkey, inferenceRequest({ model: DEMO_MODEL_ID, max_tokens: 1000 })),
    abort.signal,
  );
  const reader = response.body!.getReader();
  await reader.read();
  abort.abort();
  for (let i = 0; i < 1000 && node.admission.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(node.admission.inFlight, 0);
  const next = await postInfer(
    node.url,
    signedRequest(node.pubkey, inferenceRequest({ model: DEMO_MODEL_ID, max_tokens: 4, stream: false })),
  );
  assert.equal(next.status, 200);
});

test('a crash of the model process fails the generation with RUNNER_CRASHED and the runner recovers', async () => {
  const generator = runner.generate({
    model: DEMO_MODEL_ID,
    messages: [{ role: 'user', content: 'Tell a long story' }],
    maxTokens: 100_000,
    signal: new AbortController().signal,
  });
  await generator.next();
  process.kill(runner.childPid!, 'SIGKILL');
  await assert.rejects(
    (async () => {
      for (;;) if ((await generator.next()).done) break;
    })(),
    (e: unknown) => e instanceof RunnerError && e.code === 'RUNNER_CRASHED',
  );
  assert.equal((await runner.health()).ok, false);
  for (let i = 0; i < 1200 && !(await runner.health()).ok; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal((await runner.health()).ok, true, 'restarted');
  assert.equal(runner.restarts, 1);
  const response = await postInfer(
    node.url,
    signedRequest(node.pubkey, inferenceRequest({ model: DEMO_MODEL_ID, max_tokens: 3, stream: false })),
  );
  assert.equal(response.status, 200);
});

test('property: the router-side prompt bound covers the real tokenizer and chat template for any prompt', async () => {
  const { promptTokensBound } = await import('@fed-ai/protocol');
  const fc = (await import('fast-check')).default;
  const roles = fc.constantFrom('system' as const, 'user' as const, 'assistant' as const);
  const text = fc.oneof(
    fc.string({ maxLength: 200 }),
    fc.string({ unit: 'grapheme', maxLength: 120 }),
    fc.string({ unit: fc.constantFrom(' ', 'a', '漢', 'é', '🎉', '\n', 'ﷺ', '<|im_start|>'), maxLength: 80 }),
  );
  const message = fc.record({ role: roles, content: text });
  await fc.assert(
    fc.asyncProperty(fc.array(message, { minLength: 1, maxLength: 6 }), async (messages) => {
      const counted = await runner.countPromptTokens(DEMO_MODEL_ID, messages);
      assert.ok(
        counted <= promptTokensBound(messages),
        `counted ${counted} > bound ${promptTokensBound(messages)}`,
      );
    }),
    { numRuns: 150, seed: 20261129 },
  );
});
