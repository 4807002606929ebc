// Issue #9 C: Sybil registration. Fake nodes whose endpoints do not answer the challenge are
// refused; URL variants of a registered endpoint are duplicates or bad URLs; registrations are rate
// limited; nodes that do pass the challenge start on probation and cannot crowd out a proven node.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { createEnvelope, generateSecretKey, KIND, mulberry32 } from '@fed-ai/protocol';
import OpenAI from 'openai';
import { routerConfigSchema } from '../src/config';
import { RegistrationLimiter } from '../src/registry';
import { type RunningRouter, type StartRouterOptions, startRouter } from '../src/router';
import { SigningNodeDouble } from './signing-node-double';

const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
});

async function router(env: Record<string, string>, options: StartRouterOptions = {}): Promise<RunningRouter> {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-sybil-'));
  const running = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: dir,
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      PROBE_INTERVAL_S: '0',
      ...env,
    }),
    options,
  );
  cleanups.push(async () => {
    await running.close();
    rmSync(dir, { recursive: true, force: true });
  });
  return running;
}

async function double(): Promise<SigningNodeDouble> {
  const node = new SigningNodeDouble();
  await node.start();
  cleanups.push(() => node.stop());
  return node;
}

/** A port nothing listens on (bound, then released). */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as { port: number };
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

function registration(routerPubkey: string, endpoint: string, key = generateSecretKey()) {
  return createEnvelope(
    KIND.nodeRegistration,
    {
      endpoint,
      models: [
        {
          id: 'double-model',
          context_window: 4096,
          max_output_tokens: 512,
          price: { input_msat_per_1k: 0, output_msat_per_1k: 0 },
        },
      ],
      capacity: { max_concurrency: 64, queue_max: 64 },
    },
    { audience: routerPubkey },
    key,
  );
}

async function register(r: RunningRouter, body: unknown): Promise<{ status: number; code?: string }> {
  const response = await fetch(`${r.url}/v1/nodes/register`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await response.json()) as { error?: { code: string } };
  return { status: response.status, ...(json.error ? { code: json.error.code } : {}) };
}

