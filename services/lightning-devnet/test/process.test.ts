// The real entry point as a child process (`node --import tsx src/main.ts`): one ready line with
// the URL, /health, a clean exit on SIGTERM; a bad setting is one line and exit 2.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { bareServiceEnv, serviceNodeArgs } from '@fed-ai/kit';

const MAIN = resolve(new URL('../src/main.ts', import.meta.url).pathname);
const TSX = new URL(`file://${createRequire(import.meta.url).resolve('tsx/esm')}`).href;
const dir = mkdtempSync(join(tmpdir(), 'fedai-devnet-process-'));
const children = new Set<ChildProcess>();

after(async () => {
  for (const child of children) {
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

function spawnDevnet(env: Record<string, string>) {
  const child = spawn(process.execPath, serviceNodeArgs(MAIN, ['--import', TSX]), {
    cwd: dir,
    env: bareServiceEnv({ LOG_LEVEL: 'info', LIGHTNING_DEVNET_PORT: '0', ...env }),
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.add(child);
  let output = '';
  const onData = (d: Buffer) => {
    output += d.toString();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<number | null>((done) =>
    child.once('exit', (code) => {
      children.delete(child);
      done(code);
    }),
  );
  const ready = new Promise<string>((done, fail) => {
    const look = () => {
      const line = output.split('\n').find((l) => l.includes('lightning-devnet ready'));
      if (line) done((JSON.parse(line) as { url: string }).url);
    };
    child.stdout?.on('data', look);
    void exited.then((code) => fail(new Error(`exited ${code}: ${output}`)));
  });
  return { child, exited, ready, output: () => output };
}

test('starts, answers /health, prints one ready line without secrets, exits 0 on SIGTERM', async () => {
  const admin = 'process-test-admin-key-0123456789';
  const devnet = spawnDevnet({ DATA_DIR: join(dir, 'a'), DEVNET_ADMIN_KEY: admin });
  const url = await devnet.ready;
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+$/);
  const health = await fetch(`${url}/health`);
  assert.deepEqual(await health.json(), { ok: true });
  const created = await fetch(`${url}/devnet/wallets`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-admin-key': admin },
    body: JSON.stringify({ name: 'w' }),
  });
  const keys = (await created.json()) as { adminkey: string; inkey: string };
  await fetch(`${url}/api/v1/wallet`, { headers: { 'x-api-key': keys.adminkey } });
  devnet.child.kill('SIGTERM');
  assert.equal(await devnet.exited, 0);
  for (const secret of [admin, keys.adminkey, keys.inkey]) assert.ok(!devnet.output().includes(secret));
});

test('a bad LIGHTNING_DEVNET_PORT is one line and exit 2', async () => {
  const devnet = spawnDevnet({ DATA_DIR: join(dir, 'b'), LIGHTNING_DEVNET_PORT: 'seventy' });
  devnet.ready.catch(() => {});
  assert.equal(await devnet.exited, 2);
  const lines = devnet
    .output()
    .split('\n')
    .filter((l) => l.trim());
  assert.equal(lines.length, 1, devnet.output());
  assert.match(lines[0]!, /^config error: LIGHTNING_DEVNET_PORT is invalid/);
});
