// Start failures of the real settlement entry point (spawned): one line, the fix, no stack; and
// public keys accepted as npub.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { bareServiceEnv, parseConfig, serviceNodeArgs } from '@fed-ai/kit';
import { generateSecretKey, publicKeyOf, toNpub } from '@fed-ai/protocol';
import { settlementConfigSchema } from '../src/config';

const MAIN = resolve(new URL('../src/main.ts', import.meta.url).pathname);
const TSX = new URL(`file://${createRequire(import.meta.url).resolve('tsx/esm')}`).href;
const dir = mkdtempSync(join(tmpdir(), 'fedai-settlement-start-'));
const children = new Set<ChildProcess>();

after(async () => {
  for (const child of children) {
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

function spawnSettlement(env: Record<string, string>) {
  const child = spawn(process.execPath, serviceNodeArgs(MAIN, ['--import', TSX]), {
    cwd: dir,
    env: bareServiceEnv({ SETTLEMENT_PORT: '0', LOG_LEVEL: 'warn', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  const exited = new Promise<number | null>((done) =>
    child.once('exit', (code) => {
      children.delete(child);
      done(code);
    }),
  );
  return { exited, output: () => output };
}

test('a SETTLEMENT_KEY_FILE that does not exist is one line and exit 1', async () => {
  const s = spawnSettlement({ DATA_DIR: join(dir, 'a'), SETTLEMENT_KEY_FILE: join(dir, 'nowhere', 'x.key') });
  assert.equal(await s.exited, 1);
  const lines = s
    .output()
    .split('\n')
    .filter((l) => l.trim());
  assert.equal(lines.length, 1, s.output());
  assert.match(
    lines[0]!,
    /^settlement failed to start: KEY_FILE_MISSING: SETTLEMENT_KEY_FILE \S+x\.key does not exist — /,
  );
});

test('a bad SETTLEMENT_ROUTER_PUBKEYS is one line and exit 2; npub and hex are both accepted', async () => {
  const s = spawnSettlement({ DATA_DIR: join(dir, 'b'), SETTLEMENT_ROUTER_PUBKEYS: 'npub1typo' });
  assert.equal(await s.exited, 2);
  const lines = s
    .output()
    .split('\n')
    .filter((l) => l.trim());
  assert.equal(lines.length, 1, s.output());
  assert.match(lines[0]!, /^config error: SETTLEMENT_ROUTER_PUBKEYS is invalid \("npub1typo"\)/);
  const key = publicKeyOf(generateSecretKey());
  const config = parseConfig(settlementConfigSchema, {
    SETTLEMENT_ROUTER_PUBKEYS: toNpub(key),
    SETTLEMENT_OPERATOR_PUBKEYS: key,
  });
  assert.deepEqual(config.SETTLEMENT_ROUTER_PUBKEYS, [key]);
  assert.deepEqual(config.SETTLEMENT_OPERATOR_PUBKEYS, [key]);
});
