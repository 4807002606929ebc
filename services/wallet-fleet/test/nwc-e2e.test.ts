// The unmodified @getalby/sdk NWCClient against the wallet fleet over a real relay process on
// 127.0.0.1, with the fleet's money in an account at a real settlement service: info, balance,
// invoices, paying a router tab top-up exactly once, approvals, kill switch, dry run, and the
// request checks (unknown client, expired request, duplicate event, NIP-04 when disabled).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { verifyLedger } from '@fed-ai/ledger';
import { createNip98Header, generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '@fed-ai/settlement';
import { nip04, nip44 } from 'nostr-tools';
import { finalizeEvent } from 'nostr-tools/pure';
import WebSocket from 'ws';
import { walletFleetConfigSchema } from '../src/config';
import { type RunningWalletFleet, startWalletFleet } from '../src/wallet-fleet';

(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket; // @getalby/sdk on Node 20
const { NWCClient } = await import('@getalby/sdk/nwc');

const dir = mkdtempSync(join(tmpdir(), 'fedai-wf-'));
const ownerKey = generateSecretKey();
const owner = publicKeyOf(ownerKey);
const fleetKey = generateSecretKey();
let relay: RunningRelay;
let settlement: RunningSettlement;
let fleet: RunningWalletFleet;
const clients: { close(): void }[] = [];

const fleetConfig = () =>
  walletFleetConfigSchema.parse({
    WALLET_FLEET_PORT: '0',
    WALLET_FLEET_KEY: secretKeyHex(fleetKey),
    FLEET_OWNER_PUBKEYS: owner,
    RELAY_URLS: relay.url,
    SETTLEMENT_URL: settlement.url,
    DATA_DIR: join(dir, 'fleet'),
    SWEEP_INTERVAL_MS: '200',
  });

before(async () => {
  relay = await startRelay({ port: 0 });
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      FAUCET: 'true',
      SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(fleetKey),
    }),
  );
  fleet = await startWalletFleet(fleetConfig());
});

after(async () => {
  for (const c of clients) c.close();
  await fleet.close();
  await settlement.close();
  await relay.close();
  rmSync(dir, { recursive: true, force: true });
});

async function ownerCall(method: 'GET' | 'POST' | 'PUT', path: string, body?: unknown, key = ownerKey) {
  const url = `${fleet.url}${path}`;
  const text = body === undefined ? undefined : JSON.stringify(body);
  const response = await fetch(url, {
    method,
    headers: { 'content-type': 'application/json', authorization: createNip98Header(url, method, text, key) },
    ...(text === undefined ? {} : { body: text }),
  });
  const type = response.headers.get('content-type') ?? '';
  return {
    status: response.status,
    body: type.startsWith('application/json')
      ? ((await response.json()) as Record<string, unknown>)
      : await response.text(),
  };
}

async function until<T>(
  what: string,
  check: () => Promise<T | undefined | null | false>,
  limitMs = 30_000,
): Promise<T> {
  const started = Date.now();
  while (Date.now() - started < limitMs) {
    const value = await check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`waited ${limitMs} ms for ${what}`);
}

const policy = (extra: Record<string, unknown> = {}) => ({
  version: 1,
  mode: 'live',
  maxPaymentMsat: 60_000,
  budgets: [
    { id: 'daily', limitMsat: 100_000, period: { kind: 'calendar', unit: 'day', timeZone: 'Europe/Berlin' } },
  ],
  approvalAboveMsat: 20_000,
  methods: [
    'pay_invoice',
    'make_invoice',
    'lookup_invoice',
    'list_transactions',
    'get_balance',
    'get_info',
    'get_budget',
  ],
  ...extra,
});

