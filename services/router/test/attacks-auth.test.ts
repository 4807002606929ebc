// Attack run (issue #9) against the router: every protected route (operator NIP-98 and API-key
// routes) refuses a caller without credentials under every spelling of its path. The router
// matches decoded paths, so `/%61dmin/apikeys` reaches `/admin/apikeys` and must be checked too.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  createNip98Header,
  finalizeEvent,
  generateSecretKey,
  publicKeyOf,
  sha256Hex,
} from '@fed-ai/protocol';
import { routerConfigSchema } from '../src/config';
import { FreePayments } from '../src/payments';
import { type RunningRouter, startRouter } from '../src/router';
import { pathVariants, rawRequest } from './raw-http';

const dir = mkdtempSync(join(tmpdir(), 'fedai-router-attacks-'));
const operatorKey = generateSecretKey();
let router: RunningRouter;

before(async () => {
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: dir,
      OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
      PROBE_INTERVAL_S: '0',
      // Registers the tab routes; nothing listens there, and no request gets that far.
      SETTLEMENT_URL: 'http://127.0.0.1:9',
      SETTLEMENT_PUBKEY: 'b'.repeat(64),
    }),
    { payments: new FreePayments() },
  );
});

after(async () => {
  await router.close();
  rmSync(dir, { recursive: true, force: true });
});

const raw = (method: string, path: string, body?: string, headers: Record<string, string> = {}) =>
  rawRequest(router.url, method, path, body, headers);

const NODE_ID = 'c'.repeat(64);
const PROTECTED: { method: string; path: string; body?: string }[] = [
  { method: 'GET', path: '/admin/apikeys' },
  { method: 'POST', path: '/admin/apikeys', body: JSON.stringify({ name: 'x' }) },
  { method: 'DELETE', path: '/admin/apikeys/some-id' },
  { method: 'POST', path: `/admin/nodes/${NODE_ID}/ban`, body: '{}' },
  {
    method: 'POST',
    path: '/v1/chat/completions',
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x' }] }),
  },
  { method: 'POST', path: '/v1/tabs/topup', body: JSON.stringify({ amount_msat: 5000 }) },
  { method: 'GET', path: '/v1/tabs/me' },
  { method: 'POST', path: '/v1/tabs/refund', body: JSON.stringify({ bolt11: 'lnbcrt1xxxxxxxxxxxx' }) },
  { method: 'POST', path: '/v1/tabs/faucet', body: JSON.stringify({ bolt11: 'lnbcrt1xxxxxxxxxxxx' }) },
];

test('every protected route, under every spelling of its path, refuses a caller without credentials', async () => {
  for (const route of PROTECTED) {
    for (const path of pathVariants(route.path)) {
      const answer = await raw(route.method, path, route.body);
      assert.ok(
        answer.status >= 400 && answer.status < 500,
        `${route.method} ${path}: ${answer.status} ${answer.text.slice(0, 200)}`,
      );
    }
  }
});

test('the percent-encoded admin path reaches the admin route and is authenticated there', async () => {
  const bypass = await raw('GET', '/%61dmin/apikeys');
  assert.equal(bypass.status, 401, bypass.text);
  assert.equal((JSON.parse(bypass.text) as { error: { code: string } }).error.code, 'UNAUTHORIZED');
  // A non-operator's valid signature over the encoded URL is refused as well.
  const stranger = await raw('GET', '/%61dmin/apikeys', undefined, {
    authorization: createNip98Header(`${router.url}/%61dmin/apikeys`, 'GET', undefined, generateSecretKey()),
  });
  assert.equal(stranger.status, 403, stranger.text);
  // The operator still gets in (by the plain path), also with a body-less POST-style header.
  const ok = await raw('GET', '/admin/apikeys', undefined, {
    authorization: createNip98Header(`${router.url}/admin/apikeys`, 'GET', undefined, operatorKey),
  });
  assert.equal(ok.status, 200, ok.text);
});

test('NIP-98: a POST without a body and without a payload tag is accepted; a payload tag must hash the exact body', async () => {
  const path = `/admin/nodes/${NODE_ID}/ban`;
  const url = `${router.url}${path}`;
  const plain = await raw('POST', path, undefined, {
    authorization: createNip98Header(url, 'POST', undefined, operatorKey),
  });
  assert.equal(plain.status, 200, plain.text);
  // The old server hashed "null" for an absent body: such a header is now refused.
  const header = (payload: string) => {
    const event = finalizeEvent(
      {
        kind: 27235,
        created_at: Math.floor(Date.now() / 1000),
        tags: [
          ['u', url],
          ['method', 'POST'],
          ['payload', payload],
          ['nonce', String(Math.random())],
        ],
        content: '',
      },
      operatorKey,
    );
    return `Nostr ${Buffer.from(JSON.stringify(event)).toString('base64')}`;
  };
  const nullHash = await raw('POST', path, undefined, { authorization: header(sha256Hex('null')) });
  assert.equal(
    (JSON.parse(nullHash.text) as { error: { code: string } }).error.code,
    'AUTH_PAYLOAD_MISMATCH',
  );
  const emptyHash = await raw('POST', path, undefined, { authorization: header(sha256Hex('')) });
  assert.equal(emptyHash.status, 200, emptyHash.text);
});