async function askMany(r: RunningRouter, count: number): Promise<number> {
  const { key } = await r.createApiKey({ name: 'honest', requests_per_min: 10_000 });
  const client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: key, maxRetries: 0 });
  let ok = 0;
  for (let i = 0; i < count; i++) {
    const answer = await client.chat.completions
      .create({ model: 'double-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 })
      .catch(() => null);
    if (answer?.choices[0]?.message.content === 'Hello from the double') ok += 1;
  }
  return ok;
}

test('200 fake price-0 registrations whose endpoints fail the challenge are refused; honest requests succeed', async () => {
  const r = await router({
    REGISTRATIONS_PER_IP_PER_HOUR: '10000',
    REGISTRATIONS_PER_MIN: '10000',
    CHALLENGE_TIMEOUT_MS: '300',
  });
  const honest = await double();
  assert.equal((await honest.register(r.url, r.pubkey)).status, 200);
  assert.equal(honest.challenges, 1, 'the honest node was challenged once');
  const silent = await double();
  silent.challengeMode = 'silent';
  const bystander = await double(); // answers, but signs with its own key, not the registrant's
  const dead = await deadPort();
  const codes = new Map<string, number>();
  for (let i = 0; i < 200; i++) {
    const endpoint =
      i % 4 === 0
        ? `http://127.0.0.1:${dead}/n${i}` // nothing listens
        : i % 4 === 1
          ? `${honest.url}/sybil${i}` // someone else's server: no challenge route there
          : i % 4 === 2 && i < 20
            ? `${silent.url}/n${i}` // never answers (a few: each costs the challenge timeout)
            : i % 4 === 2
              ? `http://127.0.0.1:${dead}/m${i}`
              : bystander.url; // answers with another key
    const result = await register(r, registration(r.pubkey, endpoint));
    assert.equal(result.status, 403, `fake ${i} (${endpoint}) was accepted`);
    codes.set(result.code ?? 'none', (codes.get(result.code ?? 'none') ?? 0) + 1);
  }
  assert.deepEqual([...codes], [['ENDPOINT_UNVERIFIED', 200]]);
  assert.equal(r.registry.size, 1, 'only the honest node is registered');
  assert.equal(await askMany(r, 60), 60, 'every honest request succeeds');
});

test('URL variants of a registered endpoint are refused as duplicates or bad URLs', async () => {
  // The challenge is stubbed to vouch for every endpoint: this test is about normalisation only.
  const r = await router({}, { proveEndpoint: async () => ({ ok: true }) });
  const honest = await double();
  const port = new URL(honest.url).port;
  assert.equal((await register(r, registration(r.pubkey, `http://127.0.0.1:${port}`))).status, 200);
  assert.equal((await register(r, registration(r.pubkey, 'http://node.example'))).status, 200);
  const duplicates = [
    `http://localhost:${port}`,
    `http://LOCALHOST:${port}/`,
    `http://127.0.0.1:${port}/`,
    `http://127.0.0.2:${port}`,
    `http://[::1]:${port}`,
    `http://[::ffff:127.0.0.1]:${port}`,
    `http://2130706433:${port}`,
    'http://NODE.EXAMPLE',
    'http://node.example:80',
    'http://Node.Example:80/',
  ];
  for (const endpoint of duplicates) {
    const result = await register(r, registration(r.pubkey, endpoint));
    assert.equal(result.code, 'ENDPOINT_TAKEN', endpoint);
  }
  const malformed = [
    `http://127.0.0.1:${port}/?x`,
    `http://127.0.0.1:${port}/#x`,
    `http://127.0.0.1:${port}?`,
    `http://user@127.0.0.1:${port}`,
    `http://user:pw@localhost:${port}`,
    'http://node.example/?x=1',
  ];
  for (const endpoint of malformed) {
    const result = await register(r, registration(r.pubkey, endpoint));
    assert.equal(result.code, 'BAD_ENDPOINT', endpoint);
  }
  assert.equal(r.registry.size, 2);
});

test('registrations are bounded per source IP per hour, overall per minute, and in total', async () => {
  let proofs = 0;
  const r = await router(
    { REGISTRATIONS_PER_IP_PER_HOUR: '3', MAX_NODES: '10' },
    {
      proveEndpoint: async () => {
        proofs += 1;
        return { ok: true };
      },
    },
  );
  const results = [];
  for (let i = 0; i < 5; i++) results.push(await register(r, registration(r.pubkey, `http://n${i}.example`)));
  assert.deepEqual(
    results.map((x) => x.code ?? x.status),
    [200, 200, 200, 'RATE_LIMITED', 'RATE_LIMITED'],
  );
  assert.equal(proofs, 3, 'a limited attempt never reaches the challenge');

  // The limiter itself (pure, time injected): per minute overall, per IP per hour, bounded memory.
  const limiter = new RegistrationLimiter({ perIpPerHour: 2, perMin: 3, maxTrackedIps: 2 });
  assert.equal(limiter.admit('a', 0), null);
  assert.equal(limiter.admit('a', 1), null);
  assert.match(limiter.admit('a', 2) ?? '', /an hour/);
  assert.equal(limiter.admit('b', 3), null);
  assert.match(limiter.admit('b', 4) ?? '', /a minute/, 'the fourth in one minute');
  assert.match(limiter.admit('c', 60_000) ?? '', /too many registering addresses/, 'memory is bounded');
  assert.equal(limiter.trackedIps, 2);
  assert.equal(limiter.admit('c', 3_600_000), null, 'expired addresses are forgotten');
  assert.equal(limiter.admit('a', 3_600_010), null, 'a new hour');
});

test('nodes that pass the challenge start on probation and cannot crowd out a proven node', async () => {
  const r = await router(
    { REGISTRATIONS_PER_IP_PER_HOUR: '1000', PROBATION_REQUESTS: '1', MAX_ATTEMPTS: '2' },
    { rng: mulberry32(9) },
  );
  const honest = await double();
  assert.equal((await honest.register(r.url, r.pubkey)).status, 200);
  assert.equal(await askMany(r, 1), 1, 'alone, a probation node is served normally');
  assert.equal(r.registry.isOnProbation(r.registry.get(honest.pubkey)!), false, 'one success ends probation');

  // 20 nodes at price 0 that answer the challenge but fail every request.
  const sybils: SigningNodeDouble[] = [];
  for (let i = 0; i < 20; i++) {
    const sybil = await double();
    sybil.mode = 'fail-before';
    sybil.price = { input_msat_per_1k: 0, output_msat_per_1k: 0 };
    assert.equal((await sybil.register(r.url, r.pubkey)).status, 200);
    assert.equal(r.registry.isOnProbation(r.registry.get(sybil.pubkey)!), true);
    sybils.push(sybil);
  }
  honest.requests = 0;
  assert.equal(await askMany(r, 60), 60, 'every honest request succeeds');
  const tried = sybils.reduce((sum, s) => sum + s.requests, 0);
  assert.equal(honest.requests, 60);
  assert.ok(tried <= 15, `probation nodes led ${tried} of 60 requests (share 0.1)`);
});
