// Attacks on dispatch and the breaker (issue #9 items 2, 3, 7; issue #10 streaming): each test gets
// its own router, so no test sees another's breaker state.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { FedAiError, maxCostMsat, promptTokensBound } from '@fed-ai/protocol';
import OpenAI from 'openai';
import { routerConfigSchema } from '../src/config';
import { DEFAULT_HEALTH_CONFIG, NodeHealth } from '../src/health';
import { NodeLease } from '../src/lease';
import type { Payments, Reservation } from '../src/payments';
import type { NodeRecord } from '../src/registry';
import { type RunningRouter, startRouter } from '../src/router';
import { SigningNodeDouble } from './signing-node-double';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function network(nodes: SigningNodeDouble[], env: Record<string, string> = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-dispatch-'));
  dirs.push(dir);
  const router: RunningRouter = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: dir,
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      PROBE_INTERVAL_S: '0',
      ...env,
    }),
    { rng: () => 0 },
  );
  for (const node of nodes) {
    await node.start();
    assert.equal((await node.register(router.url, router.pubkey)).status, 200);
  }
  const { key } = await router.createApiKey({ name: 't', requests_per_min: 100_000, max_parallel: 1000 });
  const client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: key, maxRetries: 0 });
  return {
    router,
    client,
    async close() {
      await router.close();
      for (const node of nodes) await node.stop();
    },
  };
}

const chat = (client: OpenAI, content = 'hi') =>
  client.chat.completions.create({
    model: 'double-model',
    messages: [{ role: 'user', content }],
    max_tokens: 8,
  });

const codeOf = (e: unknown) => (e instanceof OpenAI.APIError ? `${e.status} ${e.code}` : String(e));

test('a half-open trial is given back on every path: a cancelled trial does not take the node out', () => {
  let nowMs = 0;
  const health = new NodeHealth({ ...DEFAULT_HEALTH_CONFIG, allowedFailures: 1, cooldownMs: 1000 });
  const node = { health, inFlight: 0 } as unknown as NodeRecord;
  health.recordFailure(nowMs);
  assert.equal(
    NodeLease.acquire(node, () => nowMs),
    null,
    'open: no lease',
  );
  nowMs = 1500;
  const trial = NodeLease.acquire(node, () => nowMs);
  assert.ok(trial, 'half-open: one trial');
  assert.equal(
    NodeLease.acquire(node, () => nowMs),
    null,
    'only one trial at a time',
  );
  trial.release(); // the client went away: no verdict
  assert.equal(node.inFlight, 0);
  const next = NodeLease.acquire(node, () => nowMs);
  assert.ok(next, 'the next request may try again');
  next.succeed({});
  next.fail(); // later verdicts on an ended lease change nothing
  assert.equal(health.snapshot().state, 'closed');
  assert.equal(node.inFlight, 0);
});

test('a trial whose outcome is lost stops blocking after trialTimeoutMs', () => {
  const health = new NodeHealth({
    ...DEFAULT_HEALTH_CONFIG,
    allowedFailures: 1,
    cooldownMs: 10,
    trialTimeoutMs: 100,
  });
  health.recordFailure(0);
  assert.equal(health.available(20), true);
  assert.equal(health.available(50), false);
  assert.equal(health.available(121), true);
});

test('client-caused refusals (context too long) never trip the breaker; an outage answers 503, not 404', async () => {
  const node = new SigningNodeDouble();
  const net = await network([node]);
  try {
    for (const mode of ['context-refused', 'context-refused-in-stream'] as const) {
      node.mode = mode;
      for (let i = 0; i < 6; i++) {
        await assert.rejects(chat(net.client), (e) => codeOf(e) === '400 CONTEXT_TOO_LONG', mode);
      }
    }
    node.mode = 'ok';
    const answer = await chat(net.client);
    assert.equal(answer.choices[0]?.message.content, 'Hello from the double', 'the node still serves');

    node.mode = 'fail-before';
    for (let i = 0; i < 3; i++)
      await assert.rejects(chat(net.client), (e) => codeOf(e) === '502 NODE_FAILED');
    // The answer says why no node was eligible (here: its breaker opened).
    await assert.rejects(
      chat(net.client),
      (e) => codeOf(e) === '503 NO_ELIGIBLE_NODE' && /breaker is open/.test((e as Error).message),
    );
    await assert.rejects(
      net.client.chat.completions.create({
        model: 'no-such-model',
        messages: [{ role: 'user', content: 'x' }],
      }),
      (e) => codeOf(e) === '404 MODEL_NOT_FOUND',
    );
  } finally {
    await net.close();
  }
});

