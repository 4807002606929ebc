// Node settings refused at start instead of silently accepted, and a /ready that asks the model
// server instead of trusting the config.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { ConfigError, parseConfig, StartError } from '@fed-ai/kit';
import { generateSecretKey, publicKeyOf, toNpub } from '@fed-ai/protocol';
import { nodeConfigSchema } from '../src/config';
import { startNode } from '../src/node';
import { OpenAiHttpRunner } from '../src/runners/openai-http';
import { OpenAiUpstreamDouble } from './upstream-double';

const dir = mkdtempSync(join(tmpdir(), 'fedai-node-config-'));
after(() => rmSync(dir, { recursive: true, force: true }));

test('ROUTER_URLS that is not a list of http(s) URLs is refused naming the variable', () => {
  for (const value of ['notaurl', 'http://ok.example,notaurl', 'ws://router.example']) {
    assert.throws(
      () => parseConfig(nodeConfigSchema, { DEMO_MODEL: 'true', ROUTER_URLS: value }),
      (e: unknown) => e instanceof ConfigError && e.variable === 'ROUTER_URLS',
      value,
    );
  }
  assert.deepEqual(
    parseConfig(nodeConfigSchema, { DEMO_MODEL: 'true', ROUTER_URLS: 'http://a.example, https://b.example/' })
      .ROUTER_URLS,
    ['http://a.example', 'https://b.example/'],
  );
});

test('ROUTER_PUBKEYS accepts npub (what `fedai keys show` prints first) as well as hex', () => {
  const key = publicKeyOf(generateSecretKey());
  const config = parseConfig(nodeConfigSchema, {
    DEMO_MODEL: 'true',
    ROUTER_URLS: 'http://a.example,http://b.example',
    ROUTER_PUBKEYS: `${toNpub(key)},${key.toUpperCase()}`,
  });
  assert.deepEqual(config.ROUTER_PUBKEYS, [key, key]);
  assert.throws(
    () => parseConfig(nodeConfigSchema, { DEMO_MODEL: 'true', ROUTER_PUBKEYS: 'npub1broken' }),
    (e: unknown) => e instanceof ConfigError && e.variable === 'ROUTER_PUBKEYS',
  );
});

test('a NODE_KEY_FILE that does not exist is refused; no identity is minted', async () => {
  await assert.rejects(
    startNode(
      nodeConfigSchema.parse({
        NODE_PORT: '0',
        DATA_DIR: join(dir, 'keyed'),
        DEMO_MODEL: 'true',
        NODE_KEY_FILE: join(dir, 'elsewhere', 'mistyped.key'),
      }),
    ),
    (e: unknown) =>
      e instanceof StartError && e.code === 'KEY_FILE_MISSING' && /NODE_KEY_FILE/.test(e.message),
  );
});

test('an OPENAI_BASE_URL that does not answer fails start with one line (models from MODEL_ID too)', async () => {
  await assert.rejects(
    startNode(
      nodeConfigSchema.parse({
        NODE_PORT: '0',
        DATA_DIR: join(dir, 'openai'),
        RUNNER: 'openai',
        OPENAI_BASE_URL: 'http://127.0.0.1:1/v1',
        MODEL_ID: 'my-model',
      }),
    ),
    (e: unknown) =>
      e instanceof StartError &&
      e.code === 'RUNNER_UNAVAILABLE' &&
      e.message === 'OPENAI_BASE_URL http://127.0.0.1:1/v1 does not answer as an OpenAI-compatible server',
  );
});

test('the openai runner reports unhealthy when the upstream stops answering, also with configured models', async () => {
  const upstream = new OpenAiUpstreamDouble();
  await upstream.start();
  const runner = new OpenAiHttpRunner({
    baseUrl: upstream.url,
    models: [{ id: 'configured', contextWindow: 4096 }],
  });
  try {
    assert.deepEqual(await runner.health(), { ok: true });
    await upstream.stop();
    // The answer is cached for a short while; a generous limit covers a slow machine.
    let health = await runner.health();
    for (let i = 0; i < 200 && health.ok; i++) {
      await new Promise((r) => setTimeout(r, 50));
      health = await runner.health();
    }
    assert.equal(health.ok, false);
    assert.doesNotMatch(health.detail ?? '', /127\.0\.0\.1/, 'no internal address in /ready');
  } finally {
    await runner.stop();
  }
});
