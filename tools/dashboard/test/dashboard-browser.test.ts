// The operator dashboard in a real browser: Debian's chromium driven by playwright-core, against a
// local network in this process (relay, settlement with its faucet, router, a demo-model node and
// the wallet fleet). A test NIP-07 signer is injected into the page (window.nostr, backed by a
// function exposed from Node that signs with a test key), so every API call the page makes is a
// NIP-98 event the "extension" signed. The operator logs in, sees the node, approves an agent's
// challenged payment in the fleet's inbox and sees it pay, sees a paid request in "recent
// requests", presses the fleet kill switch and sees payments refused; a key that is not listed is
// shown "not an operator". Screenshots go to a temporary folder, or to docs/dashboard with
// FEDAI_DASHBOARD_SCREENSHOTS=1 (how the committed ones were made).
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { nodeConfigSchema, type RunningNode, startNode } from '@fed-ai/node';
import {
  createEnvelope,
  createNip98Header,
  decodeEnvelopeHeader,
  generateSecretKey,
  KIND,
  publicKeyOf,
  secretKeyHex,
} from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { type RunningRouter, routerConfigSchema, startRouter } from '@fed-ai/router';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '@fed-ai/settlement';
import { type RunningWalletFleet, startWalletFleet, walletFleetConfigSchema } from '@fed-ai/wallet-fleet';
import type { Event } from 'nostr-tools';
import { SimplePool } from 'nostr-tools/pool';
import { finalizeEvent } from 'nostr-tools/pure';
import { type Browser, type BrowserContext, chromium, type Locator, type Page } from 'playwright-core';
import WebSocket from 'ws';
import { sats } from '../../../packages/dashboard/src/format';
import type { Overview } from '../../../services/settlement/src/overview';

