// Attack run (issue #9) against the settlement service: every protected route refuses callers
// without credentials under any spelling of its path; a stranger's signed envelopes leave no rows
// in the replay store; malformed captures and repeated faucet payments get reason-coded answers.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  ChannelKeys,
  createEnvelope,
  createMacEnvelope,
  createNip98Header,
  generateSecretKey,
  KIND,
  publicKeyOf,
} from '@fed-ai/protocol';
import { pathVariants, rawRequest } from '../../router/test/raw-http';
import { settlementConfigSchema } from '../src/config';
import { type RunningSettlement, startSettlement } from '../src/settlement';

const dir = mkdtempSync(join(tmpdir(), 'fedai-settlement-attacks-'));
const routerKey = generateSecretKey();
const walletKey = generateSecretKey();
let settlement: RunningSettlement;

before(async () => {
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: dir,
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
      SETTLEMENT_OPERATOR_PUBKEYS: publicKeyOf(routerKey),
      SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(walletKey),
      FAUCET: 'true',
    }),
  );
});

after(async () => {
  await settlement.close();
  rmSync(dir, { recursive: true, force: true });
});

const raw = (method: string, path: string, body?: string, headers: Record<string, string> = {}) =>
  rawRequest(settlement.url, method, path, body, headers);

const PROTECTED: { method: string; path: string; body?: string }[] = [
  { method: 'POST', path: '/v1/ops', body: '{}' },
  { method: 'POST', path: '/v1/topups', body: JSON.stringify({ payer: 'p', amount_msat: 5000 }) },
  { method: 'POST', path: '/v1/faucet/pay', body: JSON.stringify({ bolt11: 'lnbcrt1xxxxxxxxxxxx' }) },
  { method: 'POST', path: '/v1/refunds', body: JSON.stringify({ payer: 'p', bolt11: 'lnbcrt1xxxxxxxxx' }) },
  { method: 'GET', path: '/v1/ledger/verify' },
  { method: 'GET', path: '/v1/backend' },
  { method: 'GET', path: '/v1/admin/overview' },
  { method: 'POST', path: '/v1/admin/reconcile', body: '{}' },
  {
    method: 'PUT',
    path: '/v1/payouts/destination',
    body: JSON.stringify({ kind: 'lightning_address', address: 'a@example.com' }),
  },
  { method: 'GET', path: '/v1/payouts' },
  { method: 'POST', path: '/v1/admin/payouts/run', body: '{}' },
  { method: 'GET', path: '/v1/tabs/some-payer' },
  { method: 'POST', path: '/v1/account/invoices', body: JSON.stringify({ amount_msat: 5000 }) },
  { method: 'GET', path: `/v1/account/invoices/${'a'.repeat(64)}` },
  { method: 'POST', path: '/v1/account/payments', body: JSON.stringify({ bolt11: 'lnbcrt1xxxxxxxxx' }) },
  { method: 'GET', path: `/v1/account/payments/${'a'.repeat(64)}` },
  { method: 'GET', path: '/v1/account/balance' },
];

test('every protected route, under every spelling of its path, refuses a caller without credentials', async () => {
  let checked = 0;
  for (const route of PROTECTED) {
    for (const path of pathVariants(route.path)) {
      const answer = await raw(route.method, path, route.body);
      assert.ok(
        answer.status >= 400 && answer.status < 500,
        `${route.method} ${path}: ${answer.status} ${answer.text.slice(0, 200)}`,
      );
      checked += 1;
    }
  }
  assert.equal(checked, PROTECTED.length * pathVariants('/a/b').length);
});

/** Ids the replay store holds: in memory on PGlite (its gauge on /metrics) plus its database rows. */
async function replayRows(): Promise<number> {
  const result = await settlement.ledger.db.query<{ n: string | number }>(
    'SELECT count(*) AS n FROM replay_ids',
  );
  const metrics = await (await fetch(`${settlement.url}/metrics`)).text();
  const inMemory = /^fedai_replay_ids_in_memory\{[^}]*\} (\d+)$/m.exec(metrics);
  assert.ok(inMemory, 'the replay gauge is on /metrics');
  return Number(result.rows[0]?.n) + Number(inMemory[1]);
}

