// The operator runbooks, executed: every fenced block marked `sh runbook:<id>` in docs/runbooks/*.md
// runs with bash (as an operator would paste it, from the repository root) against ONE real local
// network (`fedai up --detach` in a temporary data folder), and what the runbook promises is
// checked: the incident look-around sees a healthy network, a capped key is refused then served
// again, and a banned node is out while the other serves; a rotated API key works with the moved
// balance and the revoked one gets 401; a node restarted on a new key (and a new port) is served
// and charged under its new id; an agent's NWC payment is refused after the kill switch and the
// pause, and goes through after revive; payouts and reconciliation report the local network's
// state; and a backup restored over a deleted settlement directory gives exactly the recorded
// `fedai ledger verify` totals and tab balance. The last test checks that every marked block but
// the PostgreSQL ones (runbooks-postgres.test.ts) was run here.
import assert from 'node:assert/strict';
import {
  chmodSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { builtCli } from '../../cli/test/built-cli';
import { markedBlocks, POSTGRES_BLOCK_IDS, type Run, root, run, runBlock } from './blocks';

const work = mkdtempSync(join(tmpdir(), 'fedai-runbooks-'));
const dataDir = join(work, 'data');
const binDir = join(work, 'bin');
const backupDir = join(work, 'backups');

const blocks = markedBlocks();
const ran = new Set<string>();
/** The variables the runbooks tell the operator to set (filled in once the network is up). */
const vars: Record<string, string> = {};

function shellEnv(extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  return {
    ...process.env,
    PATH: `${binDir}:${process.env.PATH ?? ''}`,
    NO_COLOR: '1',
    FEDAI_DATA_DIR: dataDir,
    // Nothing from the developer's shell may pick another network or database.
    FEDAI_ROUTER_URL: '',
    FEDAI_API_KEY: '',
    FEDAI_WALLET_FLEET_URL: '',
    FEDAI_CONFIG: '',
    DATABASE_URL: '',
    ...vars,
    ...extra,
  };
}

/** Runs the block `id` with bash (-euo pipefail); fails unless it exits 0. */
function block(id: string, extra: Record<string, string> = {}): Promise<Run> {
  return runBlock(blocks, ran, id, shellEnv(extra));
}

/** The CLI outside the runbooks (setting up the scene). */
async function fedai(args: string[]): Promise<Run> {
  return run(join(binDir, 'fedai'), args, shellEnv(), 60_000);
}

async function fedaiJson<T>(args: string[]): Promise<T> {
  const result = await fedai([...args, '--json']);
  assert.equal(result.code, 0, `fedai ${args.join(' ')}: ${result.stderr}`);
  return JSON.parse(result.stdout) as T;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

interface Devnet {
  router_url: string;
  settlement_url: string;
  wallet_fleet_url: string;
  wallet_owner_key_file: string;
  agent_wallet_id: string;
  agent_nwc_uri: string;
  api_key: string;
  model: string;
  router_pubkey: string;
  nodes: { name: string; url: string; pubkey: string }[];
}
let devnet: Devnet;
let upPid = 0;
let client = { id: '', key: '' };

async function tabStatus(key: string): Promise<{ status: number; balance: number }> {
  const response = await fetch(`${devnet.router_url}/v1/tabs/me`, {
    headers: { authorization: `Bearer ${key}` },
  });
  const body = (await response.json()) as { balance_msat?: number };
  return { status: response.status, balance: body.balance_msat ?? -1 };
}

async function chatStatus(key: string): Promise<{ status: number; code: string }> {
  const { status, code } = await chat(key, devnet.model);
  return { status, code };
}

/** A paid request: its status, reason code and the node that answered (`x-fedai-node`). */
async function chat(key: string, model: string): Promise<{ status: number; code: string; node: string }> {
  const response = await fetch(`${devnet.router_url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: [{ role: 'user', content: 'runbook' }], max_tokens: 4 }),
  });
  const text = await response.text();
  return {
    status: response.status,
    code: /"code":"([A-Z_]+)"/.exec(text)?.[1] ?? '',
    node: response.headers.get('x-fedai-node') ?? '',
  };
}

async function routerNodes(): Promise<Map<string, { serving: boolean; banned: boolean }>> {
  const body = (await (await fetch(`${devnet.router_url}/nodes`)).json()) as {
    nodes: { id: string; serving: boolean; banned: boolean }[];
  };
  return new Map(body.nodes.map((n) => [n.id, { serving: n.serving, banned: n.banned }]));
}

async function freePort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const address = server.address();
  await new Promise((done) => server.close(done));
  return typeof address === 'object' && address ? address.port : 0;
}

async function stopByPidFile(file: string): Promise<void> {
  if (!existsSync(file)) return;
  const pid = Number(readFileSync(file, 'utf8'));
  if (pid > 0 && isAlive(pid)) {
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 100 && isAlive(pid); i++) await sleep(100);
    if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  }
}

before(async () => {
  mkdirSync(binDir, { recursive: true });
  mkdirSync(dataDir, { recursive: true });
  // `fedai` on PATH: the CLI bundled once (fast starts); the service starts (`fedai <service>
  // start`) import a service's TypeScript entry point, so they run the CLI through tsx as `pnpm
  // fedai` does.
  const bundle = await builtCli();
  const wrapper = join(binDir, 'fedai');
  writeFileSync(
    wrapper,
    [
      '#!/bin/sh',
      'case "$1:$2" in',
      `  settlement:start|router:start|node:start|relay:start) exec "${process.execPath}" --import tsx "${join(root, 'tools/cli/src/main.ts')}" "$@" ;;`,
      `  *) exec "${process.execPath}" "${bundle}" "$@" ;;`,
      'esac',
      '',
    ].join('\n'),
  );
  chmodSync(wrapper, 0o755);

  const started = await fedai(['up', '--detach']);
  assert.equal(started.code, 0, started.stderr);
  upPid = Number(readFileSync(join(dataDir, 'devnet.pid'), 'utf8'));
  const facts = join(dataDir, 'devnet.json');
  for (let i = 0; i < 1500 && !existsSync(facts); i++) {
    if (!isAlive(upPid)) {
      const log = readFileSync(join(dataDir, 'logs-up.log'), 'utf8');
      throw new Error(`fedai up exited early:\n${log}`);
    }
    await sleep(100);
  }
  assert.ok(existsSync(facts), 'no devnet.json after 150 s');
  devnet = JSON.parse(readFileSync(facts, 'utf8')) as Devnet;
  Object.assign(vars, {
    ROUTER_URL: devnet.router_url,
    SETTLEMENT_URL: devnet.settlement_url,
    FLEET_URL: devnet.wallet_fleet_url,
    OPERATOR_KEY: join(dataDir, 'operator.key'),
    OWNER_KEY: devnet.wallet_owner_key_file,
    WALLET_ID: devnet.agent_wallet_id,
    API_KEY: devnet.api_key,
  });
  // A client's key with money in its tab: the key the incident caps and the rotation replaces.
  const created = await fedaiJson<{ id: string; key: string }>(['apikey', 'create', '--name', 'client']);
  client = { id: created.id, key: created.key };
  const funded = await fedaiJson<{ balance_msat: number }>([
    'tab',
    'topup',
    '100000',
    '--faucet',
    '--api-key',
    client.key,
  ]);
  assert.equal(funded.balance_msat, 100_000);
});

after(async () => {
  for (const name of ['node-3.pid', 'settlement-restore.pid', 'router-restore.pid'])
    await stopByPidFile(join(dataDir, name));
  if (upPid > 0 && isAlive(upPid)) await fedai(['down']).catch(() => undefined);
  try {
    if (upPid > 0) process.kill(-upPid, 'SIGKILL'); // only if something is left of the network
  } catch {
    // the group is gone, as it should be
  }
  rmSync(work, { recursive: true, force: true });
});

test('incident.md: ready, metrics, breakers, logs; a capped key is refused and served again; ledger verify exits 0', async () => {
  const ready = await block('incident-ready');
  for (const url of [devnet.router_url, devnet.settlement_url, devnet.wallet_fleet_url])
    assert.ok(ready.stdout.includes(`${url} 200\n`), ready.stdout);
  assert.match(ready.stdout, /\{"ok":true,"nodes":2\}/);

  const metrics = await block('incident-metrics');
  assert.match(metrics.stdout, /^fedai_router_nodes_serving\{[^}]*\} 2$/m);
  assert.match(metrics.stdout, /^fedai_job_overdue\{[^}]*job_name="settlement_sweeper"[^}]*\} 0$/m);

  const breakers = await block('incident-breakers');
  assert.equal(breakers.stdout.match(/ serving\s+closed /g)?.length, 2, breakers.stdout);
  assert.match(breakers.stdout, /nodes\s+2 serving of 2 registered/);

  await block('incident-logs');

  assert.equal((await chatStatus(client.key)).status, 200, 'the client is served before the cap');
  const capped = await block('incident-stop-key', { KEY_ID: client.id });
  // BUDGET/DAY is the column after PARALLEL (16), then BUDGET/MONTH.
  assert.match(capped.stdout, new RegExp(`^${client.id}\\s+client\\s+active\\s+.*\\s16\\s+1\\s+-\\s`, 'm'));
  assert.deepEqual(await chatStatus(client.key), { status: 429, code: 'BUDGET_EXHAUSTED' });
  const resumed = await block('incident-resume-key', { KEY_ID: client.id });
  assert.match(resumed.stdout, new RegExp(`^${client.id}\\s+client\\s+active\\s+.*\\s16\\s+-\\s+-\\s`, 'm'));
  assert.equal((await chatStatus(client.key)).status, 200, 'served again once the cap is lifted');

  // A node that must never serve again: node-2 is banned by the prefix `fedai nodes` shows.
  const [node1, node2] = devnet.nodes;
  assert.ok(node1 && node2, 'fedai up starts two nodes');
  const ban = await block('incident-ban-node', { NODE_ID: node2.pubkey.slice(0, 12) });
  assert.match(ban.stdout, new RegExp(`^banned ${node2.pubkey}$`, 'm'));
  assert.match(ban.stdout, new RegExp(`^${node2.pubkey.slice(0, 12)}…\\s+\\S+\\s+banned\\s`, 'm'));
  assert.match(ban.stdout, /^nodes\s+1 serving of 2 registered$/m);
  assert.deepEqual((await routerNodes()).get(node2.pubkey), { serving: false, banned: true });
  for (let i = 0; i < 3; i++) {
    const served = await chat(client.key, devnet.model);
    assert.deepEqual([served.status, served.node], [200, node1.pubkey], 'the other node serves');
  }

  const verify = await block('incident-verify');
  assert.match(verify.stdout, /^ledger balanced: \d+ accounts, \d+ transfers/m);
  assert.match(verify.stdout, /^no differences$/m);
});

