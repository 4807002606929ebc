import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { createEnvelope, createNip98Header, generateSecretKey, KIND, publicKeyOf } from '@fed-ai/protocol';
import OpenAI from 'openai';
import { routerConfigSchema } from '../src/config';
import { type RunningRouter, startRouter } from '../src/router';
import { SigningNodeDouble } from './signing-node-double';

const dir = mkdtempSync(join(tmpdir(), 'fedai-security-'));
const operatorKey = generateSecretKey();
let router: RunningRouter;
const node = new SigningNodeDouble();

before(async () => {
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: dir,
      ALLOW_PRIVATE_ENDPOINTS: 'false',
      OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
    }),
    // Names resolve through this test lookup; IP literals are judged as written.
    // These public addresses cannot be reached from a test, so the endpoint challenge is replaced by
    // one that vouches for them (endpoint proof has its own tests in attacks-sybil.test.ts).
    {
      lookup: async (host) =>
        host === 'rebind.example' ? ['10.0.0.7'] : host === 'public.example' ? ['93.184.216.34'] : [],
      proveEndpoint: async (endpoint) =>
        /^http:\/\/(public\.example|93\.184\.216\.35)(:\d+)?$/.test(endpoint)
          ? { ok: true }
          : { ok: false, code: 'ENDPOINT_UNVERIFIED', detail: 'unreachable in tests' },
    },
  );
  await node.start();
});

after(async () => {
  await router.close();
  await node.stop();
  rmSync(dir, { recursive: true, force: true });
});

function registration(key: Uint8Array, endpoint: string) {
  return createEnvelope(
    KIND.nodeRegistration,
    {
      endpoint,
      models: [
        {
          id: 'm',
          context_window: 4096,
          max_output_tokens: 256,
          price: { input_msat_per_1k: 1, output_msat_per_1k: 1 },
        },
      ],
      capacity: { max_concurrency: 1, queue_max: 0 },
    },
    { audience: router.pubkey },
    key,
  );
}

