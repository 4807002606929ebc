// Every CLI error is one line on stderr — `error: CODE: what is wrong. fix: what to do` — with the
// documented exit code, never a stack trace. An unreachable router is said as such (exit 3), even
// when no model was named (it used to say "no model").
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { builtCli } from './built-cli';

// An empty data dir: no devnet.json to fall back on.
const dataDir = mkdtempSync(join(tmpdir(), 'fedai-errors-'));
after(() => rmSync(dataDir, { recursive: true, force: true }));

async function fedai(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cli = await builtCli();
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, [cli, ...args], {
      env: {
        ...process.env,
        FEDAI_DATA_DIR: dataDir,
        FEDAI_ROUTER_URL: '',
        FEDAI_API_KEY: '',
        FEDAI_MODEL_ID: '',
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

function assertOneLine(stderr: string, code: string): void {
  const lines = stderr.trimEnd().split('\n');
  assert.equal(lines.length, 1, `expected one line, got:\n${stderr}`);
  assert.match(lines[0]!, new RegExp(`^error: ${code}: .+\\. fix: .+`));
  assert.doesNotMatch(stderr, /\n\s+at /);
}

const UNREACHABLE = 'http://127.0.0.1:1';

test('an unreachable router: chat (with and without --model), models, tab balance say so, exit 3', async () => {
  const runs = await Promise.all([
    fedai(['chat', 'hello', '--router', UNREACHABLE, '--api-key', 'fedai_sk_test']),
    fedai(['chat', 'hello', '--router', UNREACHABLE, '--api-key', 'fedai_sk_test', '--model', 'm']),
    fedai(['models', '--router', UNREACHABLE]),
    fedai(['tab', 'balance', '--router', UNREACHABLE, '--api-key', 'fedai_sk_test']),
  ]);
  for (const run of runs) {
    assert.equal(run.code, 3, run.stderr);
    assertOneLine(run.stderr, 'ROUTER_UNREACHABLE');
    assert.match(run.stderr, /the router at http:\/\/127\.0\.0\.1:1 is unreachable/);
    assert.match(run.stderr, /pnpm fedai up/);
    assert.doesNotMatch(run.stderr, /no model/i);
  }
});

test('no router configured, a bad option and a broken key file: one line each, with their codes', async () => {
  const badKey = join(dataDir, 'broken.key');
  writeFileSync(badKey, 'not a key\n');
  chmodSync(badKey, 0o600);
  const [noRouter, badAmount, broken] = await Promise.all([
    fedai(['models']),
    fedai(['tab', 'topup', '12', '--router', UNREACHABLE, '--api-key', 'fedai_sk_test']),
    fedai(['keys', 'show', '--file', badKey]),
  ]);
  assert.equal(noRouter.code, 2, noRouter.stderr);
  assertOneLine(noRouter.stderr, 'NO_ROUTER');
  assert.equal(badAmount.code, 2, badAmount.stderr);
  assertOneLine(badAmount.stderr, 'BAD_OPTION');
  assert.equal(broken.code, 1, broken.stderr);
  assertOneLine(broken.stderr, 'BAD_KEY');
});

test('node payouts: no node key, no settlement, both destinations, an unreachable settlement: one line each', async () => {
  const nodeDir = join(dataDir, 'node-x');
  mkdirSync(nodeDir, { recursive: true });
  const keyFile = join(nodeDir, 'node.key');
  writeFileSync(keyFile, `${'1'.repeat(64)}\n`);
  chmodSync(keyFile, 0o600);
  const [noKey, noSettlement, both, unreachable] = await Promise.all([
    fedai(['node', 'payout', 'show', '--node-dir', join(dataDir, 'nowhere'), '--settlement', UNREACHABLE]),
    fedai(['node', 'statement', 'verify', '--node-dir', nodeDir]),
    fedai([
      'node',
      'payout',
      'set',
      '--lightning-address',
      'a@example.com',
      '--nwc',
      'x',
      '--node-dir',
      nodeDir,
    ]),
    fedai(['node', 'payout', 'show', '--node-dir', nodeDir, '--settlement', UNREACHABLE]),
  ]);
  assert.equal(noKey.code, 2, noKey.stderr);
  assertOneLine(noKey.stderr, 'NO_NODE_KEY');
  assert.equal(noSettlement.code, 2, noSettlement.stderr);
  assertOneLine(noSettlement.stderr, 'NO_SETTLEMENT');
  assert.equal(both.code, 2, both.stderr);
  assertOneLine(both.stderr, 'BAD_OPTION');
  assert.equal(unreachable.code, 3, unreachable.stderr);
  assertOneLine(unreachable.stderr, 'SERVICE_UNREACHABLE');
});
