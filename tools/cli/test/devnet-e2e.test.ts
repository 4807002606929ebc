// The front door: README's first command starts a real network; the SDK and the official openai
// client use it; SIGINT stops every process and frees every port. Before it starts, the router's
// preferred port (7000) is held by an impostor HTTP server that claims to be a router, and the
// relay's (7447) by a plain TCP listener: the network must come up on other ports, say so, and
// never talk to either.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpServer, type Server as HttpServer } from 'node:http';
import { connect, createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { createNip98Header, parseSecretKey } from '@fed-ai/protocol';
import { FedAiClient, verifyReceipt } from '@fed-ai/sdk';
import OpenAI from 'openai';
import { checkApiKey, ensureApiKey } from '../src/commands/devnet-key';
import { waitFor } from '../src/commands/up';
import type { Devnet } from '../src/devnet-file';
import { builtCli } from './built-cli';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const dataDir = mkdtempSync(join(tmpdir(), 'fedai-devnet-'));
let child: ChildProcess;
let output = '';
let devnet: Devnet;
const ROUTER_PREFERRED_PORT = 7000;
const RELAY_PREFERRED_PORT = 7447;
let impostorRequests = 0;
let impostor: HttpServer | null = null;
let plainListener: Server | null = null;
const heldSockets = new Set<import('node:net').Socket>();

/** Listens on `port` (127.0.0.1); null when something else holds it already (it is busy anyway). */
function hold<T extends Server | HttpServer>(server: T, port: number): Promise<T | null> {
  return new Promise((done) => {
    server.once('error', () => done(null));
    server.listen(port, '127.0.0.1', () => done(server));
  });
}

function quickstartFirstCommand(): string {
  const readme = readFileSync(join(root, 'README.md'), 'utf8');
  const block = readme.split(/^## Quickstart/m)[1]?.split('```')[1] ?? '';
  const first = block.trim().split('\n')[0] ?? '';
  return first;
}

/** Runs the CLI against this network (its devnet.json) without blocking the event loop. */
async function fedai(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const bundle = await builtCli();
  return new Promise((done, reject) => {
    const cli = spawn(process.execPath, [bundle, ...args], {
      cwd: root,
      env: {
        ...process.env,
        FEDAI_DATA_DIR: dataDir,
        NO_COLOR: '1',
        FEDAI_ROUTER_URL: '',
        FEDAI_API_KEY: '',
        DATABASE_URL: '',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    cli.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    cli.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    cli.once('error', reject);
    cli.once('exit', (code) => done({ code, stdout, stderr }));
  });
}

async function fedaiJson<T>(args: string[]): Promise<T> {
  const run = await fedai([...args, '--json']);
  assert.equal(run.code, 0, `fedai ${args.join(' ')}: ${run.stderr}`);
  return JSON.parse(run.stdout) as T;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((done) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      done(true);
    });
    socket.once('error', () => done(false));
  });
}

before(async () => {
  // An impostor that answers every HTTP request as a healthy router with someone else's key.
  impostor = await hold(
    createHttpServer((_request, response) => {
      impostorRequests += 1;
      response.writeHead(200, { 'content-type': 'application/json' });
      response.end(JSON.stringify({ ok: true, pubkey: 'ab'.repeat(32), data: [] }));
    }),
    ROUTER_PREFERRED_PORT,
  );
  // Not HTTP at all: accepts and holds the connection.
  plainListener = await hold(
    createServer((socket) => {
      heldSockets.add(socket);
      socket.on('close', () => heldSockets.delete(socket));
    }),
    RELAY_PREFERRED_PORT,
  );
  const first = quickstartFirstCommand();
  // The install step already ran for this checkout; the network part is what this test starts.
  const upCommand = first
    .split('&&')
    .map((s) => s.trim())
    .at(-1)!;
  assert.equal(
    upCommand,
    'pnpm fedai up',
    `README's first command should end with "pnpm fedai up", got: ${first}`,
  );
  child = spawn('bash', ['-c', upCommand], {
    cwd: root,
    env: { ...process.env, FEDAI_DATA_DIR: dataDir, NO_COLOR: '1' },
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const path = join(dataDir, 'devnet.json');
  for (let i = 0; i < 1800 && !existsSync(path); i++) {
    if (child.exitCode !== null) throw new Error(`fedai up exited early:\n${output}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(existsSync(path), `no devnet.json; output:\n${output}`);
  devnet = JSON.parse(readFileSync(path, 'utf8')) as Devnet;
});

after(async () => {
  for (const socket of heldSockets) socket.destroy();
  await Promise.all(
    [impostor, plainListener].map(
      (server) => new Promise<void>((done) => (server ? server.close(() => done()) : done())),
    ),
  );
  try {
    process.kill(-child.pid!, 'SIGKILL'); // only if something is left
  } catch {
    // the group is gone, as it should be
  }
  rmSync(dataDir, { recursive: true, force: true });
});

test('taken preferred ports: the network binds others, says so, and never talks to the port holders', async () => {
  const routerPort = Number(new URL(devnet.router_url).port);
  const relayPort = Number(new URL(devnet.relay_url).port);
  assert.notEqual(routerPort, ROUTER_PREFERRED_PORT);
  assert.notEqual(relayPort, RELAY_PREFERRED_PORT);
  assert.match(
    output,
    new RegExp(`router on ${devnet.router_url} \\(preferred port ${ROUTER_PREFERRED_PORT} is busy`),
  );
  assert.match(
    output,
    new RegExp(`relay on ${devnet.relay_url} \\(preferred port ${RELAY_PREFERRED_PORT} is busy`),
  );
  assert.equal(impostorRequests, 0, 'fedai up sent requests to the impostor on the preferred router port');
  // The URL in devnet.json is the router whose key is in the data dir, not whoever holds a port.
  const info = (await (await fetch(`${devnet.router_url}/v1/router`)).json()) as { pubkey: string };
  assert.equal(info.pubkey, devnet.router_pubkey);
  assert.ok(devnet.settlement_url);
  for (const node of devnet.nodes) {
    const answer = (await (await fetch(`${node.url}/v1/info`)).json()) as { pubkey: string };
    assert.equal(answer.pubkey, node.pubkey);
  }
});

test('the network serves the SDK (stream and non-stream) and the official openai client', async () => {
  assert.equal(devnet.nodes.length, 2);
  assert.equal(devnet.model_is_demo, true);
  const sdk = new FedAiClient({ routerUrl: devnet.router_url, apiKey: devnet.api_key });
  const messages = [{ role: 'user' as const, content: 'Hello network' }];
  const result = await sdk.chat({ model: devnet.model, messages, maxTokens: 8, temperature: 0 });
  assert.equal(result.usage.completion_tokens, 8);
  assert.ok(devnet.nodes.some((n) => n.pubkey === result.node));
  const verdict = await verifyReceipt(result.receipt, {
    text: result.text,
    messages,
    node: result.node,
    router: devnet.router_pubkey,
  });
  assert.equal(verdict.ok, true);

  let streamed = '';
  let final: Awaited<ReturnType<typeof sdk.chat>> | undefined;
  for await (const event of sdk.chatStream({ model: devnet.model, messages, maxTokens: 6, temperature: 0 })) {
    if (event.type === 'delta') streamed += event.text;
    else final = event.result;
  }
  assert.equal(final?.text, streamed);
  assert.equal(final?.usage.completion_tokens, 6);
  await sdk.close();

  const openai = new OpenAI({ baseURL: `${devnet.router_url}/v1`, apiKey: devnet.api_key, maxRetries: 0 });
  const completion = await openai.chat.completions.create({ model: devnet.model, messages, max_tokens: 5 });
  assert.equal(completion.usage?.completion_tokens, 5);
  const stream = await openai.chat.completions.create({
    model: devnet.model,
    messages,
    max_tokens: 5,
    stream: true,
  });
  let chunks = 0;
  for await (const chunk of stream) if (chunk.choices[0]?.delta?.content) chunks += 1;
  assert.ok(chunks >= 1);
});

test('requests are paid from the faucet-funded tab; each charge carries its receipt; fedai ledger verify passes', async () => {
  type Tab = {
    balance_msat: number;
    charges: { amount_msat: number; receipt: { pubkey: string } }[];
  };
  const readTab = async () =>
    (await (
      await fetch(`${devnet.router_url}/v1/tabs/me`, {
        headers: { authorization: `Bearer ${devnet.api_key}` },
      })
    ).json()) as Tab;
  // Captures reach settlement after the answers (the router's outbox sends them in batches): on a
  // loaded machine the last ones may still be on their way (a fresh-clone run, session 18).
  // The assertion below says what is missing if they never land.
  await waitFor(async () => (await readTab()).charges.length >= 3, 30_000).catch(() => {});
  const tab = await readTab();
  assert.ok(tab.charges.length >= 3, 'the first request and the ones above were charged');
  assert.ok(tab.balance_msat < 1_000_000);
  assert.ok(
    tab.charges.every((c) => c.amount_msat > 0 && devnet.nodes.some((n) => n.pubkey === c.receipt.pubkey)),
  );
  const verify = spawnSync(process.execPath, [await builtCli(), 'ledger', 'verify', '--json'], {
    encoding: 'utf8',
    env: { ...process.env, FEDAI_DATA_DIR: dataDir, DATABASE_URL: '' },
  });
  assert.equal(verify.status, 0, verify.stdout + verify.stderr);
  assert.equal((JSON.parse(verify.stdout) as { ok: boolean }).ok, true);
});

test('fedai models / nodes / status / apikey list: aligned tables for people, --json exactly the router answer', async () => {
  const operatorKey = parseSecretKey(readFileSync(join(dataDir, 'operator.key'), 'utf8'));
  const adminUrl = `${devnet.router_url}/admin/apikeys`;
  // Human tables where they differ (status reuses the models table), --json for all four.
  const [models, nodes, keys, modelsJson, nodesJson, statusJson, keysJson] = await Promise.all([
    fedai(['models']),
    fedai(['nodes']),
    fedai(['apikey', 'list']),
    fedaiJson<unknown>(['models']),
    fedaiJson<{ id: string }[]>(['nodes']),
    fedaiJson<Record<string, unknown>>(['status']),
    fedaiJson<unknown>(['apikey', 'list']),
  ]);
  const raw = async (path: string, init?: RequestInit) =>
    (await (await fetch(`${devnet.router_url}${path}`, init)).json()) as Record<string, unknown>;
  assert.deepEqual(modelsJson, (await raw('/v1/models')).data);
  assert.deepEqual(nodesJson.map((n) => n.id).sort(), devnet.nodes.map((n) => n.pubkey).sort());
  const { nodes_serving: _a, ...statusStable } = statusJson;
  const { nodes_serving: _b, ...rawStatusStable } = await raw('/status');
  assert.deepEqual(statusStable, rawStatusStable);
  assert.deepEqual(
    keysJson,
    await raw('/admin/apikeys', {
      headers: { authorization: createNip98Header(adminUrl, 'GET', undefined, operatorKey) },
    }),
  );
  for (const run of [models, nodes, keys]) assert.equal(run.code, 0, run.stderr);
  // Tables: a header row, then rows whose columns start where the header's do.
  const table = (text: string, header: string) => {
    const lines = text.split('\n');
    const at = lines.findIndex((l) => l.startsWith(header));
    assert.ok(at >= 0, `no "${header}" header in:\n${text}`);
    return lines.slice(at);
  };
  const modelRows = table(models.stdout, 'MODEL');
  assert.match(modelRows[1]!, new RegExp(`^${devnet.model} \\(demo\\)`));
  // The cheaper node's price, 1,000 msat per 1k input tokens, also per 1M tokens and in sat.
  assert.match(modelRows[1]!, /1,000 msat \(1 sat\).*1,000,000 msat \(1,000 sat\)/);
  const nodeRows = table(nodes.stdout, 'NODE');
  assert.equal(nodeRows.filter((l) => /serving/.test(l)).length, 2);
  const endpointColumn = nodeRows[0]!.indexOf('ENDPOINT');
  for (const row of nodeRows.slice(1, 3))
    assert.match(row.slice(endpointColumn), /^http:\/\/127\.0\.0\.1:\d+/);
  assert.equal(statusJson.nodes_registered, 2);
  assert.match(table(keys.stdout, 'ID')[1]!, /^key_\w+\s+devnet\s+active\s+600/);
});

test('fedai tab topup (devnet faucet) / balance / history / refund against the network', async () => {
  const [before, other] = await Promise.all([
    fedaiJson<{ balance_msat: number; reserved_msat: number }>(['tab', 'balance']),
    fedaiJson<{ key: string }>(['apikey', 'create', '--name', 'refund-target']),
  ]);
  const [topup, otherInvoice] = await Promise.all([
    fedaiJson<{ bolt11: string; amount_msat: number; paid_from_faucet: boolean; balance_msat: number }>([
      'tab',
      'topup',
      '50000',
    ]),
    fedaiJson<{ bolt11: string; paid_from_faucet: boolean }>([
      'tab',
      'topup',
      '20000',
      '--no-faucet',
      '--api-key',
      other.key,
    ]),
  ]);
  assert.equal(topup.paid_from_faucet, true, 'devnet.json names this router: the faucet pays');
  assert.equal(topup.amount_msat, 50_000);
  assert.match(topup.bolt11, /^ln/);
  assert.equal(topup.balance_msat, before.balance_msat + 50_000);
  assert.equal(otherInvoice.paid_from_faucet, false);
  // Refund 20,000 msat of this tab by paying the other tab's top-up invoice (internal Lightning).
  const [refund, history, historyText] = await Promise.all([
    fedaiJson<{ state: string; amount_msat: number; balance_msat: number }>([
      'tab',
      'refund',
      otherInvoice.bolt11,
    ]),
    fedaiJson<{ request_id: string; amount_msat: number; receipt: { pubkey: string } }[]>(['tab', 'history']),
    fedai(['tab', 'history']),
  ]);
  assert.equal(refund.state, 'succeeded');
  assert.equal(refund.amount_msat, 20_000);
  assert.equal(refund.balance_msat, topup.balance_msat - 20_000);
  assert.ok(history.length >= 3);
  assert.ok(
    history.every((c) => c.amount_msat > 0 && devnet.nodes.some((n) => n.pubkey === c.receipt.pubkey)),
  );
  assert.equal(historyText.code, 0, historyText.stderr);
  assert.match(historyText.stdout, /^\s*WHEN\s+REQUEST\s+NODE\s+TOKENS in\+out\s+COST msat\s+RECEIPT/m);
  assert.ok(historyText.stdout.includes(history[0]!.request_id));
  const [after, otherTab] = await Promise.all([
    fedaiJson<{ balance_msat: number }>(['tab', 'balance']),
    fedaiJson<{ balance_msat: number }>(['tab', 'balance', '--api-key', other.key]),
  ]);
  assert.equal(after.balance_msat, refund.balance_msat);
  assert.equal(otherTab.balance_msat, 20_000, 'the refund paid the other tab exactly once');
});

test("the demo agent pays a router tab top-up over Nostr Wallet Connect with devnet.json's URI (unmodified @getalby/sdk)", async () => {
  assert.match(
    devnet.agent_nwc_uri ?? '',
    /^nostr\+walletconnect:\/\/[0-9a-f]{64}\?relay=.+&secret=[0-9a-f]{64}$/,
  );
  (globalThis as { WebSocket?: unknown }).WebSocket ??= (await import('ws')).WebSocket;
  const { NWCClient } = await import('@getalby/sdk/nwc');
  const client = new NWCClient({ nostrWalletConnectUrl: devnet.agent_nwc_uri! });
  try {
    const before = (await client.getBalance()).balance;
    assert.ok(before >= 10_000, `agent balance ${before}`);
    const tab = (path: string, body?: unknown) =>
      fetch(`${devnet.router_url}/v1/tabs/${path}`, {
        method: body === undefined ? 'GET' : 'POST',
        headers: { authorization: `Bearer ${devnet.api_key}`, 'content-type': 'application/json' },
        ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      }).then((r) => r.json() as Promise<{ bolt11?: string; balance_msat?: number }>);
    const invoice = await tab('topup', { amount_msat: 5_000 });
    const tabBefore = (await tab('me')).balance_msat!;
    const paid = await client.payInvoice({ invoice: invoice.bolt11! });
    assert.match(paid.preimage, /^[0-9a-f]{64}$/);
    assert.equal((await tab('me')).balance_msat, tabBefore + 5_000, 'the tab got exactly the invoice');
    assert.equal((await client.getBalance()).balance, before - 5_000);
  } finally {
    client.close();
  }
});

test("a node's earnings are paid to its NWC wallet (the demo agent); fedai node statement verify checks the statement against the node's own log", async () => {
  const node = devnet.nodes[0]!;
  const nodeFlags = ['--node-dir', join(dataDir, node.name), '--key', join(dataDir, `${node.name}.key`)];
  const openai = new OpenAI({ baseURL: `${devnet.router_url}/v1`, apiKey: devnet.api_key, maxRetries: 0 });
  const show = () =>
    fedaiJson<{ earnings_msat: number; payouts: { state: string }[] }>([
      'node',
      'payout',
      'show',
      ...nodeFlags,
    ]);
  // Enough earnings at this node for a whole satoshi (the router picks nodes; ask until it has).
  for (let i = 0; i < 60 && (await show()).earnings_msat < 1500; i++)
    await openai.chat.completions.create({
      model: devnet.model,
      messages: [{ role: 'user', content: `payout ${i}` }],
      max_tokens: 64,
    });
  const owed = (await show()).earnings_msat;
  assert.ok(owed >= 1500, `earnings ${owed}`);

  (globalThis as { WebSocket?: unknown }).WebSocket ??= (await import('ws')).WebSocket;
  const { NWCClient } = await import('@getalby/sdk/nwc');
  const wallet = new NWCClient({ nostrWalletConnectUrl: devnet.agent_nwc_uri! });
  try {
    const before = (await wallet.getBalance()).balance;
    const set = await fedai(['node', 'payout', 'set', '--nwc', devnet.agent_nwc_uri!, ...nodeFlags]);
    assert.equal(set.code, 0, set.stderr);
    assert.match(set.stdout, /payouts go to nwc wallet [0-9a-f]{64}/);
    assert.ok(!set.stdout.includes('secret='), 'the connection secret is never shown');
    const run = await fedaiJson<{ outcomes: { node: string; state: string; amount_msat?: number }[] }>([
      'payouts',
      'run',
    ]);
    const mine = run.outcomes.find((o) => o.node === node.pubkey);
    assert.equal(mine?.state, 'succeeded', JSON.stringify(run));
    const amount = mine!.amount_msat!;
    assert.equal(amount % 1000, 0);
    assert.ok(amount > 0 && amount <= owed);
    // The fleet hears of its settled invoice on its next sweep.
    let after = before;
    for (let i = 0; i < 100 && after === before; i++) {
      await new Promise((r) => setTimeout(r, 100));
      after = (await wallet.getBalance()).balance;
    }
    assert.equal(after, before + amount, 'the wallet got exactly the payout');
    assert.equal((await show()).payouts[0]?.state, 'succeeded');
    const verified = await fedaiJson<{ statements: { ok: boolean; problems: unknown[] }[] }>([
      'node',
      'statement',
      'verify',
      ...nodeFlags,
    ]);
    assert.equal(verified.statements.length, 1);
    assert.deepEqual(verified.statements[0], { ...verified.statements[0], ok: true, problems: [] });
    // Another node's log cannot vouch for this node's statement.
    const other = devnet.nodes[1]!;
    const wrongLog = await fedai([
      'node',
      'statement',
      'verify',
      '--node-dir',
      join(dataDir, other.name),
      '--key',
      join(dataDir, `${node.name}.key`),
    ]);
    assert.equal(wrongLog.code, 4, wrongLog.stdout + wrongLog.stderr);
    assert.match(wrongLog.stdout, /UNKNOWN_RECORD/);
  } finally {
    wallet.close();
  }
  const ledger = await fedaiJson<{ ok: boolean }>(['ledger', 'verify']);
  assert.equal(ledger.ok, true);
});

test("fedai up's key check: a revoked saved key is refused and replaced by a newly minted one that works", async () => {
  const operatorKey = parseSecretKey(readFileSync(join(dataDir, 'operator.key'), 'utf8'));
  const saved = await ensureApiKey(dataDir, devnet.router_url, operatorKey);
  assert.deepEqual(saved, { key: devnet.api_key, minted: false }, 'an accepted key is kept');
  const listUrl = `${devnet.router_url}/admin/apikeys`;
  const list = (await (
    await fetch(listUrl, {
      headers: { authorization: createNip98Header(listUrl, 'GET', undefined, operatorKey) },
    })
  ).json()) as { keys: { id: string; name: string; revoked: boolean }[] };
  const ours = list.keys.filter((k) => k.name === 'devnet' && !k.revoked);
  assert.equal(ours.length, 1);
  const revokeUrl = `${listUrl}/${ours[0]!.id}`;
  const revoked = await fetch(revokeUrl, {
    method: 'DELETE',
    headers: { authorization: createNip98Header(revokeUrl, 'DELETE', undefined, operatorKey) },
  });
  assert.equal(revoked.status, 200);
  assert.equal(await checkApiKey(devnet.router_url, devnet.api_key), 'refused');

  const fresh = await ensureApiKey(dataDir, devnet.router_url, operatorKey);
  assert.equal(fresh.minted, true);
  assert.notEqual(fresh.key, devnet.api_key);
  assert.equal(readFileSync(join(dataDir, 'api-key'), 'utf8').trim(), fresh.key, 'the new key is saved');
  const tab = await fetch(`${devnet.router_url}/v1/tabs/me`, {
    headers: { authorization: `Bearer ${fresh.key}` },
  });
  assert.equal(tab.status, 200, 'the new key works');
  assert.equal(await checkApiKey(devnet.router_url, fresh.key), 'accepted');
  devnet.api_key = fresh.key;
});

test('fedai up printed the first streamed answer with its cost and the summary', () => {
  assert.match(output, /first request through the router/);
  assert.match(output, /cost \d+ msat/);
  assert.match(output, /api key\s+fedai_sk_/);
  assert.match(output, /demo/i);
});

test('the relay from devnet.json accepts and serves a signed event (nostr-tools)', async () => {
  const { Relay, useWebSocketImplementation } = await import('nostr-tools/relay');
  const { finalizeEvent, generateSecretKey } = await import('nostr-tools/pure');
  const { default: WebSocket } = await import('ws');
  useWebSocketImplementation(WebSocket);
  const relay = await Relay.connect(devnet.relay_url);
  const event = finalizeEvent(
    { kind: 1, created_at: Math.floor(Date.now() / 1000), tags: [], content: 'hello from the devnet test' },
    generateSecretKey(),
  );
  await relay.publish(event);
  const seen = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no event back')), 5000);
    const sub = relay.subscribe([{ ids: [event.id] }], {
      onevent(e) {
        clearTimeout(timer);
        sub.close();
        resolve(e.id);
      },
    });
  });
  assert.equal(seen, event.id);
  relay.close();
});

test('SIGINT stops every process and frees every port', async () => {
  const ports = [
    devnet.router_url,
    devnet.relay_url,
    devnet.wallet_fleet_url!,
    ...devnet.nodes.map((n) => n.url),
  ].map((u) => Number(new URL(u).port));
  for (const port of ports) assert.equal(await portOpen(port), true, `port ${port} open while running`);
  process.kill(-child.pid!, 'SIGINT');
  const exit = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null)
      resolve({ code: child.exitCode, signal: child.signalCode });
    child.once('exit', (code, signal) => resolve({ code, signal }));
  });
  // pnpm re-raises the SIGINT it forwarded; fedai itself exits 0 after its children.
  assert.ok(exit.code === 0 || exit.signal === 'SIGINT', `${JSON.stringify(exit)}\n${output.slice(-2000)}`);
  assert.match(output, /stopped.*every process exited/);
  // Give the group a moment to finish exiting after the wrapper.
  for (let i = 0; i < 100; i++) {
    try {
      process.kill(-child.pid!, 0);
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  for (const port of ports) assert.equal(await portOpen(port), false, `port ${port} still open after SIGINT`);
  let groupAlive = true;
  try {
    process.kill(-child.pid!, 0);
  } catch {
    groupAlive = false;
  }
  assert.equal(groupAlive, false, 'no process of the group is left');
  assert.equal(existsSync(join(dataDir, 'devnet.json')), false, 'devnet.json removed on stop');
});