test('a client that disconnects during a half-open trial does not leave the node out for good', async () => {
  const node = new SigningNodeDouble();
  const net = await network([node], { CANCEL_GRACE_MS: '100' });
  try {
    const record = net.router.registry.get(node.pubkey)!;
    // Open the breaker, then let its cooldown pass so the next request is the half-open trial.
    for (let i = 0; i < 3; i++) record.health.recordFailure(Date.now());
    assert.equal(record.health.snapshot().state, 'open');
    (record.health as unknown as { openUntilMs: number }).openUntilMs = Date.now() - 1;
    node.mode = 'hang';
    const controller = new AbortController();
    void net.client.chat.completions
      .create(
        { model: 'double-model', messages: [{ role: 'user', content: 'x' }], max_tokens: 8 },
        { signal: controller.signal },
      )
      .catch(() => null);
    await new Promise((r) => setTimeout(r, 200));
    controller.abort();
    await new Promise((r) => setTimeout(r, 200));
    node.mode = 'ok';
    // Whatever happened to the trial, the node is reachable again without a restart.
    let served = false;
    for (let i = 0; i < 200 && !served; i++) {
      served = await chat(net.client).then(
        () => true,
        () => false,
      );
      if (!served) await new Promise((r) => setTimeout(r, 100));
    }
    assert.ok(served, 'the node serves again');
  } finally {
    await net.close();
  }
});

test('a node that inflates tokens_in is refused (BAD_METERING) and counted against it', async () => {
  const node = new SigningNodeDouble();
  node.mode = 'inflate-tokens-in';
  const net = await network([node]);
  try {
    await assert.rejects(chat(net.client), (e) => codeOf(e) === '502 BAD_METERING');
    assert.equal(net.router.registry.get(node.pubkey)!.health.snapshot().consecutiveFailures, 1);
  } finally {
    await net.close();
  }
});

for (const mode of ['split-utf8', 'crlf'] as const) {
  test(`a node whose stream is ${mode} streams correctly and its metering verifies`, async () => {
    const node = new SigningNodeDouble();
    node.mode = mode;
    node.tokens = ['Café', ' é', ' 🎉 ', '中文'];
    const net = await network([node]);
    try {
      const stream = await net.client.chat.completions.create({
        model: 'double-model',
        messages: [{ role: 'user', content: 'é' }],
        max_tokens: 8,
        stream: true,
      });
      let text = '';
      for await (const chunk of stream) text += chunk.choices[0]?.delta?.content ?? '';
      assert.equal(text, 'Café é 🎉 中文');
      assert.equal(net.router.registry.get(node.pubkey)!.health.snapshot().consecutiveFailures, 0);
    } finally {
      await net.close();
    }
  });
}

