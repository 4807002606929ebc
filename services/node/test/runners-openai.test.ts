import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { OpenAiHttpRunner } from '../src/runners/openai-http';
import { type GenerateParams, RunnerError } from '../src/runners/runner';
import { OpenAiUpstreamDouble } from './upstream-double';

const upstream = new OpenAiUpstreamDouble();
before(() => upstream.start());
after(() => upstream.stop());

function runner(timeouts = {}) {
  return new OpenAiHttpRunner({ baseUrl: upstream.url, modelMap: { public: 'upstream-model' }, timeouts });
}

async function drain(r: OpenAiHttpRunner, params: Partial<GenerateParams> = {}) {
  const deltas: string[] = [];
  const generator = r.generate({
    model: 'public',
    messages: [{ role: 'user', content: 'hi' }],
    maxTokens: 8,
    signal: new AbortController().signal,
    ...params,
  });
  let step = await generator.next();
  while (!step.done) {
    deltas.push(step.value.text);
    step = await generator.next();
  }
  return { deltas, result: step.value };
}

test('streams deltas as they arrive and passes the upstream usage through; maps the model id', async () => {
  upstream.mode = 'stream';
  const r = runner();
  const { deltas, result } = await drain(r);
  assert.deepEqual(deltas, ['Hi', ' there', '!']);
  assert.deepEqual(result, {
    finishReason: 'stop',
    promptTokens: 11,
    completionTokens: 3,
    text: 'Hi there!',
  });
  assert.equal(upstream.lastBody?.model, 'upstream-model');
  assert.equal(upstream.lastBody?.stream, true);
  assert.deepEqual(await r.listModels(), [{ id: 'public', contextWindow: 4096 }]);
  await r.stop();
});

test('tokens that arrive in one chunk go on as one delta; usage and finish still read', async () => {
  upstream.mode = 'one-write';
  const r = runner();
  const { deltas, result } = await drain(r);
  assert.deepEqual(deltas, ['Hi there!']);
  assert.deepEqual(result, {
    finishReason: 'stop',
    promptTokens: 11,
    completionTokens: 3,
    text: 'Hi there!',
  });
  await r.stop();
});

test('an event that is JSON but not an object => RUNNER_UPSTREAM_ERROR naming no internals', async () => {
  upstream.mode = 'not-an-object';
  const r = runner();
  await assert.rejects(
    drain(r),
    (e: unknown) =>
      e instanceof RunnerError &&
      e.code === 'RUNNER_UPSTREAM_ERROR' &&
      e.message === 'upstream sent an event that is not a JSON object',
  );
  await r.stop();
});

test('a multi-byte character split across network chunks arrives whole', async () => {
  upstream.mode = 'split-utf8';
  upstream.tokens = ['Café', ' é', ' 🎉'];
  try {
    const r = runner();
    const { deltas, result } = await drain(r);
    assert.deepEqual(deltas, ['Café', ' é', ' 🎉']);
    assert.equal(result.text, 'Café é 🎉');
    await r.stop();
  } finally {
    upstream.tokens = ['Hi', ' there', '!'];
  }
});

test('upstream 500 => RUNNER_UPSTREAM_ERROR with the status', async () => {
  upstream.mode = 'error500';
  const r = runner();
  await assert.rejects(
    drain(r),
    (e: unknown) => e instanceof RunnerError && e.code === 'RUNNER_UPSTREAM_ERROR' && e.status === 500,
  );
  await r.stop();
});

test('upstream hang => RUNNER_TIMEOUT (first-token timeout)', async () => {
  upstream.mode = 'hang';
  const r = runner({ firstTokenMs: 300 });
  await assert.rejects(drain(r), (e: unknown) => e instanceof RunnerError && e.code === 'RUNNER_TIMEOUT');
  await r.stop();
});

test('no usage block and no /tokenize => a clear error, never a character estimate', async () => {
  upstream.mode = 'no-usage';
  const r = runner();
  await assert.rejects(
    drain(r),
    (e: unknown) => e instanceof RunnerError && /no token usage/.test(e.message),
  );
  await r.stop();
});

test('abort cancels the upstream request (the upstream sees its connection closed)', async () => {
  upstream.mode = 'stream';
  upstream.tokens = Array.from({ length: 50 }, (_, i) => `t${i} `);
  upstream.delayMs = 30;
  const before = upstream.closedConnections;
  const r = runner();
  const abort = new AbortController();
  const generator = r.generate({
    model: 'public',
    messages: [{ role: 'user', content: 'hi' }],
    maxTokens: 50,
    signal: abort.signal,
  });
  await generator.next();
  abort.abort();
  let step = await generator.next().catch((e: unknown) => e);
  while (step && typeof step === 'object' && 'done' in step && !step.done)
    step = await generator.next().catch((e: unknown) => e);
  for (let i = 0; i < 500 && upstream.closedConnections === before; i++)
    await new Promise((res) => setTimeout(res, 20));
  assert.equal(upstream.closedConnections, before + 1);
  await r.stop();
});