test('an unknown key: validly signed envelopes and NIP-98 headers are refused and leave no replay rows', async () => {
  const stranger = generateSecretKey();
  const before = await replayRows();
  for (let i = 0; i < 5; i++) {
    const envelope = createEnvelope(
      KIND.settlementRequest,
      { op: 'release', op_id: `op-stranger-${i}` },
      { audience: settlement.pubkey, tags: [['nonce', String(i)]] },
      stranger,
    );
    const answer = await raw('POST', '/v1/ops', JSON.stringify(envelope));
    assert.equal(answer.status, 403, answer.text);
    assert.equal((JSON.parse(answer.text) as { error: { code: string } }).error.code, 'FORBIDDEN');
    const body = JSON.stringify({ payer: 'p', amount_msat: 5000 });
    const nip98 = await raw('POST', '/v1/topups', body, {
      authorization: createNip98Header(`${settlement.url}/v1/topups`, 'POST', body, stranger),
    });
    assert.equal(nip98.status, 403, nip98.text);
  }
  // A stranger's MAC envelope (as if it shared a channel with settlement) is refused the same way.
  const strangerMac = createMacEnvelope(
    KIND.settlementRequest,
    { op: 'release', op_id: 'op-stranger-mac' },
    { audience: settlement.pubkey, tags: [['nonce', 'mac']] },
    new ChannelKeys(stranger),
  );
  const macAnswer = await raw('POST', '/v1/ops', JSON.stringify(strangerMac));
  assert.equal(macAnswer.status, 401, macAnswer.text);
  assert.equal((JSON.parse(macAnswer.text) as { error: { code: string } }).error.code, 'BAD_SIGNATURE');
  assert.equal(await replayRows(), before, 'no row written for a stranger');
  // The allowed router's envelope is recorded (the count can move at all).
  const own = createEnvelope(
    KIND.settlementRequest,
    { op: 'release', op_id: 'op-own-00001' },
    { audience: settlement.pubkey, tags: [['nonce', 'own']] },
    routerKey,
  );
  const ok = await raw('POST', '/v1/ops', JSON.stringify(own));
  assert.equal(ok.status, 200, ok.text);
  assert.equal(await replayRows(), before + 1);
  const replay = await raw('POST', '/v1/ops', JSON.stringify(own));
  assert.equal((JSON.parse(replay.text) as { error: { code: string } }).error.code, 'REPLAYED');
  // The allowed router's MAC envelope is taken (settlement offers mac-v1), and recorded once too.
  const info = (await (await fetch(`${settlement.url}/v1/info`)).json()) as { auth: string[] };
  assert.deepEqual(info.auth, ['mac-v1']);
  const ownMac = createMacEnvelope(
    KIND.settlementRequest,
    { op: 'release', op_id: 'op-own-mac-01' },
    { audience: settlement.pubkey, tags: [['nonce', 'own-mac']] },
    new ChannelKeys(routerKey),
  );
  assert.equal((await raw('POST', '/v1/ops', JSON.stringify(ownMac))).status, 200);
  assert.equal(await replayRows(), before + 2);
  const macReplay = await raw('POST', '/v1/ops', JSON.stringify(ownMac));
  assert.equal((JSON.parse(macReplay.text) as { error: { code: string } }).error.code, 'REPLAYED');
});

test('a capture whose metering is the string "null" (or any non-object) is 400 BAD_METERING, not 500', async () => {
  for (const [i, metering] of ['null', '42', '"text"', '[]'].entries()) {
    const envelope = createEnvelope(
      KIND.settlementRequest,
      { op: 'capture', op_id: `op-bad-metering-${i}`, amount_msat: 1, node: 'a'.repeat(64), metering },
      { audience: settlement.pubkey, tags: [['nonce', `m${i}`]] },
      routerKey,
    );
    const answer = await raw('POST', '/v1/ops', JSON.stringify(envelope));
    assert.equal(answer.status, 400, `${metering}: ${answer.text}`);
    assert.equal((JSON.parse(answer.text) as { error: { code: string } }).error.code, 'BAD_METERING');
  }
});

test('the faucet pays an invoice once; paying it again answers 409 ALREADY_PAID', async () => {
  const signed = (path: string, body: string) =>
    raw('POST', path, body, {
      authorization: createNip98Header(`${settlement.url}${path}`, 'POST', body, routerKey),
    });
  const topup = await signed('/v1/topups', JSON.stringify({ payer: 'faucet-twice', amount_msat: 5000 }));
  assert.equal(topup.status, 200, topup.text);
  const { bolt11 } = JSON.parse(topup.text) as { bolt11: string };
  const first = await signed('/v1/faucet/pay', JSON.stringify({ bolt11 }));
  assert.equal(first.status, 200, first.text);
  assert.equal((JSON.parse(first.text) as { credited_msat: number }).credited_msat, 5000);
  const second = await signed('/v1/faucet/pay', JSON.stringify({ bolt11 }));
  assert.equal(second.status, 409, second.text);
  assert.equal((JSON.parse(second.text) as { error: { code: string } }).error.code, 'ALREADY_PAID');
  assert.equal((await settlement.books.tab('faucet-twice')).balance_msat, 5000, 'credited once');
});

test('NIP-98 GET without a payload tag is accepted; error messages carry no JSON-parser text', async () => {
  const path = '/v1/tabs/faucet-twice';
  const ok = await raw('GET', path, undefined, {
    authorization: createNip98Header(`${settlement.url}${path}`, 'GET', undefined, routerKey),
  });
  assert.equal(ok.status, 200, ok.text);
  const body = '{"payer":';
  const broken = await raw('POST', '/v1/topups', body, {
    authorization: createNip98Header(`${settlement.url}/v1/topups`, 'POST', body, routerKey),
  });
  assert.equal(broken.status, 400);
  const error = (JSON.parse(broken.text) as { error: { code: string; message: string } }).error;
  assert.equal(error.code, 'INVALID_REQUEST');
  assert.doesNotMatch(error.message, /position|Unexpected|JSON at/);
});