async function fundedWallet(name: string, amountMsat: number, walletPolicy = policy()) {
  const created = await ownerCall('POST', '/v1/wallets', { name, policy: walletPolicy });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const id = (created.body as { id: string }).id;
  const invoice = await ownerCall('POST', '/v1/treasury/invoices', { amount_msat: amountMsat });
  assert.equal(invoice.status, 200, JSON.stringify(invoice.body));
  await settlement.books.faucetPay((invoice.body as { bolt11: string }).bolt11);
  await until('treasury credited', async () => {
    const t = await ownerCall('GET', '/v1/treasury');
    return (t.body as { balance_msat: number }).balance_msat >= amountMsat;
  });
  const moved = await ownerCall('POST', `/v1/wallets/${id}/fund`, {
    amount_msat: amountMsat,
    op_id: `fund-${name}`,
  });
  assert.equal(moved.status, 200, JSON.stringify(moved.body));
  // The same move again (a retried call) moves nothing.
  await ownerCall('POST', `/v1/wallets/${id}/fund`, { amount_msat: amountMsat, op_id: `fund-${name}` });
  const connection = await ownerCall('POST', `/v1/wallets/${id}/connections`, { name: `${name}-agent` });
  const { uri, client_pubkey } = connection.body as { uri: string; client_pubkey: string };
  assert.match(uri, /^nostr\+walletconnect:\/\/[0-9a-f]{64}\?relay=.+&secret=[0-9a-f]{64}$/);
  const client = new NWCClient({ nostrWalletConnectUrl: uri });
  clients.push(client);
  return { id, client, clientPubkey: client_pubkey, uri };
}

const tabBalance = async (payer: string) => (await settlement.books.tab(payer)).balance_msat;