test('a slow client (backpressure) still gets every token in order', async () => {
  const node = new SigningNodeDouble();
  node.tokens = Array.from({ length: 200 }, (_, i) => `${'x'.repeat(2000)}${i} `);
  node.tokenDelayMs = 0;
  const net = await network([node]);
  try {
    const response = await fetch(`${net.router.url}/v1/chat/completions`, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${(net.client as unknown as { apiKey: string }).apiKey}`,
        'content-type': 'application/json',
      },
      body: JSON.stringify({
        model: 'double-model',
        messages: [{ role: 'user', content: 'x' }],
        max_tokens: 500,
        stream: true,
      }),
    });
    // The keep-alive hint lets a client's pool drop an idle socket before the router closes it.
    assert.match(response.headers.get('keep-alive') ?? '', /^timeout=\d+/);
    const reader = response.body!.getReader();
    let raw = '';
    const decoder = new TextDecoder();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      raw += decoder.decode(value, { stream: true });
      await new Promise((r) => setTimeout(r, 2)); // read slowly
    }
    const text = raw
      .split('\n\n')
      .filter((b) => b.startsWith('data: {'))
      .map((b) => JSON.parse(b.slice(6)) as { choices: { delta?: { content?: string } }[] })
      .map((e) => e.choices[0]?.delta?.content ?? '')
      .join('');
    assert.equal(text, node.tokens.join(''));
    assert.match(raw, /data: \[DONE\]/);
  } finally {
    await net.close();
  }
});

test('a node failing after output with a second candidate: a clean error, the second node gets nothing', async () => {
  const first = new SigningNodeDouble();
  const second = new SigningNodeDouble();
  first.price = { input_msat_per_1k: 1, output_msat_per_1k: 1 };
  second.price = { input_msat_per_1k: 9000, output_msat_per_1k: 9000 };
  first.mode = 'fail-after';
  const net = await network([first, second]);
  try {
    const stream = await net.client.chat.completions.create({
      model: 'double-model',
      messages: [{ role: 'user', content: 'hi' }],
      max_tokens: 8,
      stream: true,
      provider: { sort: 'price' },
    } as never);
    let text = '';
    await assert.rejects(async () => {
      for await (const chunk of stream as unknown as AsyncIterable<{
        choices: { delta?: { content?: string } }[];
      }>)
        text += chunk.choices[0]?.delta?.content ?? '';
    });
    assert.equal(text, 'Hello from', 'the client saw the first node only');
    assert.equal(first.requests, 1);
    assert.equal(second.requests, 0, 'no failover after output');
  } finally {
    await net.close();
  }
});

test('FedAiError sanity: CANCELLED is a reason code', () => {
  assert.equal(new FedAiError('CANCELLED').status, 499);
});

/** Our own Payments seam, recording what the router reserves; `shortBy` under-reserves on purpose. */
class RecordingPayments implements Payments {
  readonly mode = 'settlement' as const;
  reserved: number[] = [];
  captured: number[] = [];
  constructor(private readonly shortBy = 0) {}
  async reserve(input: { requestId: string; amountMsat: number }): Promise<Reservation> {
    this.reserved.push(input.amountMsat);
    return { opId: input.requestId, amountMsat: input.amountMsat - this.shortBy };
  }
  async capture(_r: Reservation, input: { amountMsat: number }): Promise<void> {
    this.captured.push(input.amountMsat);
  }
  async release(): Promise<void> {}
  async captureOffload(): Promise<void> {
    throw new Error('no offload in these tests');
  }
  async releaseAhead(): Promise<void> {}
  async close(): Promise<void> {}
}

async function paidNetwork(nodes: SigningNodeDouble[], payments: Payments) {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-dispatch-paid-'));
  dirs.push(dir);
  const router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: dir,
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      PROBE_INTERVAL_S: '0',
    }),
    { rng: () => 0, payments },
  );
  for (const node of nodes) {
    await node.start();
    assert.equal((await node.register(router.url, router.pubkey)).status, 200);
  }
  const { key } = await router.createApiKey({ name: 'p' });
  return { router, client: new OpenAI({ baseURL: `${router.url}/v1`, apiKey: key, maxRetries: 0 }) };
}

test('a paid failover to a pricier node was reserved for: the reservation covers every candidate', async () => {
  const cheap = new SigningNodeDouble();
  const pricey = new SigningNodeDouble();
  cheap.price = { input_msat_per_1k: 1, output_msat_per_1k: 1 };
  pricey.price = { input_msat_per_1k: 7000, output_msat_per_1k: 9000 };
  cheap.mode = 'fail-before';
  const payments = new RecordingPayments();
  const net = await paidNetwork([cheap, pricey], payments);
  try {
    const messages = [{ role: 'user' as const, content: 'hello' }];
    const answer = await net.client.chat.completions.create({
      model: 'double-model',
      messages,
      max_tokens: 8,
      provider: { sort: 'price' },
    } as never);
    const fedai = (answer as unknown as { fedai: { node: string; cost_msat: number } }).fedai;
    assert.equal(fedai.node, pricey.pubkey, 'failed over to the pricier node');
    assert.equal(cheap.requests, 1);
    const bound = maxCostMsat(promptTokensBound(messages), 8, pricey.price, 512);
    assert.deepEqual(payments.reserved, [bound], 'reserved at the priciest candidate');
    assert.ok(fedai.cost_msat <= bound);
  } finally {
    await net.router.close();
    await cheap.stop();
    await pricey.stop();
  }
});

test('dispatch never tries a candidate the reservation does not cover', async () => {
  const node = new SigningNodeDouble();
  const payments = new RecordingPayments(1);
  const net = await paidNetwork([node], payments);
  try {
    await assert.rejects(chat(net.client), (e) => codeOf(e) === '503 NO_ELIGIBLE_NODE');
    assert.equal(node.requests, 0, 'the node got nothing');
    assert.deepEqual(payments.captured, []);
  } finally {
    await net.router.close();
    await node.stop();
  }
});
