// Start failures of the real router entry point (services/router/src/main.ts, spawned): each is one
// line on stderr naming the variable or resource and the fix, with no stack, and a non-zero exit.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { bareServiceEnv, readReadyFile, serviceNodeArgs } from '@fed-ai/kit';

const MAIN = resolve(new URL('../src/main.ts', import.meta.url).pathname);
const TSX = new URL(`file://${createRequire(import.meta.url).resolve('tsx/esm')}`).href;
const dir = mkdtempSync(join(tmpdir(), 'fedai-router-start-'));
const children = new Set<ChildProcess>();

after(async () => {
  for (const child of children) {
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

function spawnRouter(env: Record<string, string>, cwd = dir) {
  const child = spawn(process.execPath, serviceNodeArgs(MAIN, ['--import', TSX]), {
    cwd,
    env: bareServiceEnv({ ROUTER_HOST: '127.0.0.1', ROUTER_PORT: '0', LOG_LEVEL: 'warn', ...env }),
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
  return { child, exited, output: () => output };
}

/** Exactly one non-empty line in all the output, and nothing that looks like a stack. */
function oneLine(output: string): string {
  const lines = output.split('\n').filter((l) => l.trim());
  assert.equal(lines.length, 1, `expected one line, got:\n${output}`);
  assert.doesNotMatch(output, /^\s+at /m);
  return lines[0]!;
}

async function waitForReadyFile(path: string, exited: Promise<unknown>): Promise<string> {
  let gone = false;
  void exited.then(() => {
    gone = true;
  });
  // Generous limit for a slow machine; the check passes as soon as the file is there.
  for (let i = 0; i < 1200 && !gone; i++) {
    const facts = readReadyFile(path);
    if (facts) return facts.url;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('the first router never became ready');
}

test('a second router on the same DATA_DIR is refused with one line; the first keeps serving', async () => {
  const dataDir = join(dir, 'shared');
  const first = spawnRouter({ DATA_DIR: dataDir, FEDAI_READY_FILE: join(dir, 'first.json') });
  const url = await waitForReadyFile(join(dir, 'first.json'), first.exited);

  const second = spawnRouter({ DATA_DIR: dataDir });
  const code = await second.exited;
  assert.notEqual(code, 0);
  const line = oneLine(second.output());
  assert.match(
    line,
    /^router failed to start: DATA_DIR_IN_USE: DATA_DIR \S+shared is in use by another process \(pid \d+\) — stop it or set DATA_DIR to another folder$/,
  );
  assert.ok(line.includes(`pid ${first.child.pid}`));

  const health = await fetch(`${url}/health`);
  assert.equal(health.status, 200, 'the first router is unaffected');
  const exited = first.exited;
  first.child.kill('SIGTERM');
  assert.equal(await exited, 0);
});

test('SETTLEMENT_URL that does not answer: one line naming the variable and the fix, after STARTUP_WAIT_S', async () => {
  // Takes connections and never answers (each try ends at the router's 5 s attempt timeout);
  // counts them. Dropping them instead makes fetch reconnect at once, several times per try.
  let tries = 0;
  const held = new Set<Socket>();
  const mute = createServer((socket) => {
    tries += 1;
    held.add(socket);
  });
  await new Promise<void>((r) => mute.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(mute.address() as AddressInfo).port}`;
  try {
    const router = spawnRouter({ DATA_DIR: join(dir, 'paid'), SETTLEMENT_URL: url, STARTUP_WAIT_S: '0' });
    assert.equal(await router.exited, 1);
    assert.equal(
      oneLine(router.output()),
      `router failed to start: UPSTREAM_UNREACHABLE: SETTLEMENT_URL ${url} is unreachable — start settlement first or fix the URL`,
    );
    assert.equal(tries, 1, 'STARTUP_WAIT_S=0: one try, no waiting');
  } finally {
    for (const socket of held) socket.destroy();
    await new Promise((r) => mute.close(r));
  }
});

test('a ROUTER_KEY_FILE that does not exist is refused instead of minting a new identity', async () => {
  const router = spawnRouter({
    DATA_DIR: join(dir, 'keyed'),
    ROUTER_KEY_FILE: join(dir, 'keys', 'mistyped.key'),
  });
  assert.equal(await router.exited, 1);
  assert.match(
    oneLine(router.output()),
    /^router failed to start: KEY_FILE_MISSING: ROUTER_KEY_FILE \S+mistyped\.key does not exist — fix the path, or set CREATE_KEY=true/,
  );
});

test('fedai.toml in the working directory is read: an unknown [router] key is one line and exit 2', async () => {
  const cwd = join(dir, 'with-toml');
  mkdirSync(cwd);
  writeFileSync(join(cwd, 'fedai.toml'), '[router]\nOPERATOR_PUBKEY = "x"\n');
  const router = spawnRouter({ DATA_DIR: join(dir, 'toml') }, cwd);
  assert.equal(await router.exited, 2);
  assert.equal(
    oneLine(router.output()),
    'config error: fedai.toml [router] OPERATOR_PUBKEY is not a router setting — check the spelling or remove it',
  );
});