test('NWCClient: info, balance, make/lookup invoice with a notification, pay a router tab top-up exactly once, list', async () => {
  const { id, client } = await fundedWallet('alice', 80_000);
  const info = await client.getInfo();
  assert.equal(info.pubkey, fleet.pubkey);
  assert.ok(info.methods.includes('pay_invoice'));
  const walletInfo = await client.getWalletServiceInfo();
  assert.deepEqual(walletInfo.encryptions, ['nip44_v2']);
  assert.equal((await client.getBalance()).balance, 80_000);

  const received: string[] = [];
  const unsubscribe = await client.subscribeNotifications((n) =>
    received.push(`${n.notification_type}:${n.notification.payment_hash}`),
  );
  const incoming = await client.makeInvoice({ amount: 5_000, description: 'for alice' });
  assert.match(incoming.invoice, /^lnbcrt/);
  await settlement.books.faucetPay(incoming.invoice);
  await until('invoice credited', async () => (await client.getBalance()).balance === 85_000);
  const looked = await client.lookupInvoice({ payment_hash: incoming.payment_hash });
  assert.equal(looked.state, 'settled');
  assert.equal(
    createHash('sha256').update(Buffer.from(looked.preimage, 'hex')).digest('hex'),
    incoming.payment_hash,
  );
  await until('payment_received notification', async () =>
    received.includes(`payment_received:${incoming.payment_hash}`),
  );

  // A router's tab top-up invoice (what POST /v1/tabs/topup returns), paid over NWC.
  const topup = await settlement.books.openTopup('key_alice_app', 10_000);
  const paid = await client.payInvoice({ invoice: topup.bolt11 });
  assert.equal(
    createHash('sha256').update(Buffer.from(paid.preimage, 'hex')).digest('hex'),
    topup.paymentHash,
  );
  assert.equal(await tabBalance('key_alice_app'), 10_000, 'tab credited');
  assert.equal((await client.getBalance()).balance, 75_000);
  await until('payment_sent notification', async () =>
    received.includes(`payment_sent:${topup.paymentHash}`),
  );
  // The same invoice again: refused, no second debit anywhere.
  await assert.rejects(client.payInvoice({ invoice: topup.bolt11 }), (e: Error & { code?: string }) =>
    /ALREADY_PAID/.test(e.message),
  );
  assert.equal(await tabBalance('key_alice_app'), 10_000);
  assert.equal((await client.getBalance()).balance, 75_000);

  const listed = await client.listTransactions({});
  const hashes = listed.transactions.map((t) => `${t.type}:${t.payment_hash}:${t.state}`);
  assert.ok(hashes.includes(`incoming:${incoming.payment_hash}:settled`));
  assert.ok(hashes.includes(`outgoing:${topup.paymentHash}:settled`));
  const budget = await client.getBudget();
  assert.equal((budget as { used_budget: number }).used_budget, 10_000);
  assert.equal((budget as { total_budget: number }).total_budget, 100_000);
  unsubscribe();

  const view = await ownerCall('GET', `/v1/wallets/${id}`);
  assert.equal((view.body as { balance_msat: number }).balance_msat, 75_000);
  assert.deepEqual((await fleet.verifyLedger()).problems, []);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

test('policy over NWC: cap and budget answer QUOTA_EXCEEDED; above the threshold a payment waits for the owner, then goes through once', async () => {
  const { client } = await fundedWallet('bob', 90_000);
  const tooBig = await settlement.books.openTopup('key_bob', 70_000);
  await assert.rejects(
    client.payInvoice({ invoice: tooBig.bolt11 }),
    (e: Error & { code?: string }) => e.code === 'QUOTA_EXCEEDED' && /OVER_PAYMENT_CAP/.test(e.message),
  );
  const big = await settlement.books.openTopup('key_bob', 25_000);
  let approvalId = '';
  await assert.rejects(client.payInvoice({ invoice: big.bolt11 }), (e: Error & { code?: string }) => {
    approvalId = /approval id (ap_[0-9a-f]+)/.exec(e.message)?.[1] ?? '';
    return e.code === 'RESTRICTED' && approvalId !== '';
  });
  assert.equal(await tabBalance('key_bob'), 0, 'a challenged payment moves nothing');
  const pending = await ownerCall('GET', '/v1/approvals');
  assert.ok((pending.body as { approvals: { id: string }[] }).approvals.some((a) => a.id === approvalId));
  // Another key cannot approve.
  assert.equal(
    (await ownerCall('POST', `/v1/approvals/${approvalId}/approve`, undefined, generateSecretKey())).status,
    403,
  );
  assert.equal((await ownerCall('POST', `/v1/approvals/${approvalId}/approve`)).status, 200);
  const paid = await client.payInvoice({ invoice: big.bolt11 });
  assert.ok(paid.preimage);
  assert.equal(await tabBalance('key_bob'), 25_000);
  // The approval was for that invoice once: a new invoice above the threshold is challenged again.
  const next = await settlement.books.openTopup('key_bob', 21_000);
  await assert.rejects(
    client.payInvoice({ invoice: next.bolt11 }),
    (e: Error & { code?: string }) => e.code === 'RESTRICTED',
  );
  assert.deepEqual((await fleet.verifyLedger()).problems, []);
});

test('kill switch: after the kill nothing pays (RESTRICTED), reads still answer; revive is explicit', async () => {
  const { id, client } = await fundedWallet('carol', 30_000);
  const first = await settlement.books.openTopup('key_carol', 1_000);
  await client.payInvoice({ invoice: first.bolt11 });
  const killed = await ownerCall('POST', '/v1/switches', { target: { fleet: true }, status: 'killed' });
  assert.equal(killed.status, 200, JSON.stringify(killed.body));
  const second = await settlement.books.openTopup('key_carol', 1_000);
  await assert.rejects(
    client.payInvoice({ invoice: second.bolt11 }),
    (e: Error & { code?: string }) => e.code === 'RESTRICTED' && /WALLET_KILLED/.test(e.message),
  );
  assert.equal((await client.getBalance()).balance, 29_000);
  // Pausing a killed fleet is refused: revive first.
  assert.equal(
    (await ownerCall('POST', '/v1/switches', { target: { fleet: true }, status: 'paused' })).status,
    400,
  );
  assert.equal(
    (await ownerCall('POST', '/v1/switches', { target: { fleet: true }, status: 'active' })).status,
    200,
  );
  await client.payInvoice({ invoice: second.bolt11 });
  assert.equal(await tabBalance('key_carol'), 2_000);
  const audit = await ownerCall('GET', '/v1/audit/export');
  const actions = String(audit.body)
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as { action: string; subject: string });
  assert.ok(actions.some((a) => a.action === 'kill' && a.subject === `fleet:${owner}`));
  assert.ok(actions.some((a) => a.action === 'revive'));
  assert.ok(id);
});

test('dry run: decided and audited like live, no msat moves, and the answer says it was a dry run', async () => {
  const { id, client } = await fundedWallet('dave', 10_000, policy({ mode: 'dry-run' }));
  const invoice = await settlement.books.openTopup('key_dave', 2_000);
  await assert.rejects(
    client.payInvoice({ invoice: invoice.bolt11 }),
    (e: Error & { code?: string }) => e.code === 'OTHER' && /DRY_RUN/.test(e.message),
  );
  assert.equal(await tabBalance('key_dave'), 0);
  assert.equal((await client.getBalance()).balance, 10_000);
  const audit = await ownerCall('GET', '/v1/audit/export');
  const decisions = String(audit.body)
    .trim()
    .split('\n')
    .map(
      (l) =>
        JSON.parse(l) as { action: string; subject: string; data: { dry_run?: boolean; outcome?: string } },
    )
    .filter((e) => e.action === 'decision' && e.subject === id);
  assert.equal(decisions.length, 1);
  assert.equal(decisions[0]?.data.dry_run, true);
  assert.equal(decisions[0]?.data.outcome, 'allow');
});

/** A raw NIP-47 request event, as a client would sign it. */
function requestEvent(
  clientKey: Uint8Array,
  body: unknown,
  options: { encryption?: 'nip44_v2' | 'nip04' | null; expiration?: number } = {},
) {
  const encryption = options.encryption === undefined ? 'nip44_v2' : options.encryption;
  const text = JSON.stringify(body);
  const content =
    encryption === 'nip04'
      ? nip04.encrypt(clientKey, fleet.pubkey, text)
      : nip44.v2.encrypt(text, nip44.v2.utils.getConversationKey(clientKey, fleet.pubkey));
  return finalizeEvent(
    {
      kind: 23194,
      created_at: Math.floor(Date.now() / 1000),
      tags: [
        ['p', fleet.pubkey],
        ...(encryption ? [['encryption', encryption]] : []),
        ...(options.expiration ? [['expiration', String(options.expiration)]] : []),
      ],
      content,
    },
    clientKey,
  );
}

async function storedResponse(
  eventId: string,
  clientKey: Uint8Array,
  encryption: 'nip44_v2' | 'nip04' = 'nip44_v2',
) {
  const rows = await fleet.fleet.db.query<{ response: string | null }>(
    'SELECT response FROM wf_nwc_requests WHERE event_id = $1',
    [eventId],
  );
  const response = rows.rows[0]?.response;
  if (!response) return null;
  const event = JSON.parse(response) as { content: string };
  const text =
    encryption === 'nip04'
      ? nip04.decrypt(clientKey, fleet.pubkey, event.content)
      : nip44.v2.decrypt(event.content, nip44.v2.utils.getConversationKey(clientKey, fleet.pubkey));
  return JSON.parse(text) as {
    result_type: string;
    error: { code: string; message: string } | null;
    result: unknown;
  };
}

test('request checks: unknown client UNAUTHORIZED; expired request ignored; NIP-04 UNSUPPORTED_ENCRYPTION; a duplicate event pays once, also after a restart', async () => {
  // Unknown client key, through the unmodified client.
  const stranger = new NWCClient({
    nostrWalletConnectUrl: `nostr+walletconnect://${fleet.pubkey}?relay=${encodeURIComponent(relay.url)}&secret=${secretKeyHex(generateSecretKey())}`,
  });
  clients.push(stranger);
  await assert.rejects(stranger.getBalance(), (e: Error & { code?: string }) => e.code === 'UNAUTHORIZED');

  const created = await fundedWallet('erin', 20_000);
  const clientKey = Uint8Array.from(
    Buffer.from(
      new URL(created.uri.replace('nostr+walletconnect:', 'http:')).searchParams.get('secret')!,
      'hex',
    ),
  );
  // Expired: ignored, never paid, no row.
  const invoice = await settlement.books.openTopup('key_erin', 3_000);
  const expired = requestEvent(
    clientKey,
    { method: 'pay_invoice', params: { invoice: invoice.bolt11 } },
    { expiration: Math.floor(Date.now() / 1000) - 5 },
  );
  await fleet.nwc.handle(expired);
  assert.equal(await storedResponse(expired.id, clientKey), null);
  assert.equal(await tabBalance('key_erin'), 0);
  // NIP-04 while disabled (the default): refused with UNSUPPORTED_ENCRYPTION, readable by that client.
  const old = requestEvent(clientKey, { method: 'get_balance', params: {} }, { encryption: 'nip04' });
  await fleet.nwc.handle(old);
  assert.equal((await storedResponse(old.id, clientKey, 'nip04'))?.error?.code, 'UNSUPPORTED_ENCRYPTION');
  // A duplicate event (a relay re-delivers it, or someone replays it): handled once.
  const pay = requestEvent(clientKey, { method: 'pay_invoice', params: { invoice: invoice.bolt11 } });
  await Promise.all([fleet.nwc.handle(pay), fleet.nwc.handle(pay), fleet.nwc.handle(pay)]);
  assert.ok((await storedResponse(pay.id, clientKey))?.result);
  assert.equal(await tabBalance('key_erin'), 3_000);
  await fleet.close();
  fleet = await startWalletFleet(fleetConfig());
  await fleet.nwc.handle(pay);
  assert.equal(await tabBalance('key_erin'), 3_000, 'still once after a restart');
  assert.equal(await fleet.fleet.balanceMsat(`wallet:${created.id}`), 17_000);
  assert.deepEqual((await fleet.verifyLedger()).problems, []);
});

test('audit verify: the chain verifies, and an edited row is caught', async () => {
  const ok = await ownerCall('GET', '/v1/audit/verify');
  assert.equal((ok.body as { ok: boolean }).ok, true);
  await fleet.fleet.db.query(
    `UPDATE audit_log SET data = jsonb_set(data, '{amount_msat}', '1') WHERE seq = (SELECT min(seq) FROM audit_log WHERE action = 'funding.move')`,
  );
  const bad = await ownerCall('GET', '/v1/audit/verify');
  assert.deepEqual(
    { ok: (bad.body as { ok: boolean }).ok, problem: (bad.body as { problem: string }).problem },
    { ok: false, problem: 'EDITED' },
  );
});

test('funding: an agent asks (NIP-98 with its connection key), the owner approves once; the top-up loop refills within its day budget; metrics count it', async () => {
  const { id, uri } = await fundedWallet('frank', 5_000);
  const clientKey = Uint8Array.from(
    Buffer.from(new URL(uri.replace('nostr+walletconnect:', 'http:')).searchParams.get('secret')!, 'hex'),
  );
  const treasury = await ownerCall('POST', '/v1/treasury/invoices', { amount_msat: 50_000 });
  await settlement.books.faucetPay((treasury.body as { bolt11: string }).bolt11);
  await until(
    'treasury funded',
    async () =>
      ((await ownerCall('GET', '/v1/treasury')).body as { balance_msat: number }).balance_msat >= 50_000,
  );
  const ask = async (key: Uint8Array) => {
    const url = `${fleet.url}/v1/agent/funding-requests`;
    const body = JSON.stringify({ amount_msat: 4_000, reason: 'tokens for the nightly report' });
    const r = await fetch(url, {
      method: 'POST',
      headers: {
        'content-type': 'application/json',
        authorization: createNip98Header(url, 'POST', body, key),
      },
      body,
    });
    return { status: r.status, body: (await r.json()) as { id?: string; error?: { code: string } } };
  };
  assert.equal(
    (await ask(generateSecretKey())).body.error?.code,
    'UNAUTHORIZED',
    'a key with no connection cannot ask',
  );
  const asked = await ask(clientKey);
  assert.equal(asked.status, 200, JSON.stringify(asked.body));
  const listed = await ownerCall('GET', '/v1/funding-requests');
  assert.ok((listed.body as { requests: { id: string }[] }).requests.some((r) => r.id === asked.body.id));
  assert.equal((await ownerCall('POST', `/v1/funding-requests/${asked.body.id}/approve`)).status, 200);
  assert.equal(
    (await ownerCall('POST', `/v1/funding-requests/${asked.body.id}/approve`)).status,
    400,
    'approved once',
  );
  assert.equal(await fleet.fleet.balanceMsat(`wallet:${id}`), 9_000);

  // Top-up loop: below 20,000 refill to 30,000, at most 25,000 a day.
  const set = await ownerCall('PUT', `/v1/wallets/${id}/topup`, {
    low_msat: 20_000,
    high_msat: 30_000,
    budget_msat_per_day: 25_000,
  });
  assert.equal(set.status, 200, JSON.stringify(set.body));
  await until(
    'topped up to the high watermark',
    async () => (await fleet.fleet.balanceMsat(`wallet:${id}`)) === 30_000,
  );
  // Spend below the low watermark: the next top-up is capped by what is left of the day budget.
  const bill = await settlement.books.openTopup('key_frank', 15_000);
  const paid = await fleet.payments.pay(id, bill.bolt11, 'system');
  assert.equal(paid.kind, 'paid');
  // 15,000 left, wanted 15,000 more, but 21,000 of today's 25,000 are used: exactly 4,000 move.
  await until('capped top-up', async () => (await fleet.fleet.balanceMsat(`wallet:${id}`)) === 19_000);
  const topups = await fleet.fleet.db.query<{ amount_msat: string }>(
    'SELECT amount_msat FROM wf_topups WHERE wallet_id = $1 ORDER BY seq',
    [id],
  );
  assert.deepEqual(
    topups.rows.map((r) => Number(r.amount_msat)),
    [21_000, 4_000],
  );
  const metrics = await (await fetch(`${fleet.url}/metrics`)).text();
  assert.match(metrics, /wallet_fleet_topups_total\{[^}]*\} 2/);
  assert.match(metrics, /wallet_fleet_funding_requests_total\{[^}]*state="approved"[^}]*\} 1/);
  assert.match(metrics, /wallet_fleet_decisions_total\{[^}]*outcome="allow"/);
  assert.match(metrics, /wallet_fleet_approvals_pending\{[^}]*\} \d+/);
  assert.deepEqual((await fleet.verifyLedger()).problems, []);
});

