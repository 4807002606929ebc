import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, test } from 'node:test';
import { generateSecretKey, toNsec } from '@fed-ai/protocol';
import { builtCli } from './built-cli';

let cli = '';
before(async () => {
  cli = await builtCli();
});

function fedai(args: string[], env: Record<string, string>, cwd?: string) {
  return spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env, NO_COLOR: '1' },
    timeout: 60_000,
    ...(cwd ? { cwd } : {}),
  });
}

test('fedai doctor reports a readable key file and a taken port, each with its fix, and exits 4', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-doctor-'));
  const keyPath = join(dir, 'node-1.key');
  writeFileSync(keyPath, toNsec(generateSecretKey()));
  chmodSync(keyPath, 0o644);
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
  const port = (blocker.address() as { port: number }).port;
  try {
    const result = fedai(['doctor', '--json', '--ports', String(port)], { FEDAI_DATA_DIR: dir });
    assert.equal(result.status, 4, result.stderr);
    const findings = JSON.parse(result.stdout) as { check: string; ok: boolean; fix?: string }[];
    const key = findings.find((f) => f.check === 'key file node-1.key');
    assert.equal(key?.ok, false);
    assert.equal(key?.fix, `chmod 600 ${keyPath}`);
    const taken = findings.find((f) => f.check === `port ${port}`);
    assert.equal(taken?.ok, false);
    assert.match(taken?.fix ?? '', new RegExp(String(port)));
    assert.equal(findings.find((f) => f.check === 'database')?.ok, true);

    chmodSync(keyPath, 0o600);
    blocker.close();
    await new Promise((r) => setTimeout(r, 50));
    const clean = fedai(['doctor', '--json', '--ports', String(port)], { FEDAI_DATA_DIR: dir });
    assert.equal(clean.status, 0, clean.stdout);
  } finally {
    blocker.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('fedai keys new writes an nsec with mode 0600 and keys show prints the npub; usage errors exit 2', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-keys-'));
  try {
    const file = join(dir, 'me.key');
    const created = fedai(['keys', 'new', '--file', file, '--json'], {});
    assert.equal(created.status, 0, created.stderr);
    const facts = JSON.parse(created.stdout) as { npub: string; nsec: string };
    assert.match(facts.npub, /^npub1/);
    assert.match(facts.nsec, /^nsec1/);
    assert.equal(statSync(file).mode & 0o777, 0o600);
    const shown = fedai(['keys', 'show', '--file', file, '--json'], {});
    assert.equal((JSON.parse(shown.stdout) as { npub: string }).npub, facts.npub);
    assert.equal(fedai(['keys', 'new', '--file', file], {}).status, 2, 'refuses to overwrite');
    assert.equal(fedai(['no-such-command'], {}).status, 2);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("fedai doctor runs the services' safe-start rules over fedai.toml and the environment, each problem with its code and fix", () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-doctor-safe-'));
  try {
    const nodeKey = join(dir, 'node.key');
    writeFileSync(nodeKey, toNsec(generateSecretKey()));
    chmodSync(nodeKey, 0o644);
    writeFileSync(
      join(dir, 'fedai.toml'),
      [
        '[router]',
        'ROUTER_NAME = "ours"', // a setting the rules do not read: skipped, not refused
        'ALLOW_PRIVATE_ENDPOINTS = true',
        'DATABASE_URL = "postgres://db.internal/router"',
        '[settlement]',
        'FAUCET = true',
        'LIGHTNING_NETWORK = "mainnet"',
        '[node]',
        `NODE_KEY_FILE = "${nodeKey}"`,
        'ALLOW_EMBEDDED_DB = true',
        '[relay]',
      ].join('\n'),
    );
    const env = { FEDAI_DATA_DIR: join(dir, 'data'), FEDAI_ENV: 'production', DATABASE_URL: '' };
    const result = fedai(['doctor', '--json', '--ports', '1'], env, dir);
    assert.equal(result.status, 4, result.stderr);
    const findings = JSON.parse(result.stdout) as {
      check: string;
      ok: boolean;
      code?: string;
      fix?: string;
    }[];
    const codes = (service: string) =>
      findings.filter((f) => f.check === `safe start ${service}` && !f.ok).map((f) => f.code);
    assert.deepEqual(codes('router'), ['PRIVATE_ADDRESSES_IN_PRODUCTION']);
    assert.deepEqual(codes('settlement'), [
      'FAUCET_ON_MAINNET',
      'DEVNET_BACKEND_ON_MAINNET',
      'EMBEDDED_DB_IN_PRODUCTION',
      'FAUCET_IN_PRODUCTION',
      'DEVNET_BACKEND_IN_PRODUCTION',
    ]);
    assert.deepEqual(codes('node'), ['KEY_FILE_UNSAFE']);
    assert.equal(findings.find((f) => f.code === 'KEY_FILE_UNSAFE')?.fix, `chmod 600 ${nodeKey}`);
    assert.equal(findings.find((f) => f.check === 'safe start relay')?.ok, true);
    // Only the sections fedai.toml has: no wallet fleet here.
    assert.equal(findings.filter((f) => f.check === 'safe start wallet-fleet').length, 0);
    // --services picks them; a name that is no service is a usage error.
    const fleet = fedai(['doctor', '--json', '--ports', '1', '--services', 'wallet-fleet'], env, dir);
    const fleetFindings = JSON.parse(fleet.stdout) as { check: string; code?: string }[];
    assert.deepEqual(
      fleetFindings.filter((f) => f.check.startsWith('safe start')).map((f) => f.code),
      ['EMBEDDED_DB_IN_PRODUCTION'],
    );
    assert.equal(fedai(['doctor', '--services', 'routr'], env, dir).status, 2);
    // The text form prints each with its fix.
    const text = fedai(['doctor', '--ports', '1'], env, dir);
    assert.match(text.stdout, /FAIL safe start settlement: FAUCET_ON_MAINNET: .*\n\s+fix: unset FAUCET/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
