// Attack run against the owner dashboard's routes: no signature (any spelling of the path), a key
// that is not an owner, an agent's connection key, a replayed event, and an event signed for
// another URL or method are refused in the error shape; another owner sees none of an owner's
// wallets; query parameters are validated; the page carries the strict CSP.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { DASHBOARD_CSP } from '@fed-ai/dashboard';
import type { LightningBackend } from '@fed-ai/lightning';
import { createNip98Header, generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { pathVariants, rawRequest } from '../../router/test/raw-http';
import { walletFleetConfigSchema } from '../src/config';
import { type RunningWalletFleet, startWalletFleet } from '../src/wallet-fleet';

const dir = mkdtempSync(join(tmpdir(), 'fedai-wf-dashboard-'));
const ownerKey = generateSecretKey();
const otherOwnerKey = generateSecretKey();
let fleet: RunningWalletFleet;
let walletId = '';

// Nothing here may reach the backend: a route that did would answer 5xx.
const unreachable = new Proxy({ name: 'settlement' } as LightningBackend, {
  get: (target, key) =>
    key === 'name' ? target.name : () => Promise.reject(new Error('the backend must not be reached')),
});

const ROUTES = ['/v1/dashboard/whoami', '/v1/dashboard/overview', '/v1/dashboard/overview?payments=5'];

before(async () => {
  fleet = await startWalletFleet(
    walletFleetConfigSchema.parse({
      WALLET_FLEET_PORT: '0',
      WALLET_FLEET_KEY: secretKeyHex(generateSecretKey()),
      FLEET_OWNER_PUBKEYS: `${publicKeyOf(ownerKey)},${publicKeyOf(otherOwnerKey)}`,
      RELAY_URLS: 'ws://127.0.0.1:9',
      SETTLEMENT_URL: 'http://127.0.0.1:9',
      DATA_DIR: dir,
      SWEEP_INTERVAL_MS: '600000',
    }),
    { backend: unreachable },
  );
  walletId = (
    await fleet.fleet.createWallet(publicKeyOf(ownerKey), {
      name: 'target',
      policy: { version: 1, mode: 'live', budgets: [], methods: ['get_balance'] },
    })
  ).id;
});

after(async () => {
  await fleet.close();
  rmSync(dir, { recursive: true, force: true });
});

const signed = (path: string, key = ownerKey, signedPath = path, signedMethod = 'GET') =>
  rawRequest(fleet.url, 'GET', path, undefined, {
    authorization: createNip98Header(`${fleet.url}${signedPath}`, signedMethod, undefined, key),
  });

const codeOf = (text: string) => (JSON.parse(text) as { error: { code: string } }).error.code;

test('every dashboard route, under every spelling of its path, refuses a request without a signature', async () => {
  for (const route of ROUTES)
    for (const path of pathVariants(route)) {
      const answer = await rawRequest(fleet.url, 'GET', path);
      assert.ok(answer.status >= 400 && answer.status < 500, `${path}: ${answer.status} ${answer.text}`);
      assert.ok(codeOf(answer.text).length > 0, 'the error shape');
      assert.ok(!answer.text.includes('"wallets"'), 'no data');
    }
});

test('a stranger and an agent connection key get 403 FORBIDDEN; another owner sees none of the wallets', async () => {
  const { secretHex } = await fleet.fleet.connect(publicKeyOf(ownerKey), walletId, { name: 'agent' });
  const agentKey = Uint8Array.from(Buffer.from(secretHex, 'hex'));
  for (const route of ROUTES) {
    for (const key of [generateSecretKey(), agentKey]) {
      const answer = await signed(route, key);
      assert.equal(answer.status, 403, `${route}: ${answer.text}`);
      assert.equal(codeOf(answer.text), 'FORBIDDEN');
    }
  }
  const mine = JSON.parse((await signed('/v1/dashboard/overview')).text) as { wallets: { id: string }[] };
  assert.deepEqual(
    mine.wallets.map((w) => w.id),
    [walletId],
  );
  const theirs = await signed('/v1/dashboard/overview', otherOwnerKey);
  assert.equal(theirs.status, 200, theirs.text);
  const other = JSON.parse(theirs.text) as { wallets: unknown[]; switches: { scope: string }[] };
  assert.deepEqual(other.wallets, []);
  assert.ok(!theirs.text.includes(walletId));
  assert.ok(other.switches.every((s) => s.scope.includes(publicKeyOf(otherOwnerKey))));
  const who = JSON.parse((await signed('/v1/dashboard/whoami', otherOwnerKey)).text) as { pubkey: string };
  assert.equal(who.pubkey, publicKeyOf(otherOwnerKey));
});

test('a replayed event, and an event signed for another URL or method, are refused', async () => {
  for (const route of ROUTES) {
    const header = createNip98Header(`${fleet.url}${route}`, 'GET', undefined, ownerKey);
    const first = await rawRequest(fleet.url, 'GET', route, undefined, { authorization: header });
    assert.equal(first.status, 200, `${route}: ${first.text}`);
    const again = await rawRequest(fleet.url, 'GET', route, undefined, { authorization: header });
    assert.equal(codeOf(again.text), 'REPLAYED', route);
    assert.equal(codeOf((await signed(route, ownerKey, '/v1/wallets')).text), 'AUTH_URL_MISMATCH');
    assert.equal(codeOf((await signed(route, ownerKey, route, 'POST')).text), 'AUTH_METHOD_MISMATCH');
  }
});

test('query parameters are validated and the answer holds no invoice or preimage', async () => {
  for (const path of [
    '/v1/dashboard/overview?payments=0',
    '/v1/dashboard/overview?payments=201',
    '/v1/dashboard/overview?payments=x',
    '/v1/dashboard/overview?owner=someone',
    '/v1/dashboard/whoami?x=1',
  ]) {
    const answer = await signed(path);
    assert.equal(answer.status, 400, `${path}: ${answer.text}`);
    assert.equal(codeOf(answer.text), 'INVALID_REQUEST');
  }
  const overview = await signed('/v1/dashboard/overview');
  assert.doesNotMatch(overview.text, /bolt11|preimage|secret/);
});

test('the page carries the strict CSP', async () => {
  const response = await fetch(`${fleet.url}/dashboard`);
  assert.equal(response.status, 200);
  assert.equal(response.headers.get('content-security-policy'), DASHBOARD_CSP);
  assert.match(await response.text(), /data-app="fleet"/);
});