test('group kill: every wallet of the group refuses, other wallets pay; reviving the group restores it', async () => {
  const created = await ownerCall('POST', '/v1/wallets', {
    name: 'grouped',
    group: 'research',
    policy: policy(),
  });
  assert.equal(created.status, 200, JSON.stringify(created.body));
  const grouped = (created.body as { id: string }).id;
  const treasury = await ownerCall('POST', '/v1/treasury/invoices', { amount_msat: 10_000 });
  await settlement.books.faucetPay((treasury.body as { bolt11: string }).bolt11);
  await until(
    'treasury',
    async () =>
      ((await ownerCall('GET', '/v1/treasury')).body as { balance_msat: number }).balance_msat >= 10_000,
  );
  await ownerCall('POST', `/v1/wallets/${grouped}/fund`, { amount_msat: 5_000, op_id: 'grouped-1' });
  const outsider = await fundedWallet('outsider', 5_000);
  assert.equal(
    (await ownerCall('POST', '/v1/switches', { target: { group: 'research' }, status: 'killed' })).status,
    200,
  );
  const a = await settlement.books.openTopup('key_group', 1_000);
  const refused = await fleet.payments.pay(grouped, a.bolt11, 'system');
  assert.equal(refused.kind === 'denied' && refused.decision.code, 'WALLET_KILLED');
  const b = await settlement.books.openTopup('key_group', 1_000);
  assert.ok(
    (await outsider.client.payInvoice({ invoice: b.bolt11 })).preimage,
    'another group is not touched',
  );
  assert.equal(
    (await ownerCall('POST', '/v1/switches', { target: { group: 'nosuch' }, status: 'killed' })).status,
    404,
  );
  assert.equal(
    (await ownerCall('POST', '/v1/switches', { target: { group: 'research' }, status: 'active' })).status,
    200,
  );
  assert.equal((await fleet.payments.pay(grouped, a.bolt11, 'system')).kind, 'paid');
  assert.equal(await tabBalance('key_group'), 2_000);
});