test('key-rotation.md: the new key works with the moved balance, the revoked one gets 401', async () => {
  const oldBefore = await tabStatus(client.key);
  const created = await block('apikey-create');
  const newId = /^id\s+(key_\S+)$/m.exec(created.stdout)?.[1];
  const newKey = /^key\s+(fedai_sk_\S+)$/m.exec(created.stdout)?.[1];
  assert.ok(newId && newKey, created.stdout);
  const keys = { OLD_KEY: client.key, OLD_KEY_ID: client.id, NEW_KEY: newKey, NEW_KEY_ID: newId };

  const moved = await block('apikey-move-balance', keys);
  assert.match(moved.stdout, /^refunded: 50,000 msat/m);
  assert.deepEqual(await tabStatus(newKey), { status: 200, balance: 50_000 });
  assert.equal((await tabStatus(client.key)).balance, oldBefore.balance - 50_000);

  const check = await block('apikey-check-new', keys);
  assert.equal(check.stdout, '200\n');

  const revoked = await block('apikey-revoke-old', keys);
  assert.match(revoked.stdout, new RegExp(`^revoked ${client.id}$`, 'm'));
  assert.match(revoked.stdout, /^old 401$/m);
  assert.match(revoked.stdout, /^new 200$/m);
  assert.equal((await tabStatus(client.key)).status, 401);
  assert.equal((await chatStatus(client.key)).status, 401);
  assert.equal((await chatStatus(newKey)).status, 200);
});

