// `fedai wallet …` as a child process against a real wallet fleet banking at a real settlement (with
// the devnet faucet) over a real relay, all in this process on port 0: create with the default
// policy, list, treasury top-up (paid in the test, and once through --faucet), fund, show,
// connect/revoke, kill/revive, approvals, policy set, audit export and verify (then a tampered row:
// exit 4), a wrong owner key (FORBIDDEN) and no fleet configured (NO_WALLET_FLEET).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { generateSecretKey, publicKeyOf, secretKeyHex, toNsec } from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '@fed-ai/settlement';
import { type RunningWalletFleet, startWalletFleet, walletFleetConfigSchema } from '@fed-ai/wallet-fleet';
import { builtCli } from './built-cli';

const dir = mkdtempSync(join(tmpdir(), 'fedai-wallet-'));
const dataDir = join(dir, 'data');
const emptyDataDir = join(dir, 'empty');
const ownerKeyFile = join(dir, 'owner.key');
const strangerKeyFile = join(dir, 'stranger.key');
const fleetKey = generateSecretKey();
const API_KEY = 'fedai_sk_wallet_test';
let relay: RunningRelay;
let settlement: RunningSettlement;
let fleet: RunningWalletFleet;
/** Stands in for the router's devnet faucet route (POST /v1/tabs/faucet): pays from settlement's faucet. */
let faucetRoute: Server;

function writeKey(path: string, key: Uint8Array): void {
  writeFileSync(path, `${toNsec(key)}\n`, { mode: 0o600 });
  chmodSync(path, 0o600);
}

before(async () => {
  mkdirSync(dataDir);
  mkdirSync(emptyDataDir);
  const ownerKey = generateSecretKey();
  writeKey(ownerKeyFile, ownerKey);
  writeKey(strangerKeyFile, generateSecretKey());
  relay = await startRelay({ port: 0 });
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      FAUCET: 'true',
      SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(fleetKey),
    }),
  );
  fleet = await startWalletFleet(
    walletFleetConfigSchema.parse({
      WALLET_FLEET_PORT: '0',
      WALLET_FLEET_KEY: secretKeyHex(fleetKey),
      FLEET_OWNER_PUBKEYS: publicKeyOf(ownerKey),
      RELAY_URLS: relay.url,
      SETTLEMENT_URL: settlement.url,
      DATA_DIR: join(dir, 'fleet'),
      SWEEP_INTERVAL_MS: '200',
    }),
  );
  faucetRoute = createServer((request, response) => {
    let body = '';
    request.on('data', (d: Buffer) => {
      body += d.toString();
    });
    request.on('end', () => {
      const ok = request.url === '/v1/tabs/faucet' && request.headers.authorization === `Bearer ${API_KEY}`;
      const answer = ok
        ? settlement.books.faucetPay((JSON.parse(body) as { bolt11: string }).bolt11)
        : Promise.reject(new Error('refused'));
      answer.then(
        (paid) => response.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(paid)),
        () =>
          response
            .writeHead(403, { 'content-type': 'application/json' })
            .end(JSON.stringify({ error: { code: 'FORBIDDEN', message: 'no' } })),
      );
    });
  });
  await new Promise<void>((done) => faucetRoute.listen(0, '127.0.0.1', done));
  const routerUrl = `http://127.0.0.1:${(faucetRoute.address() as AddressInfo).port}`;
  // The local network's facts, as fedai up writes them: the fleet and the owner key come from here.
  writeFileSync(
    join(dataDir, 'devnet.json'),
    JSON.stringify({
      version: 1,
      pid: process.pid,
      started_at: new Date().toISOString(),
      router_url: routerUrl,
      router_pubkey: '0'.repeat(64),
      relay_url: relay.url,
      settlement_url: settlement.url,
      wallet_fleet_url: fleet.url,
      wallet_owner_key_file: ownerKeyFile,
      api_key: API_KEY,
      model: 'm',
      model_is_demo: true,
      nodes: [],
      data_dir: dataDir,
      logs_dir: join(dataDir, 'logs'),
    }),
  );
});

