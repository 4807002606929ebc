// Attack run against the operator dashboard's routes: every JSON route refuses no signature (under
// every spelling of its path), a key not in OPERATOR_PUBKEYS, a replayed NIP-98 event, and an event
// signed for another URL or method; query parameters are validated and bounded; the page and its
// script carry the strict CSP and the page holds no inline script; and after a real request no
// route answers with its prompt or output (the recent-requests ring keeps metadata only).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DASHBOARD_CSP } from '@fed-ai/dashboard';
import { nodeConfigSchema, type RunningNode, startNode } from '@fed-ai/node';
import { createNip98Header, generateSecretKey, publicKeyOf } from '@fed-ai/protocol';
import { settlementConfigSchema, startSettlement } from '../../settlement/src/index';
import { routerConfigSchema } from '../src/config';
import { failedEntry, RecentRequests } from '../src/recent-requests';
import { type RunningRouter, startRouter } from '../src/router';
import { pathVariants, rawRequest } from './raw-http';

const dir = mkdtempSync(join(tmpdir(), 'fedai-router-dashboard-'));
const operatorKey = generateSecretKey();
const MODEL = 'fedai-demo-noise-v1';
const CANARY = 'canary-4b1d: a prompt the operator must never see';
let router: RunningRouter;
let node: RunningNode;

const ROUTES = [
  '/admin/dashboard/whoami',
  '/admin/dashboard/nodes',
  '/admin/dashboard/requests?limit=5',
  '/admin/dashboard/money?limit=3',
  '/admin/dashboard/federation',
];

before(async () => {
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: join(dir, 'router'),
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
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
});

after(async () => {
  await node.close();
  await router.close();
  rmSync(dir, { recursive: true, force: true });
});

const signed = (path: string, key = operatorKey, signedPath = path, signedMethod = 'GET') =>
  rawRequest(router.url, 'GET', path, undefined, {
    authorization: createNip98Header(`${router.url}${signedPath}`, signedMethod, undefined, key),
  });

const codeOf = (text: string) => (JSON.parse(text) as { error: { code: string; hint: string } }).error.code;

test('every dashboard route, under every spelling of its path, refuses a request without a signature', async () => {
  for (const route of ROUTES)
    for (const path of pathVariants(route)) {
      const answer = await rawRequest(router.url, 'GET', path);
      assert.ok(answer.status >= 400 && answer.status < 500, `${path}: ${answer.status} ${answer.text}`);
      assert.ok(codeOf(answer.text).length > 0, 'the error shape');
      assert.ok(!answer.text.includes('"nodes"'), 'no data');
    }
  const plain = await rawRequest(router.url, 'GET', '/admin/dashboard/nodes');
  assert.equal(plain.status, 401);
  const body = JSON.parse(plain.text) as { error: { code: string; message: string; hint: string } };
  assert.equal(body.error.code, 'UNAUTHORIZED');
  assert.ok(body.error.hint.length > 0, 'the existing error shape, with its hint');
});

test('a key not in OPERATOR_PUBKEYS gets 403 FORBIDDEN on every route', async () => {
  for (const route of ROUTES) {
    const answer = await signed(route, generateSecretKey());
    assert.equal(answer.status, 403, `${route}: ${answer.text}`);
    assert.equal(codeOf(answer.text), 'FORBIDDEN');
  }
});

test('a replayed event, and an event signed for another URL or method, are refused', async () => {
  for (const route of ROUTES) {
    const header = createNip98Header(`${router.url}${route}`, 'GET', undefined, operatorKey);
    const first = await rawRequest(router.url, 'GET', route, undefined, { authorization: header });
    assert.equal(first.status, 200, `${route}: ${first.text}`);
    const again = await rawRequest(router.url, 'GET', route, undefined, { authorization: header });
    assert.equal(codeOf(again.text), 'REPLAYED', route);
    const otherUrl = await signed(route, operatorKey, '/admin/apikeys');
    assert.equal(codeOf(otherUrl.text), 'AUTH_URL_MISMATCH', route);
    const otherMethod = await signed(route, operatorKey, route, 'POST');
    assert.equal(codeOf(otherMethod.text), 'AUTH_METHOD_MISMATCH', route);
  }
  // A signature for one query string is not one for another (limit=5 signed, limit=1000 sent).
  const swapped = await signed(
    '/admin/dashboard/requests?limit=1000',
    operatorKey,
    '/admin/dashboard/requests?limit=5',
  );
  assert.equal(codeOf(swapped.text), 'AUTH_URL_MISMATCH');
});

test('query parameters are validated: out of bounds, not a number, or unknown answer INVALID_REQUEST', async () => {
  for (const path of [
    '/admin/dashboard/requests?limit=0',
    '/admin/dashboard/requests?limit=1001',
    '/admin/dashboard/requests?limit=abc',
    '/admin/dashboard/requests?prompt=1',
    '/admin/dashboard/nodes?limit=501',
    '/admin/dashboard/whoami?x=1',
    '/admin/dashboard/money?limit=101',
    '/admin/dashboard/money?limit=-1',
    '/admin/dashboard/money?account=tab:x',
    '/admin/dashboard/federation?peer=1',
  ]) {
    const answer = await signed(path);
    assert.equal(answer.status, 400, `${path}: ${answer.text}`);
    assert.equal(codeOf(answer.text), 'INVALID_REQUEST');
  }
});