const post = (path: string, body: unknown, headers: Record<string, string> = {}) =>
  fetch(`${router.url}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

async function codeOf(response: Response): Promise<string> {
  return ((await response.json()) as { error: { code: string } }).error.code;
}

test('every private, loopback and reserved endpoint form is refused with PRIVATE_ENDPOINT', async () => {
  const forms = [
    'http://127.0.0.1:8080',
    'http://localhost.:8080',
    'http://10.1.2.3',
    'http://172.16.5.4',
    'http://192.168.1.1',
    'http://169.254.169.254',
    'http://100.64.0.1',
    'http://0.0.0.0',
    'http://[::]',
    'http://[::1]:8080',
    'http://[fe80::1]',
    'http://[fd00::1]',
    'http://[::ffff:127.0.0.1]',
    'http://2130706433/',
    'http://0x7f000001/',
    'http://127.1/',
    'http://rebind.example/',
  ];
  for (const endpoint of forms) {
    const response = await post('/v1/nodes/register', registration(generateSecretKey(), endpoint));
    const code = await codeOf(response);
    assert.ok(
      code === 'PRIVATE_ENDPOINT' || (endpoint.includes('localhost') && code === 'INVALID_REQUEST'),
      `${endpoint}: ${code}`,
    );
  }
  const ok = await post(
    '/v1/nodes/register',
    registration(generateSecretKey(), 'http://public.example:8080'),
  );
  assert.equal(ok.status, 200, 'a public name is accepted');
});

test('takeover: another key cannot claim a registered endpoint; a replayed registration is refused', async () => {
  const owner = generateSecretKey();
  const first = registration(owner, 'http://93.184.216.35:7100');
  assert.equal((await post('/v1/nodes/register', first)).status, 200);
  const attacker = await post(
    '/v1/nodes/register',
    registration(generateSecretKey(), 'http://93.184.216.35:7100'),
  );
  assert.equal(attacker.status, 409);
  assert.equal(await codeOf(attacker), 'ENDPOINT_TAKEN');
  const replay = await post('/v1/nodes/register', first);
  assert.equal(await codeOf(replay), 'REPLAYED');
  // A heartbeat for an id nobody registered is refused, and one signed by another key cannot touch the owner.
  const stranger = createEnvelope(
    KIND.nodeHeartbeat,
    { free_slots: 9, queue_depth: 0, models_loaded: ['m'], ready: true },
    { audience: router.pubkey },
    generateSecretKey(),
  );
  assert.equal(await codeOf(await post('/v1/nodes/heartbeat', stranger)), 'NODE_NOT_REGISTERED');
  const forged = {
    ...createEnvelope(
      KIND.nodeHeartbeat,
      { free_slots: 9, queue_depth: 0, models_loaded: ['m'], ready: true },
      { audience: router.pubkey },
      generateSecretKey(),
    ),
    pubkey: publicKeyOf(owner),
  };
  assert.equal(await codeOf(await post('/v1/nodes/heartbeat', forged)), 'BAD_ID');
});

test('NIP-98 admin: tampered URL, method or body, wrong key, and replays are refused', async () => {
  const url = `${router.url}/admin/apikeys`;
  const body = JSON.stringify({ name: 'ops' });
  const good = createNip98Header(url, 'POST', body, operatorKey);
  const created = await post('/admin/apikeys', body, { authorization: good });
  assert.equal(created.status, 200);
  assert.match(((await created.json()) as { key: string }).key, /^fedai_sk_/);
  const cases: [string, Response, string][] = [
    ['replay', await post('/admin/apikeys', body, { authorization: good }), 'REPLAYED'],
    [
      'url',
      await post('/admin/apikeys', body, {
        authorization: createNip98Header(`${url}x`, 'POST', body, operatorKey),
      }),
      'AUTH_URL_MISMATCH',
    ],
    [
      'method',
      await post('/admin/apikeys', body, { authorization: createNip98Header(url, 'PUT', body, operatorKey) }),
      'AUTH_METHOD_MISMATCH',
    ],
    [
      'body',
      await post('/admin/apikeys', JSON.stringify({ name: 'evil' }), {
        authorization: createNip98Header(url, 'POST', body, operatorKey),
      }),
      'AUTH_PAYLOAD_MISMATCH',
    ],
    [
      'not an operator',
      await post('/admin/apikeys', body, {
        authorization: createNip98Header(url, 'POST', body, generateSecretKey()),
      }),
      'FORBIDDEN',
    ],
    ['missing', await post('/admin/apikeys', body), 'UNAUTHORIZED'],
  ];
  for (const [name, response, code] of cases) assert.equal(await codeOf(response), code, name);
});

test('API keys: the per-minute and parallel limits answer 429 with Retry-After; a revoked key gets 401', async () => {
  const limited = await router.createApiKey({ name: 'tight', requests_per_min: 1 });
  const client = new OpenAI({ baseURL: `${router.url}/v1`, apiKey: limited.key, maxRetries: 0 });
  const ask = () =>
    client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'x' }], max_tokens: 4 });
  await assert.rejects(ask(), (e: unknown) => e instanceof OpenAI.APIError && e.status !== 429); // counted, then no reachable node
  await assert.rejects(
    ask(),
    (e: unknown) =>
      e instanceof OpenAI.APIError &&
      e.status === 429 &&
      e.code === 'RATE_LIMITED' &&
      Number(e.headers?.get('retry-after')) >= 1,
  );
  assert.equal(await router.revokeApiKey(limited.id), true);
  await assert.rejects(ask(), (e: unknown) => e instanceof OpenAI.APIError && e.status === 401);
});

test('API keys: the parallel limit holds under concurrency (unit)', async () => {
  const { openDb } = await import('@fed-ai/kit');
  const { migrateRouter } = await import('../src/db');
  const { SharedKeyLimiter } = await import('../src/key-limits');
  const db = await openDb({});
  await migrateRouter(db);
  let nowMs = 0;
  const keys = new SharedKeyLimiter(db, { slotLeaseMs: 30_000, now: () => nowMs });
  const record = { id: 'k', requests_per_min: 100, tokens_per_min: 1_000_000, max_parallel: 2 };
  const [a, b, c] = await Promise.all([
    keys.admit(record, 10),
    keys.admit(record, 10),
    keys.admit(record, 10),
  ]);
  assert.equal([a, b, c].filter((r) => r!.ok).length, 2);
  const first = [a, b, c].find((r) => r!.ok)!;
  if (first.ok) first.release(10);
  nowMs = 1;
  // The release is one write after the request: poll until the freed slot is taken again.
  let reused = false;
  for (let i = 0; i < 50 && !reused; i++) reused = (await keys.admit(record, 10)).ok;
  assert.ok(reused, 'a released slot is reusable');
  const tokens = { ...record, id: 't', tokens_per_min: 100, max_parallel: 10 };
  const used = await keys.admit(tokens, 90);
  if (used.ok) used.release(90);
  let refused = false;
  for (let i = 0; i < 50 && !refused; i++) {
    const r = await keys.admit(tokens, 50);
    refused = !r.ok;
    if (r.ok) r.release(0);
  }
  assert.ok(refused, 'tokens per minute');
  nowMs = 61_000;
  assert.equal((await keys.admit(tokens, 50)).ok, true, 'a new minute');
  await db.close();
});