test('a request taken but never answered (its process died) is run again once: a payment that happened answers its preimage, never pays twice', async () => {
  const created = await fundedWallet('gina', 10_000);
  const clientKey = Uint8Array.from(
    Buffer.from(
      new URL(created.uri.replace('nostr+walletconnect:', 'http:')).searchParams.get('secret')!,
      'hex',
    ),
  );
  const invoice = await settlement.books.openTopup('key_gina', 2_000);
  const pay = requestEvent(clientKey, { method: 'pay_invoice', params: { invoice: invoice.bolt11 } });
  await fleet.nwc.handle(pay);
  // As if the process had crashed after paying and before answering: no answer, an old claim.
  await fleet.fleet.db.query(
    'UPDATE wf_nwc_requests SET response = NULL, received_at_s = 0 WHERE event_id = $1',
    [pay.id],
  );
  assert.equal(await fleet.nwc.recoverRequests(60), 1);
  const answer = await storedResponse(pay.id, clientKey);
  const preimage = (answer?.result as { preimage?: string } | null)?.preimage ?? '';
  assert.equal(createHash('sha256').update(Buffer.from(preimage, 'hex')).digest('hex'), invoice.paymentHash);
  assert.equal(await fleet.nwc.recoverRequests(60), 0, 'answered now: not run again');
  assert.equal(await tabBalance('key_gina'), 2_000, 'paid once');
  // A new request for the same invoice is still refused.
  const again = requestEvent(clientKey, { method: 'pay_invoice', params: { invoice: invoice.bolt11 } });
  await fleet.nwc.handle(again);
  assert.match((await storedResponse(again.id, clientKey))?.error?.message ?? '', /ALREADY_PAID/);
  assert.equal(await tabBalance('key_gina'), 2_000);
});