(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket; // @getalby/sdk on Node 20
const { NWCClient } = await import('@getalby/sdk/nwc');

const root = resolve(new URL('../../..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'fedai-dashboard-'));
const shots =
  process.env.FEDAI_DASHBOARD_SCREENSHOTS === '1' ? join(root, 'docs/dashboard') : join(dir, 'shots');
mkdirSync(shots, { recursive: true });
const MODEL = 'fedai-demo-noise-v1';
const PROMPT_CANARY = 'canary-prompt-7f3a: the operator must never see this';
const WAIT_MS = 30_000;

const operatorKey = generateSecretKey();
const operator = publicKeyOf(operatorKey);
const strangerKey = generateSecretKey();
const routerKey = generateSecretKey();
const fleetKey = generateSecretKey();
const peerKey = generateSecretKey();

let relay: RunningRelay;
let settlement: RunningSettlement;
let router: RunningRouter;
let node: RunningNode;
let fleet: RunningWalletFleet;
let browser: Browser;
let apiKey: { id: string; key: string };
let agent: InstanceType<typeof NWCClient>;
let walletId = '';
const contexts: BrowserContext[] = [];

/** Debian's chromium (Playwright's own browser download is not reachable here). */
function chromiumPath(): string {
  const candidates = [
    process.env.CHROMIUM_PATH,
    ...(process.env.PATH ?? '')
      .split(delimiter)
      .flatMap((d) => [join(d, 'chromium'), join(d, 'chromium-browser')]),
  ].filter((p): p is string => Boolean(p));
  const found = candidates.find((p) => existsSync(p));
  if (!found)
    throw new Error(
      "chromium not found on PATH: install Debian's package with `apt-get install -y chromium` (.ci/run does), or set CHROMIUM_PATH",
    );
  return found;
}

async function until<T>(what: string, check: () => Promise<T | undefined | null | false>): Promise<T> {
  const started = Date.now();
  while (Date.now() - started < WAIT_MS) {
    const value = await check();
    if (value) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`waited ${WAIT_MS} ms for ${what}`);
}

async function ownerCall(method: 'GET' | 'POST', path: string, body?: unknown) {
  const url = `${fleet.url}${path}`;
  const text = body === undefined ? undefined : JSON.stringify(body);
  const response = await fetch(url, {
    method,
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(url, method, text, operatorKey),
    },
    ...(text === undefined ? {} : { body: text }),
  });
  const json = (await response.json()) as Record<string, unknown>;
  assert.equal(response.status, 200, `${method} ${path}: ${JSON.stringify(json)}`);
  return json;
}

async function routerTopup(amountMsat: number): Promise<string> {
  const response = await fetch(`${router.url}/v1/tabs/topup`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey.key}` },
    body: JSON.stringify({ amount_msat: amountMsat }),
  });
  const body = (await response.json()) as { bolt11: string };
  assert.equal(response.status, 200, JSON.stringify(body));
  return body.bolt11;
}

/** Every call to a data route the page makes, with whether it carried a NIP-98 header. */
const apiCalls: { url: string; nostr: boolean }[] = [];
const DATA_ROUTE = /\/(admin\/dashboard|v1\/dashboard|v1\/approvals|v1\/switches)\b/;

/** A browser context whose page has a NIP-07 signer holding `key` (a stand-in for nos2x or Alby). */
async function withSigner(key: Uint8Array): Promise<BrowserContext> {
  const context = await browser.newContext({ viewport: { width: 1200, height: 800 } });
  contexts.push(context);
  await context.exposeFunction('__fedaiTestPubkey', () => publicKeyOf(key));
  await context.exposeFunction('__fedaiTestSign', (event: Parameters<typeof finalizeEvent>[0]) =>
    finalizeEvent(event, key),
  );
  // A string, not a function: tsx's transform would leave helper calls the page lacks.
  await context.addInitScript({
    content:
      'window.nostr = { getPublicKey: () => window.__fedaiTestPubkey(), signEvent: (event) => window.__fedaiTestSign(event) };',
  });
  context.on('request', (request) => {
    if (!DATA_ROUTE.test(request.url())) return;
    void request.allHeaders().then((headers) => {
      apiCalls.push({ url: request.url(), nostr: (headers.authorization ?? '').startsWith('Nostr ') });
    });
  });
  return context;
}

/** Opens a dashboard and logs in through the extension; fails on any console error (a CSP refusal shows there). */
async function openDashboard(context: BrowserContext, base: string): Promise<Page> {
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error' && !/status of 40[13]/.test(m.text())) problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  (page as Page & { problems?: string[] }).problems = problems;
  const response = await page.goto(`${base}/dashboard`);
  assert.equal(response?.status(), 200);
  assert.match(response?.headers()['content-security-policy'] ?? '', /default-src 'self'/);
  await page.getByTestId('login-button').click();
  return page;
}

/** The element's text (table cells run together: no layout needed). */
const textOf = async (l: Locator) => (await l.textContent()) ?? '';

const problemsOf = (page: Page) => (page as Page & { problems?: string[] }).problems ?? [];

before(async () => {
  const executablePath = chromiumPath();
  relay = await startRelay({ port: 0 });
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      FAUCET: 'true',
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
      SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(fleetKey),
      SWEEP_INTERVAL_MS: '200',
    }),
  );
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      ROUTER_KEY: secretKeyHex(routerKey),
      DATA_DIR: join(dir, 'router'),
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      SETTLEMENT_URL: settlement.url,
      OPERATOR_PUBKEYS: operator,
      FEDERATION_RELAYS: relay.url,
      FEDERATION_ALLOWLIST: publicKeyOf(peerKey),
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
  fleet = await startWalletFleet(
    walletFleetConfigSchema.parse({
      WALLET_FLEET_PORT: '0',
      WALLET_FLEET_KEY: secretKeyHex(fleetKey),
      FLEET_OWNER_PUBKEYS: operator,
      RELAY_URLS: relay.url,
      SETTLEMENT_URL: settlement.url,
      DATA_DIR: join(dir, 'fleet'),
      SWEEP_INTERVAL_MS: '200',
    }),
  );
  await until('the node registered', async () => router.registry.views(MODEL).length > 0);
  apiKey = await router.createApiKey({ name: 'dashboard-agent' });
  // An agent wallet whose policy asks the owner above 20 sat, funded through the treasury.
  const wallet = await ownerCall('POST', '/v1/wallets', {
    name: 'research-agent',
    policy: {
      version: 1,
      mode: 'live',
      maxPaymentMsat: 60_000,
      approvalAboveMsat: 20_000,
      budgets: [
        { id: 'daily', limitMsat: 100_000, period: { kind: 'calendar', unit: 'day', timeZone: 'UTC' } },
      ],
      methods: ['pay_invoice', 'get_balance'],
    },
  });
  walletId = wallet.id as string;
  const invoice = await ownerCall('POST', '/v1/treasury/invoices', { amount_msat: 80_000 });
  await settlement.books.faucetPay(invoice.bolt11 as string);
  await until(
    'treasury credited',
    async () => ((await ownerCall('GET', '/v1/treasury')).balance_msat as number) >= 80_000,
  );
  await ownerCall('POST', `/v1/wallets/${walletId}/fund`, { amount_msat: 80_000, op_id: 'fund-research' });
  const connection = await ownerCall('POST', `/v1/wallets/${walletId}/connections`, { name: 'research-bot' });
  agent = new NWCClient({ nostrWalletConnectUrl: connection.uri as string });
  browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
});

after(async () => {
  for (const c of contexts) await c.close().catch(() => {});
  await browser?.close();
  agent?.close();
  await fleet?.close();
  await node?.close();
  await router?.close();
  await settlement?.close();
  await relay?.close();
  rmSync(dir, { recursive: true, force: true });
});

let operatorContext: BrowserContext;
let routerPage: Page;
let fleetPage: Page;

test('router dashboard: the operator logs in with the NIP-07 signer and sees the local node', async () => {
  operatorContext = await withSigner(operatorKey);
  routerPage = await openDashboard(operatorContext, router.url);
  await routerPage.getByTestId('pubkey').waitFor();
  const nodes = routerPage.getByTestId('nodes');
  await nodes.waitFor();
  const text = await textOf(nodes);
  assert.ok(text.includes(node.pubkey.slice(0, 8)), text);
  assert.ok(text.includes(MODEL), text);
  assert.match(text, /serving/);
  assert.match(text, /closed/, 'breaker state shown');
  await routerPage.screenshot({ path: join(shots, 'router-nodes.png') });
});

test('fleet dashboard: a challenged agent payment waits in the inbox; approve pays it once', async () => {
  const bolt11 = await routerTopup(25_000);
  let approvalId = '';
  await assert.rejects(agent.payInvoice({ invoice: bolt11 }), (e: Error & { code?: string }) => {
    approvalId = /approval id (ap_[0-9a-f]+)/.exec(e.message)?.[1] ?? '';
    return e.code === 'RESTRICTED' && approvalId !== '';
  });
  fleetPage = await openDashboard(operatorContext, fleet.url);
  await fleetPage.getByTestId('wallets').waitFor();
  assert.match(await textOf(fleetPage.getByTestId('wallets')), /research-agent[\s\S]*80 sat/);
  await fleetPage.getByTestId('nav-approvals').click();
  const approve = fleetPage.getByTestId(`approve-${approvalId}`);
  await approve.waitFor();
  await fleetPage.screenshot({ path: join(shots, 'fleet-approvals.png') });
  await approve.click();
  await fleetPage.getByTestId('approvals-empty').waitFor();
  // The agent pays the same invoice again: the approval lets it through once.
  const paid = await agent.payInvoice({ invoice: bolt11 });
  assert.ok(paid.preimage);
  assert.equal((await settlement.books.tab(apiKey.id)).balance_msat, 25_000);
  await fleetPage.getByTestId('nav-wallets').click();
  const payments = fleetPage.getByTestId('payments');
  await payments.waitFor();
  assert.match(await textOf(payments), /25 sat\s*paid/);
  assert.match(await textOf(fleetPage.getByTestId('wallets')), /55 sat/);
  await fleetPage.screenshot({ path: join(shots, 'fleet-wallets.png') });
});

test('router dashboard: a paid request shows in recent requests with its cost, node and receipt id, never its prompt', async () => {
  const response = await fetch(`${router.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey.key}` },
    body: JSON.stringify({
      model: MODEL,
      messages: [{ role: 'user', content: PROMPT_CANARY }],
      max_tokens: 8,
    }),
  });
  const body = (await response.json()) as { choices: { message: { content: string } }[] };
  assert.equal(response.status, 200, JSON.stringify(body));
  const output = body.choices[0]?.message.content ?? '';
  const receipt = JSON.parse(decodeEnvelopeHeader(response.headers.get('x-fedai-receipt')!)) as {
    id: string;
    content: string;
  };
  await routerPage.getByTestId('nav-requests').click();
  const requests = routerPage.getByTestId('requests');
  await requests.waitFor();
  await routerPage.getByTestId('receipt-id').first().waitFor();
  assert.equal(await routerPage.getByTestId('receipt-id').first().getAttribute('title'), receipt.id);
  const text = await textOf(requests);
  assert.ok(text.includes(MODEL) && text.includes(node.pubkey.slice(0, 8)) && /OK/.test(text), text);
  assert.match(text, /\d+(\.\d+)? sat/, 'the cost is shown');
  const html = await routerPage.content();
  assert.ok(!html.includes(PROMPT_CANARY), 'the prompt never reaches the page');
  if (output.length >= 8) assert.ok(!html.includes(output), 'nor the output');
  await routerPage.screenshot({ path: join(shots, 'router-requests.png') });
  // The nodes page now counts what the node earned lately.
  await routerPage.getByTestId('nav-nodes').click();
  await routerPage.getByTestId('nodes').waitFor();
});

test('router dashboard: money shows the fees, tabs and owed earnings settlement holds; federation shows the relay and a peer', async () => {
  // What settlement itself says, read with the router's key: the page must show exactly these.
  const url = `${settlement.url}/v1/admin/overview?limit=20`;
  const answer = await fetch(url, {
    headers: { authorization: createNip98Header(url, 'GET', undefined, routerKey) },
  });
  const overview = (await answer.json()) as Overview;
  assert.equal(answer.status, 200, JSON.stringify(overview));
  assert.ok(overview.fees.router_fees_msat > 0, 'the paid request left a router fee');
  await routerPage.getByTestId('nav-money').click();
  await routerPage.getByTestId('tabs').waitFor();
  const shown = async (id: string) => textOf(routerPage.getByTestId(id));
  assert.equal(await shown('fees-held'), sats(overview.fees.router_fees_msat));
  assert.equal(await shown('fees-requests'), String(overview.fees.last_24h.requests));
  assert.equal(await shown('tabs-count'), String(overview.tabs.count));
  assert.equal(await shown('tabs-balance'), sats(overview.tabs.balance_msat));
  assert.equal(await shown('owed-balance'), sats(overview.payouts.owed.balance_msat));
  assert.ok(overview.payouts.owed.balance_msat > 0, 'the node is owed its share');
  assert.match(await shown('tabs'), new RegExp(apiKey.id.slice(0, 8)), "the agent's tab is listed");
  await routerPage.getByTestId('payouts-empty').waitFor();
  await routerPage.screenshot({ path: join(shots, 'router-money.png') });

  // A peer router announces itself on the relay (the allowlisted key); the page lists it.
  const nowS = Math.floor(Date.now() / 1000);
  const common = { nowS, expiresInS: 600 };
  const publisher = new SimplePool();
  for (const event of [
    createEnvelope(
      KIND.routerCapabilities,
      { name: 'peer-west', url: 'http://peer-west.example', models: ['peer-model'], features: ['offload'] },
      { ...common, tags: [['d', 'capabilities']] },
      peerKey,
    ),
    createEnvelope(
      KIND.priceSheet,
      {
        model: 'peer-model',
        price: { input_msat_per_1k: 700, output_msat_per_1k: 900 },
        context_window: 4096,
        nodes: 2,
      },
      { ...common, tags: [['d', 'peer-model']] },
      peerKey,
    ),
  ])
    await Promise.any(publisher.publish([relay.url], event as Event));
  await until('the router sees the peer', async () => {
    const peers = (await (await fetch(`${router.url}/v1/federation/peers`)).json()) as {
      peers: { prices: unknown[] }[];
    };
    return peers.peers[0]?.prices.length === 1;
  });
  await routerPage.getByTestId('nav-federation').click();
  const peers = routerPage.getByTestId('peers');
  await peers.waitFor();
  const peerText = await textOf(peers);
  assert.ok(peerText.includes(publicKeyOf(peerKey).slice(0, 8)) && peerText.includes('peer-west'), peerText);
  assert.match(peerText, /peer-model[\s\S]*0\.7 sat \/ 0\.9 sat/);
  assert.match(peerText, /peer \(trust/, 'allowlisted');
  assert.match(await textOf(routerPage.getByTestId('relays')), /connected/);
  await routerPage.screenshot({ path: join(shots, 'router-federation.png') });
  publisher.destroy();

  // Auto-refresh draws the page again by itself (every 10 s) until it is turned off: the toggle
  // draws it at once, then the timer does, with its own signed calls.
  await routerPage.getByTestId('auto-refresh').click();
  const drawn = await until('the page drawn with auto-refresh on', async () => {
    const text = await textOf(routerPage.getByTestId('status'));
    return text.startsWith('Updated') && text;
  });
  const calls = apiCalls.length;
  await until('the page drawn again by the timer', async () => {
    const text = await textOf(routerPage.getByTestId('status'));
    return text.startsWith('Updated') && text !== drawn;
  });
  await until('its calls recorded, signed', async () => apiCalls.length > calls);
  assert.equal(await routerPage.getByTestId('auto-refresh').getAttribute('aria-pressed'), 'true');
  await routerPage.getByTestId('auto-refresh').click();
  assert.equal(await routerPage.getByTestId('auto-refresh').getAttribute('aria-pressed'), 'false');
});

test('fleet dashboard: the kill switch stops payments; revive lets them through again', async () => {
  await fleetPage.getByTestId('fleet-kill').click();
  await until('fleet shows killed', async () =>
    /killed/.test(await textOf(fleetPage.getByTestId('fleet-status'))),
  );
  const bolt11 = await routerTopup(1_000);
  await assert.rejects(
    agent.payInvoice({ invoice: bolt11 }),
    (e: Error & { code?: string }) => e.code === 'RESTRICTED' && /WALLET_KILLED/.test(e.message),
  );
  assert.match(await textOf(fleetPage.getByTestId('wallets')), /killed/);
  await fleetPage.screenshot({ path: join(shots, 'fleet-killed.png') });
  await fleetPage.getByTestId('fleet-revive').click();
  await until('fleet shows active', async () =>
    /active/.test(await textOf(fleetPage.getByTestId('fleet-status'))),
  );
  assert.ok((await agent.payInvoice({ invoice: bolt11 })).preimage);
});

test('a key that is not listed gets the "not an operator" screen on both dashboards, and no data', async () => {
  const context = await withSigner(strangerKey);
  for (const base of [router.url, fleet.url]) {
    const page = await openDashboard(context, base);
    await page.getByTestId('not-operator').waitFor();
    assert.equal(await textOf(page.getByTestId('refused-pubkey')), publicKeyOf(strangerKey));
    assert.equal(await page.getByTestId('nodes').count(), 0);
    assert.equal(await page.getByTestId('wallets').count(), 0);
    if (base === router.url) await page.screenshot({ path: join(shots, 'not-operator.png') });
    assert.deepEqual(problemsOf(page), []);
  }
  // Every data call any page made carried a NIP-98 header signed by the extension.
  await until('calls recorded', async () => apiCalls.length >= 8);
  assert.deepEqual(
    apiCalls.filter((c) => !c.nostr),
    [],
  );
  assert.deepEqual(problemsOf(routerPage), []);
  assert.deepEqual(problemsOf(fleetPage), []);
});