test('key-rotation.md: a node restarted on a new key is served under the new id, the old id not', async () => {
  // The scene: an operator's own node (the network's nodes belong to `fedai up`) serving a model
  // of its own, configured by a fedai.toml, started in the background on its old key.
  const nodeModel = 'rotation-demo';
  const env = {
    NODE_CONFIG: join(work, 'node-3.toml'),
    NODE_MODEL: nodeModel,
    OLD_NODE_KEY: join(work, 'node-3-old.key'),
    NEW_NODE_KEY: join(work, 'node-3-new.key'),
    NODE_PID_FILE: join(dataDir, 'node-3.pid'),
    NODE_LOG: join(dataDir, 'node-3.log'),
    NEW_NODE_PORT: String(await freePort()),
  };
  const pubkey = async (file: string) =>
    (await fedaiJson<{ pubkey: string }>(['keys', 'new', '--file', file])).pubkey;
  const oldId = await pubkey(env.OLD_NODE_KEY);
  writeFileSync(
    env.NODE_CONFIG,
    [
      '[node]',
      'NODE_HOST = "127.0.0.1"',
      `NODE_PORT = "${await freePort()}"`,
      `NODE_KEY_FILE = "${env.OLD_NODE_KEY}"`,
      `ROUTER_URLS = "${devnet.router_url}"`,
      `ROUTER_PUBKEYS = "${devnet.router_pubkey}"`,
      `DATA_DIR = "${join(dataDir, 'node-3')}"`,
      'RUNNER = "embedded"',
      'DEMO_MODEL = "true"',
      `MODEL_ID = "${nodeModel}"`,
      'HEARTBEAT_INTERVAL_S = "2"',
      '',
    ].join('\n'),
  );
  const started = await run(
    'bash',
    [
      '-c',
      'FEDAI_CONFIG="$NODE_CONFIG" nohup fedai node start >> "$NODE_LOG" 2>&1 & echo $! > "$NODE_PID_FILE"',
    ],
    shellEnv(env),
    10_000,
  );
  assert.equal(started.code, 0, started.stderr);
  for (let i = 0; i < 900 && !(await routerNodes()).get(oldId)?.serving; i++) await sleep(100);
  assert.equal((await routerNodes()).get(oldId)?.serving, true, readFileSync(env.NODE_LOG, 'utf8'));
  const before = await chat(devnet.api_key, nodeModel);
  assert.deepEqual([before.status, before.node], [200, oldId], 'the old key serves before the rotation');

  const made = await block('node-key-new', env);
  const newId = /^new ([0-9a-f]{64})$/m.exec(made.stdout)?.[1];
  assert.ok(newId && newId !== oldId, made.stdout);
  assert.match(made.stdout, new RegExp(`^old ${oldId}$`, 'm'));

  await block('node-key-switch', env);
  assert.match(
    readFileSync(env.NODE_CONFIG, 'utf8'),
    new RegExp(`^NODE_KEY_FILE = "${env.NEW_NODE_KEY}"$`, 'm'),
  );
  const checked = await block('node-key-check', env);
  assert.match(checked.stdout, /^HTTP\/1\.1 200 /m);
  assert.match(checked.stdout, new RegExp(`^x-fedai-node: ${newId}$`, 'mi'));
  assert.match(checked.stdout, new RegExp(`^${newId.slice(0, 12)}…\\s+\\S+\\s+serving\\s`, 'm'));
  assert.match(checked.stdout, new RegExp(`^${oldId.slice(0, 12)}…\\s+\\S+\\s+not serving\\s`, 'm'));
  const nodes = await routerNodes();
  assert.equal(nodes.get(newId)?.serving, true);
  assert.equal(nodes.get(oldId)?.serving, false);
  // Paid: the charge of the check's request names the new node.
  let charged = 0;
  for (let i = 0; i < 100 && charged === 0; i++) {
    const tab = (await (
      await fetch(`${devnet.router_url}/v1/tabs/me`, {
        headers: { authorization: `Bearer ${devnet.api_key}` },
      })
    ).json()) as { charges: { node: string; amount_msat: number }[] };
    charged = tab.charges.find((c) => c.node === newId)?.amount_msat ?? 0;
    if (charged === 0) await sleep(200);
  }
  assert.ok(charged > 0, 'the request answered by the new id was charged');

  await stopByPidFile(env.NODE_PID_FILE);
});

