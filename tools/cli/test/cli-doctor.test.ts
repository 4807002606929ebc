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

function fedai(args: string[], env: Record<string, string>) {
  return spawnSync(process.execPath, [cli, ...args], {
    encoding: 'utf8',
    env: { ...process.env, ...env, NO_COLOR: '1' },
    timeout: 60_000,
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
