// Attack run against the wallet fleet's HTTP API: every owner route refuses callers without an
// owner's signature under any spelling of its path; another owner sees none of an owner's wallets;
// an agent's connection key is no owner key; bad bodies get reason codes, never a zod dump; an
// oversized body is refused before parsing; NIP-47 events with forged signatures or from the
// wrong kind never run.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import type { LightningBackend } from '@fed-ai/lightning';
import { createNip98Header, generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { nip44 } from 'nostr-tools';
import { finalizeEvent } from 'nostr-tools/pure';
import { pathVariants, rawRequest } from '../../router/test/raw-http';
import { walletFleetConfigSchema } from '../src/config';
import { type RunningWalletFleet, startWalletFleet } from '../src/wallet-fleet';

const dir = mkdtempSync(join(tmpdir(), 'fedai-wf-attacks-'));
const ownerKey = generateSecretKey();
const otherOwnerKey = generateSecretKey();
const fleetKey = generateSecretKey();
let fleet: RunningWalletFleet;
let walletId = '';

// No relay and no settlement: these attacks must be refused before either would be used. The
// backend below throws on every call, so a route that reached it would answer 5xx, not 4xx.
const unreachable = new Proxy({ name: 'settlement' } as LightningBackend, {
  get: (target, key) =>
    key === 'name' ? target.name : () => Promise.reject(new Error('the backend must not be reached')),
});

before(async () => {
  fleet = await startWalletFleet(
    walletFleetConfigSchema.parse({
      WALLET_FLEET_PORT: '0',
      WALLET_FLEET_KEY: secretKeyHex(fleetKey),
      FLEET_OWNER_PUBKEYS: `${publicKeyOf(ownerKey)},${publicKeyOf(otherOwnerKey)}`,
      RELAY_URLS: 'ws://127.0.0.1:9',
      SETTLEMENT_URL: 'http://127.0.0.1:9',
      DATA_DIR: dir,
      SWEEP_INTERVAL_MS: '600000',
    }),
    { backend: unreachable },
  );
  const created = await fleet.fleet.createWallet(publicKeyOf(ownerKey), {
    name: 'target',
    policy: { version: 1, mode: 'live', budgets: [], methods: ['get_balance'] },
  });
  walletId = created.id;
});

after(async () => {
  await fleet.close();
  rmSync(dir, { recursive: true, force: true });
});

const signed = (method: string, path: string, body: string | undefined, key: Uint8Array) =>
  rawRequest(fleet.url, method, path, body, {
    authorization: createNip98Header(`${fleet.url}${path}`, method, body, key),
  });

const OWNER_ROUTES = (): { method: string; path: string; body?: string }[] => [
  { method: 'GET', path: '/v1/wallets' },
  { method: 'POST', path: '/v1/wallets', body: JSON.stringify({ name: 'x', policy: {} }) },
  { method: 'GET', path: `/v1/wallets/${walletId}` },
  { method: 'PUT', path: `/v1/wallets/${walletId}/policy`, body: JSON.stringify({ policy: {} }) },
  { method: 'POST', path: `/v1/wallets/${walletId}/connections`, body: JSON.stringify({ name: 'x' }) },
  { method: 'DELETE', path: `/v1/connections/${'a'.repeat(64)}` },
  {
    method: 'POST',
    path: `/v1/wallets/${walletId}/fund`,
    body: JSON.stringify({ amount_msat: 1, op_id: 'x' }),
  },
  { method: 'PUT', path: `/v1/wallets/${walletId}/topup`, body: 'null' },
  { method: 'POST', path: '/v1/treasury/invoices', body: JSON.stringify({ amount_msat: 5000 }) },
  { method: 'GET', path: '/v1/treasury' },
  { method: 'GET', path: '/v1/approvals' },
  { method: 'POST', path: '/v1/approvals/ap_x/approve', body: '{}' },
  { method: 'POST', path: '/v1/approvals/ap_x/deny', body: '{}' },
  { method: 'GET', path: '/v1/funding-requests' },
  { method: 'POST', path: '/v1/funding-requests/fr_x/approve', body: '{}' },
  {
    method: 'POST',
    path: '/v1/switches',
    body: JSON.stringify({ target: { fleet: true }, status: 'killed' }),
  },
  { method: 'GET', path: '/v1/audit/export' },
  { method: 'GET', path: '/v1/audit/verify' },
];

test('every owner route, under every spelling of its path, refuses a caller without an owner signature', async () => {
  let checked = 0;
  for (const route of OWNER_ROUTES())
    for (const path of pathVariants(route.path)) {
      const answer = await rawRequest(fleet.url, route.method, path, route.body);
      assert.ok(
        answer.status >= 400 && answer.status < 500,
        `${route.method} ${path}: ${answer.status} ${answer.text.slice(0, 160)}`,
      );
      checked += 1;
    }
  assert.equal(checked, OWNER_ROUTES().length * pathVariants('/a/b').length);
  // Nothing changed: still one wallet, active, no kill in the audit log.
  const wallets = await fleet.fleet.listWallets(publicKeyOf(ownerKey));
  assert.deepEqual(
    wallets.map((w) => w.status),
    ['active'],
  );
});

test('a key that is not an owner, an agent connection key, and another owner are all refused the wallet', async () => {
  const stranger = await signed('GET', '/v1/wallets', undefined, generateSecretKey());
  assert.equal(stranger.status, 403);
  const other = await signed('GET', `/v1/wallets/${walletId}`, undefined, otherOwnerKey);
  assert.equal(other.status, 404, 'another owner learns nothing, not even that the id exists');
  const otherKill = await signed(
    'POST',
    '/v1/switches',
    JSON.stringify({ target: { wallet: walletId }, status: 'killed' }),
    otherOwnerKey,
  );
  assert.equal(otherKill.status, 404);
  const { secretHex } = await fleet.fleet.connect(publicKeyOf(ownerKey), walletId, { name: 'agent' });
  const agent = await signed('GET', '/v1/wallets', undefined, Uint8Array.from(Buffer.from(secretHex, 'hex')));
  assert.equal(agent.status, 403, 'a connection key is no owner key');
  assert.equal((await fleet.fleet.walletIn(fleet.fleet.db, walletId))?.status, 'active');
});

test('a replayed owner request is refused', async () => {
  const body = JSON.stringify({ target: { wallet: walletId }, status: 'paused' });
  const header = createNip98Header(`${fleet.url}/v1/switches`, 'POST', body, ownerKey);
  const first = await rawRequest(fleet.url, 'POST', '/v1/switches', body, { authorization: header });
  assert.equal(first.status, 200, first.text);
  const again = await rawRequest(fleet.url, 'POST', '/v1/switches', body, { authorization: header });
  assert.equal(again.status, 409);
  assert.match(again.text, /REPLAYED/);
  await signed(
    'POST',
    '/v1/switches',
    JSON.stringify({ target: { wallet: walletId }, status: 'active' }),
    ownerKey,
  );
});

test('bad bodies: reason codes and short messages, never a stack trace or a zod dump; oversized bodies refused', async () => {
  const cases: [string, string, string][] = [
    ['POST', '/v1/wallets', '{not json'],
    ['POST', '/v1/wallets', JSON.stringify({ name: 'x', policy: { version: 2 } })],
    [
      'POST',
      '/v1/wallets',
      JSON.stringify({ name: 'x', policy: { version: 1, mode: 'live', budgets: [], methods: [], extra: 1 } }),
    ],
    ['POST', `/v1/wallets/${walletId}/fund`, JSON.stringify({ amount_msat: 1.5, op_id: 'x' })],
    ['POST', `/v1/wallets/${walletId}/fund`, JSON.stringify({ amount_msat: 10, op_id: '../../etc' })],
    [
      'PUT',
      `/v1/wallets/${walletId}/topup`,
      JSON.stringify({ low_msat: 10, high_msat: 5, budget_msat_per_day: 1 }),
    ],
    ['POST', '/v1/switches', JSON.stringify({ target: { fleet: false }, status: 'killed' })],
    ['POST', '/v1/treasury/invoices', JSON.stringify({ amount_msat: -5 })],
  ];
  for (const [method, path, body] of cases) {
    const answer = await signed(method, path, body, ownerKey);
    assert.equal(answer.status, 400, `${method} ${path} ${body}: ${answer.status} ${answer.text}`);
    const parsed = JSON.parse(answer.text) as { error: { code: string; message: string } };
    assert.match(parsed.error.code, /^[A-Z_]+$/);
    assert.ok(parsed.error.message.length < 400, parsed.error.message);
    assert.doesNotMatch(answer.text, /at \S+ \(|node_modules|"issues"|ZodError/);
  }
  const huge = JSON.stringify({ name: 'x'.repeat(100_000), policy: {} });
  const tooBig = await signed('POST', '/v1/wallets', huge, ownerKey);
  assert.equal(tooBig.status, 413);
});

test('NIP-47: a forged signature, another kind, another audience or a stale event never runs nor leaves a row', async () => {
  const { secretHex } = await fleet.fleet.connect(publicKeyOf(ownerKey), walletId, { name: 'agent-2' });
  const client = Uint8Array.from(Buffer.from(secretHex, 'hex'));
  const make = (over: { kind?: number; p?: string; created_at?: number } = {}) =>
    finalizeEvent(
      {
        kind: over.kind ?? 23194,
        created_at: over.created_at ?? Math.floor(Date.now() / 1000),
        tags: [
          ['p', over.p ?? fleet.pubkey],
          ['encryption', 'nip44_v2'],
        ],
        content: nip44.v2.encrypt(
          JSON.stringify({ method: 'get_balance', params: {} }),
          nip44.v2.utils.getConversationKey(client, fleet.pubkey),
        ),
      },
      client,
    );
  const forged = { ...make(), sig: make().sig.replace(/^./, (c) => (c === '0' ? '1' : '0')) };
  const tampered = { ...make(), content: make().content.slice(0, -4) + 'AAAA' };
  const events = [
    forged,
    tampered,
    make({ kind: 23195 }),
    make({ p: publicKeyOf(generateSecretKey()) }),
    make({ created_at: Math.floor(Date.now() / 1000) - 3600 }),
    { ...make(), content: 'x'.repeat(70_000) },
  ];
  for (const event of events) await fleet.nwc.handle(event);
  const rows = await fleet.fleet.db.query<{ n: number }>(
    'SELECT count(*) AS n FROM wf_nwc_requests WHERE event_id = ANY($1)',
    [events.map((e) => e.id)],
  );
  assert.equal(Number(rows.rows[0]?.n), 0);
});