test('kill-switch.md: an agent payment is refused after kill and pause, and goes through after revive', async () => {
  (globalThis as { WebSocket?: unknown }).WebSocket ??= (await import('ws')).WebSocket;
  const { NWCClient } = await import('@getalby/sdk/nwc');
  const agent = new NWCClient({ nostrWalletConnectUrl: devnet.agent_nwc_uri });
  /** The agent pays a 1,000 msat top-up of the devnet tab over NWC: true when paid. */
  const agentPays = async (): Promise<boolean> => {
    const invoice = (await (
      await fetch(`${devnet.router_url}/v1/tabs/topup`, {
        method: 'POST',
        headers: { authorization: `Bearer ${devnet.api_key}`, 'content-type': 'application/json' },
        body: JSON.stringify({ amount_msat: 1_000 }),
      })
    ).json()) as { bolt11: string };
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('no NWC answer in 20 s')), 20_000);
    });
    try {
      const paid = await Promise.race([agent.payInvoice({ invoice: invoice.bolt11 }), timeout]);
      return /^[0-9a-f]{64}$/.test(paid.preimage);
    } catch (error) {
      if (error instanceof Error && error.message.startsWith('no NWC answer')) throw error;
      return false;
    } finally {
      clearTimeout(timer);
    }
  };
  try {
    assert.equal(await agentPays(), true, 'the agent pays before any switch');

    const killed = await block('kill-fleet');
    assert.match(killed.stdout, /^fleet:[0-9a-f]{64}: active -> killed$/m);
    assert.equal(await agentPays(), false, 'refused while the fleet is killed');
    const revived = await block('revive-fleet');
    assert.match(revived.stdout, /^fleet:[0-9a-f]{64}: killed -> active$/m);
    assert.equal(await agentPays(), true, 'paid after the fleet is revived');

    const paused = await block('pause-wallet');
    assert.match(paused.stdout, new RegExp(`^wallet:${devnet.agent_wallet_id}: active -> paused$`, 'm'));
    assert.match(
      paused.stdout,
      new RegExp(`^${devnet.agent_wallet_id}\\s+demo-agent\\s+-\\s+paused\\s`, 'm'),
    );
    assert.equal(await agentPays(), false, 'refused while the wallet is paused');
    const back = await block('revive-wallet');
    assert.match(back.stdout, new RegExp(`^wallet:${devnet.agent_wallet_id}: paused -> active$`, 'm'));
    assert.match(back.stdout, /\bactive\b/);
    assert.equal(await agentPays(), true, 'paid after the wallet is revived');

    const audit = await block('kill-switch-audit');
    assert.match(audit.stdout, /^ok: \d+ entries, head [0-9a-f]{64}/m);
  } finally {
    agent.close();
  }
});