test("account routes: a router's or a stranger's key is refused and leaves no replay rows; a wallet key cannot use router routes", async () => {
  const sign = (key: Uint8Array, method: string, path: string, body?: string) =>
    raw(method, path, body, {
      authorization: createNip98Header(`${settlement.url}${path}`, method, body, key),
    });
  const before = await replayRows();
  const hash = 'b'.repeat(64);
  for (const key of [routerKey, generateSecretKey()]) {
    for (const [method, path, body] of [
      ['POST', '/v1/account/invoices', JSON.stringify({ amount_msat: 5000 })],
      ['GET', `/v1/account/invoices/${hash}`, undefined],
      ['POST', '/v1/account/payments', JSON.stringify({ bolt11: 'lnbcrt1xxxxxxxxx' })],
      ['GET', `/v1/account/payments/${hash}`, undefined],
      ['GET', '/v1/account/balance', undefined],
    ] as const) {
      const answer = await sign(key, method, path, body);
      assert.equal(answer.status, 403, `${method} ${path}: ${answer.text}`);
      assert.equal((JSON.parse(answer.text) as { error: { code: string } }).error.code, 'FORBIDDEN');
    }
  }
  assert.equal(await replayRows(), before, 'no row written for a refused key');
  // A wallet key names no payer: the router routes (which take one) refuse it.
  for (const [path, body] of [
    ['/v1/refunds', JSON.stringify({ payer: 'victim', bolt11: 'lnbcrt1xxxxxxxxx' })],
    ['/v1/topups', JSON.stringify({ payer: 'victim', amount_msat: 5000 })],
    ['/v1/faucet/pay', JSON.stringify({ bolt11: 'lnbcrt1xxxxxxxxx' })],
  ] as const) {
    const answer = await sign(walletKey, 'POST', path, body);
    assert.equal(answer.status, 403, `${path}: ${answer.text}`);
  }
  const tab = await sign(walletKey, 'GET', '/v1/tabs/victim');
  assert.equal(tab.status, 403, tab.text);
  // A signature for one account route does not open another (the URL is signed).
  const url = `${settlement.url}/v1/account/balance`;
  const moved = await raw('GET', `/v1/account/payments/${hash}`, undefined, {
    authorization: createNip98Header(url, 'GET', undefined, walletKey),
  });
  assert.equal(moved.status, 401, moved.text);
  const own = await sign(walletKey, 'GET', '/v1/account/balance');
  assert.equal(own.status, 200, own.text);
  assert.deepEqual(JSON.parse(own.text), { balance_msat: 0, reserved_msat: 0 });
});

test('payout routes: a stranger cannot run payouts or name a destination; bad destinations are reason-coded', async () => {
  const stranger = generateSecretKey();
  const sign = (key: Uint8Array, method: string, path: string, body?: string) =>
    raw(method, path, body, {
      'content-type': 'application/json',
      authorization: createNip98Header(`${settlement.url}${path}`, method, body, key),
    });
  const run = await sign(stranger, 'POST', '/v1/admin/payouts/run', '{}');
  assert.equal(run.status, 403, run.text);
  const destination = JSON.stringify({ kind: 'lightning_address', address: 'me@example.com' });
  const set = await sign(stranger, 'PUT', '/v1/payouts/destination', destination);
  assert.equal(set.status, 404, set.text);
  assert.match(set.text, /NOT_FOUND/, 'only a key with earnings here has payouts');
  for (const body of [
    JSON.stringify({ kind: 'lightning_address', address: 'not an address' }),
    JSON.stringify({ kind: 'nwc', uri: 'https://example.com/not-nwc' }),
    JSON.stringify({ kind: 'bank', iban: 'x' }),
    '{"kind":',
  ]) {
    const answer = await sign(stranger, 'PUT', '/v1/payouts/destination', body);
    assert.equal(answer.status, 400, `${body}: ${answer.status} ${answer.text}`);
    assert.match(answer.text, /INVALID_REQUEST/);
  }
  const mine = await sign(stranger, 'GET', '/v1/payouts');
  assert.equal(mine.status, 200, mine.text);
  assert.deepEqual(JSON.parse(mine.text), {
    node: publicKeyOf(stranger),
    destination: null,
    earnings_msat: 0,
    payouts: [],
  });
  const operator = await sign(routerKey, 'POST', '/v1/admin/payouts/run', '{}');
  assert.equal(operator.status, 200, operator.text);
  assert.deepEqual(JSON.parse(operator.text), { outcomes: [] });
});