test('after a real request no dashboard route answers with its prompt or output; the ring holds its metadata', async () => {
  const { key } = await router.createApiKey({ name: 'dash-attacks' });
  const response = await fetch(`${router.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: CANARY }], max_tokens: 12 }),
  });
  const completion = (await response.json()) as { choices: { message: { content: string } }[] };
  assert.equal(response.status, 200);
  const output = completion.choices[0]?.message.content ?? '';
  assert.ok(output.length > 8);
  const texts: string[] = [];
  for (const route of ROUTES) {
    const answer = await signed(route);
    assert.equal(answer.status, 200, answer.text);
    texts.push(answer.text);
  }
  for (const text of texts) {
    assert.ok(!text.includes(CANARY), 'no prompt');
    assert.ok(!text.includes(output), 'no output');
    assert.ok(!text.includes(key), 'no API key');
  }
  const { requests } = JSON.parse(texts[2]!) as {
    requests: { outcome: string; node: string; receipt_id: string }[];
  };
  assert.equal(requests[0]?.outcome, 'OK');
  assert.equal(requests[0]?.node, node.pubkey);
  assert.match(requests[0]?.receipt_id ?? '', /^[0-9a-f]{64}$/);
  const { nodes } = JSON.parse(texts[1]!) as { nodes: { id: string; recent_requests: number }[] };
  assert.equal(nodes.find((n) => n.id === node.pubkey)?.recent_requests, 1);
  // Free mode and no federation: the pages say so instead of failing.
  assert.deepEqual(JSON.parse(texts[3]!), { payments: 'free', overview: null });
  assert.deepEqual(JSON.parse(texts[4]!), { enabled: false, relays: [], peers: [], total: 0 });
});

test('a request refused before any node is asked is in the ring with its reason code, never its prompt', async () => {
  const { key } = await router.createApiKey({ name: 'dash-refused' });
  const response = await fetch(`${router.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
    body: JSON.stringify({
      model: 'no-such-model',
      messages: [{ role: 'user', content: CANARY }],
      max_tokens: 4,
    }),
  });
  assert.equal(response.status, 404);
  const answer = await signed('/admin/dashboard/requests?limit=1');
  assert.equal(answer.status, 200, answer.text);
  assert.ok(!answer.text.includes(CANARY));
  const [entry] = (JSON.parse(answer.text) as { requests: Record<string, unknown>[] }).requests;
  assert.deepEqual(
    {
      model: entry?.model,
      outcome: entry?.outcome,
      node: entry?.node,
      cost: entry?.cost_msat,
      attempts: entry?.attempts,
    },
    { model: 'no-such-model', outcome: 'MODEL_NOT_FOUND', node: null, cost: 0, attempts: 0 },
  );
});

test("a settlement that refuses the router's key, or is down, is SETTLEMENT_UNAVAILABLE on the money page, never the operator's FORBIDDEN", async () => {
  const stranger = generateSecretKey();
  const settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(stranger),
      FAUCET: 'true',
    }),
  );
  const paid = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: join(dir, 'paid-router'),
      SETTLEMENT_URL: settlement.url,
      OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
    }),
  );
  const money = () =>
    rawRequest(paid.url, 'GET', '/admin/dashboard/money', undefined, {
      authorization: createNip98Header(`${paid.url}/admin/dashboard/money`, 'GET', undefined, operatorKey),
    });
  try {
    const refused = await money();
    assert.equal(refused.status, 503, refused.text);
    assert.equal(codeOf(refused.text), 'SETTLEMENT_UNAVAILABLE');
    assert.match(refused.text, /\(FORBIDDEN\)/, 'the cause is named in the message');
    await settlement.close();
    const down = await money();
    assert.equal(down.status, 503, down.text);
    assert.equal(codeOf(down.text), 'SETTLEMENT_UNAVAILABLE');
    assert.ok(!down.text.includes('127.0.0.1'), 'no internal address in the answer');
  } finally {
    await paid.close();
    await settlement.close().catch(() => undefined);
  }
});

test('the page, its script and its stylesheet carry the strict CSP; the page holds no inline script or style', async () => {
  for (const path of ['/dashboard', '/dashboard/app.js', '/dashboard/app.css']) {
    const response = await fetch(`${router.url}${path}`);
    assert.equal(response.status, 200, path);
    assert.equal(response.headers.get('content-security-policy'), DASHBOARD_CSP);
    assert.equal(response.headers.get('x-content-type-options'), 'nosniff');
    const text = await response.text();
    if (path === '/dashboard') {
      assert.doesNotMatch(text, /<script(?![^>]*\bsrc=)[^>]*>/, 'no inline script');
      assert.doesNotMatch(text, /<style|\sstyle=|\son[a-z]+=/i, 'no inline style or handler');
      assert.match(response.headers.get('content-type') ?? '', /^text\/html/);
    }
  }
  assert.match(DASHBOARD_CSP, /default-src 'self'/);
  assert.doesNotMatch(DASHBOARD_CSP, /unsafe-inline|unsafe-eval/);
});

test('the recent-requests ring is bounded, newest first, and keeps only reason codes of failures', () => {
  const ring = new RecentRequests(3);
  for (let i = 0; i < 5; i++)
    ring.add({ ...failedEntry('m', i, 0, new Error(`secret text ${i}`)), at_ms: i });
  assert.deepEqual(
    ring.list().map((r) => r.at_ms),
    [4, 3, 2],
  );
  assert.deepEqual(
    ring.list(1).map((r) => r.at_ms),
    [4],
  );
  assert.equal(JSON.stringify(ring.list()).includes('secret'), false);
  assert.equal(ring.list()[0]?.outcome, 'INTERNAL');
  assert.throws(() => new RecentRequests(0));
});