test("payouts-reconciliation.md: a node's unpaid earnings, nothing to pay without a destination, no differences", async () => {
  const env = { NODE_DIR: join(dataDir, 'node-1'), NODE_KEY: join(dataDir, 'node-1.key') };
  const shown = await block('node-payout-show', env);
  assert.match(shown.stdout, /destination\s+none \(fedai node payout set\)/);
  const unpaid = Number(/unpaid\s+(\d+) msat/.exec(shown.stdout)?.[1] ?? Number.NaN);
  const listing = await fedaiJson<{ earnings_msat: number }>([
    'node',
    'payout',
    'show',
    '--node-dir',
    env.NODE_DIR,
    '--key',
    env.NODE_KEY,
    '--settlement',
    devnet.settlement_url,
  ]);
  assert.equal(unpaid, listing.earnings_msat);

  const payouts = await block('payouts-run');
  assert.equal(payouts.stdout, 'no node has a payout destination\n');
  const reconcile = await block('reconcile');
  assert.match(reconcile.stdout, /^\s+top-ups\s+checked \d+, credited 0,/m);
  assert.match(reconcile.stdout, /^no differences$/m);
  const verify = await block('payouts-verify');
  assert.match(verify.stdout, /^ledger balanced: /m);
});

test('backup-restore.md: a backup restored over a deleted settlement directory gives the same ledger totals and tab balance', async () => {
  const config = join(work, 'fedai.toml');
  const pubkey = async (name: string) =>
    (await fedaiJson<{ pubkey: string }>(['keys', 'show', '--file', join(dataDir, `${name}.key`)])).pubkey;
  const [routerPk, operatorPk, fleetPk] = await Promise.all([
    pubkey('router'),
    pubkey('operator'),
    pubkey('wallet-fleet'),
  ]);
  // The settings `fedai up` gives settlement and router, as an operator's fedai.toml holds them.
  writeFileSync(
    config,
    [
      '[settlement]',
      'SETTLEMENT_HOST = "127.0.0.1"',
      `SETTLEMENT_PORT = "${new URL(devnet.settlement_url).port}"`,
      `SETTLEMENT_KEY_FILE = "${join(dataDir, 'settlement.key')}"`,
      `SETTLEMENT_ROUTER_PUBKEYS = "${routerPk}"`,
      `SETTLEMENT_OPERATOR_PUBKEYS = "${operatorPk}"`,
      `SETTLEMENT_WALLET_PUBKEYS = "${fleetPk}"`,
      `DATA_DIR = "${join(dataDir, 'settlement')}"`,
      '',
      '[router]',
      'ROUTER_HOST = "127.0.0.1"',
      `ROUTER_PORT = "${new URL(devnet.router_url).port}"`,
      `ROUTER_KEY_FILE = "${join(dataDir, 'router.key')}"`,
      `OPERATOR_PUBKEYS = "${operatorPk}"`,
      'ALLOW_PRIVATE_ENDPOINTS = "true"',
      `DATA_DIR = "${join(dataDir, 'router')}"`,
      `SETTLEMENT_URL = "${devnet.settlement_url}"`,
      '',
    ].join('\n'),
  );
  const env = { BACKUP_DIR: backupDir, BACKUP_FILE: join(backupDir, 'fedai.tgz'), SERVICE_CONFIG: config };

  await block('backup-record', env);
  const ledgerBefore = JSON.parse(readFileSync(join(backupDir, 'ledger-before.json'), 'utf8')) as {
    ok: boolean;
    accounts: number;
    transfers: number;
    postedTotalMsat: number;
  };
  assert.equal(ledgerBefore.ok, true);
  assert.ok(ledgerBefore.accounts > 0 && ledgerBefore.transfers > 0 && ledgerBefore.postedTotalMsat > 0);
  const tabBefore = JSON.parse(readFileSync(join(backupDir, 'tab-before.json'), 'utf8')) as {
    balance_msat: number;
  };
  assert.ok(tabBefore.balance_msat > 0);

  await block('backup-stop', env);
  assert.equal(isAlive(upPid), false, 'fedai down stopped the network');
  assert.equal(existsSync(join(dataDir, 'devnet.json')), false);
  await block('backup-copy', env);
  assert.ok(existsSync(env.BACKUP_FILE));

  // The disaster: settlement's data is gone.
  rmSync(join(dataDir, 'settlement'), { recursive: true, force: true });

  await block('restore-files', env);
  assert.ok(existsSync(join(dataDir, 'settlement')), 'settlement data unpacked');
  assert.ok(
    readdirSync(dataDir).some((name) => name.startsWith('router.damaged-')),
    'the replaced directories are kept aside',
  );
  await block('restore-start-settlement', env);
  const verified = await block('restore-verify', env);
  assert.equal(verified.stdout, '', 'diff of the ledger reports is empty');
  const ledgerAfter = JSON.parse(readFileSync(join(backupDir, 'ledger-after.json'), 'utf8')) as unknown;
  assert.deepEqual(ledgerAfter, ledgerBefore);

  await block('restore-start-router', env);
  const tabAfter = JSON.parse(readFileSync(join(backupDir, 'tab-after.json'), 'utf8')) as unknown;
  assert.deepEqual(tabAfter, tabBefore);
});

test('every block marked sh runbook:<id> in docs/runbooks, except the PostgreSQL ones, was run by this file', () => {
  assert.ok(blocks.size >= 20, `found ${blocks.size} marked blocks`);
  assert.deepEqual(
    [...blocks.keys()].filter((id) => !ran.has(id) && !POSTGRES_BLOCK_IDS.includes(id)),
    [],
  );
});