after(async () => {
  await new Promise((done) => faucetRoute?.close(done));
  await fleet?.close();
  await settlement?.close();
  await relay?.close();
  rmSync(dir, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

async function fedai(args: string[], options: { dataDir?: string } = {}): Promise<Run> {
  const cli = await builtCli();
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, [cli, 'wallet', ...args], {
      env: {
        ...process.env,
        FEDAI_DATA_DIR: options.dataDir ?? dataDir,
        FEDAI_WALLET_FLEET_URL: '',
        NO_COLOR: '1',
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => done({ code, stdout, stderr }));
  });
}

async function ok(args: string[]): Promise<Run> {
  const run = await fedai(args);
  assert.equal(run.code, 0, `fedai wallet ${args.join(' ')}: ${run.stderr}${run.stdout}`);
  return run;
}

const json = async <T>(args: string[]): Promise<T> => JSON.parse((await ok([...args, '--json'])).stdout) as T;

function assertOneLine(stderr: string, code: string): void {
  const lines = stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, new RegExp(`^error: ${code}: .+\\. fix: .+`));
}

let walletId = '';

test('refusals, one line each: no fleet (NO_WALLET_FLEET, exit 2), no owner key, not an owner (FORBIDDEN), a bad target', async () => {
  const [noFleet, noKey, stranger, noTarget, twoTargets] = await Promise.all([
    fedai(['list'], { dataDir: emptyDataDir }),
    fedai(['list', '--fleet', 'http://127.0.0.1:1'], { dataDir: emptyDataDir }),
    fedai(['list', '--owner-key', strangerKeyFile, '--fleet', fleet.url]),
    fedai(['kill']),
    fedai(['kill', 'w_x', '--all']),
  ]);
  assert.equal(noFleet.code, 2, noFleet.stderr);
  assertOneLine(noFleet.stderr, 'NO_WALLET_FLEET');
  assert.equal(noKey.code, 2, noKey.stderr);
  assertOneLine(noKey.stderr, 'NO_OWNER_KEY');
  assert.notEqual(stranger.code, 0);
  assertOneLine(stranger.stderr, 'FORBIDDEN');
  for (const run of [noTarget, twoTargets]) {
    assert.equal(run.code, 2, run.stderr);
    assertOneLine(run.stderr, 'BAD_OPTION');
  }
});

test('create with the default policy prints the id and the policy; list shows the wallet', async () => {
  const created = await ok(['create', '--name', 'agent-1', '--group', 'bots']);
  walletId = created.stdout.split('\n')[0]!;
  assert.match(walletId, /^w_[0-9a-f]{16}$/);
  assert.match(created.stdout, /default policy/);
  assert.match(created.stdout, /"approvalAboveMsat": 50000/);
  assert.match(created.stdout, /"timeZone": "UTC"/);
  const list = await ok(['list']);
  const [header, row] = list.stdout.trimEnd().split('\n');
  assert.match(header!, /^ID\s+NAME\s+GROUP\s+STATUS\s+BALANCE msat\s+POLICY$/);
  assert.match(row!, new RegExp(`^${walletId}\\s+agent-1\\s+bots\\s+active\\s+0\\s+v1 [0-9a-f]{12}$`));
});

test('treasury topup: the printed invoice, once paid, credits the treasury; --faucet pays and waits', async () => {
  const invoice = await json<{ bolt11: string; amount_msat: number; paid_from_faucet: boolean }>([
    'treasury',
    'topup',
    '200000',
  ]);
  assert.equal(invoice.amount_msat, 200_000);
  assert.equal(invoice.paid_from_faucet, false);
  await settlement.books.faucetPay(invoice.bolt11);
  const started = Date.now();
  for (;;) {
    const treasury = await json<{ balance_msat: number }>(['treasury']);
    if (treasury.balance_msat === 200_000) break;
    assert.ok(Date.now() - started < 20_000, 'the treasury was not credited');
    await new Promise((r) => setTimeout(r, 200));
  }
  const faucet = await ok(['treasury', 'topup', '100000', '--faucet']);
  assert.match(faucet.stdout, /^treasury invoice for 100,000 msat \(100 sat\)/);
  assert.match(faucet.stdout, /paid from the devnet faucet; treasury 300,000 msat \(300 sat\)\n$/);
});

test('fund moves treasury money once per op id; show has the balance and the policy', async () => {
  const first = await ok(['fund', walletId, '150000', '--op-id', 'fund-1']);
  assert.match(first.stdout, /balance 150,000 msat/);
  const [again, random] = await Promise.all([
    json<{ balance_msat: number; op_id: string }>(['fund', walletId, '150000', '--op-id', 'fund-1']),
    ok(['fund', walletId, '1000']),
  ]);
  assert.equal(again.op_id, 'fund-1');
  const opId = /op id (cli-[0-9a-f]{24})/.exec(random.stderr)?.[1];
  assert.ok(opId, random.stderr);
  assert.match(random.stderr, new RegExp(`retry with --op-id ${opId}`));
  const [show, treasury] = await Promise.all([ok(['show', walletId]), ok(['treasury'])]);
  assert.match(show.stdout, /balance {3}151,000 msat \(151 sat\)/);
  assert.match(show.stdout, /"maxPaymentMsat": 100000/);
  assert.equal(treasury.stdout, 'treasury  149,000 msat (149 sat)\n');
});

test('connect prints the NWC URI once, with a warning; revoke cuts it off', async () => {
  const connect = await ok(['connect', walletId, '--name', 'bot', '--expires-in', '3600']);
  assert.match(connect.stdout, /^nostr\+walletconnect:\/\/[0-9a-f]{64}\?relay=.+&secret=[0-9a-f]{64}\n$/);
  assert.match(connect.stderr, /secret and is shown only now/);
  const pubkey = /wallet revoke (\w+)/.exec(connect.stderr)?.[1];
  assert.match(pubkey ?? '', /^[0-9a-f]{64}$/);
  assert.equal((await ok(['revoke', pubkey!])).stdout, `revoked ${pubkey}\n`);
  const twice = await fedai(['revoke', pubkey!]);
  assert.equal(twice.code, 1);
  assertOneLine(twice.stderr, 'NOT_FOUND');
});

test('kill, then revive: the switch shows in list and show; group and fleet-wide switches', async () => {
  assert.equal((await ok(['kill', walletId])).stdout, `wallet:${walletId}: active -> killed\n`);
  assert.match((await ok(['list'])).stdout, new RegExp(`${walletId}\\s+agent-1\\s+bots\\s+killed`));
  await ok(['revive', walletId]);
  const [shown, all, group] = await Promise.all([
    json<{ status: string }>(['show', walletId]),
    json<{ scope: string; status: string }>(['pause', '--all']),
    json<{ scope: string; status: string }>(['kill', '--group', 'bots']),
  ]);
  assert.deepEqual([shown.status, all.status, group.status], ['active', 'paused', 'killed']);
  await Promise.all([ok(['revive', '--all']), ok(['revive', '--group', 'bots'])]);
});

test('approvals: none pending; approving an unknown id is refused with its reason; policy set', async () => {
  const file = join(dir, 'policy.json');
  const badFile = join(dir, 'bad-policy.json');
  writeFileSync(file, JSON.stringify({ version: 1, mode: 'dry-run', budgets: [], methods: ['get_balance'] }));
  writeFileSync(badFile, JSON.stringify({ version: 1, mode: 'sometimes' }));
  const [table, list, unknown, set, bad] = await Promise.all([
    ok(['approvals']),
    json(['approvals']),
    fedai(['approve', 'ap_nope']),
    ok(['policy', 'set', walletId, '--file', file]),
    fedai(['policy', 'set', walletId, '--file', badFile]),
  ]);
  assert.equal(table.stdout, 'no pending approvals.\n');
  assert.deepEqual(list, { approvals: [] });
  assert.notEqual(unknown.code, 0);
  assert.equal(unknown.stderr.trimEnd().split('\n').length, 1, unknown.stderr);
  assert.match(unknown.stderr, /^error: [A-Z_]+: /);
  assert.match(set.stdout, new RegExp(`^${walletId}: policy version 2, sha256 [0-9a-f]{64}\\n$`));
  assert.notEqual(bad.code, 0);
  assert.equal(bad.stderr.trimEnd().split('\n').length, 1, bad.stderr);
  assert.match(bad.stderr, /^error: INVALID_REQUEST: /);
});

test('audit export and verify; a tampered row fails verify with exit 4', async () => {
  const out = join(dir, 'audit.jsonl');
  const [exported, streamed, verified] = await Promise.all([
    ok(['audit', 'export', '--out', out]),
    ok(['audit', 'export']),
    ok(['audit', 'verify']),
  ]);
  const lines = readFileSync(out, 'utf8').trimEnd().split('\n');
  assert.ok(lines.length >= 5, `only ${lines.length} entries`);
  for (const line of lines) JSON.parse(line);
  assert.equal(exported.stdout, `wrote ${lines.length} audit entries to ${out}\n`);
  assert.equal(streamed.stdout, `${lines.join('\n')}\n`);
  assert.match(verified.stdout, new RegExp(`^ok: ${lines.length} entries, head [0-9a-f]{64}`));
  await fleet.fleet.db.query(
    `UPDATE audit_log SET data = jsonb_set(data, '{amount_msat}', '1') WHERE seq = 1`,
  );
  const [broken, brokenJson] = await Promise.all([
    fedai(['audit', 'verify']),
    fedai(['audit', 'verify', '--json']),
  ]);
  assert.equal(broken.code, 4, broken.stderr);
  assert.equal(broken.stdout, 'NOT ok: EDITED at seq 1\n');
  assert.equal(brokenJson.code, 4);
  assert.deepEqual(JSON.parse(brokenJson.stdout), { ok: false, seq: 1, problem: 'EDITED' });
});
