// The ready file `fedai up` relies on (issue 9 item 17): a service started with FEDAI_READY_FILE
// writes the URL it really bound; with FEDAI_PORT_FALLBACK=true a taken preferred port means port 0,
// without it a taken port is one PORT_IN_USE line and exit 75. The relay is the service started here
// (the quickest; router, settlement and node share the same `runService`).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import {
  EXIT_PORT_IN_USE,
  type ReadyFacts,
  ReadyFileError,
  readReadyFile,
  writeReadyFile,
} from '@fed-ai/kit';
import { REPO_ROOT, SERVICE_ENTRY, tsxImport } from '../src/services';

const dir = mkdtempSync(join(tmpdir(), 'fedai-ready-'));
const children = new Set<ChildProcess>();
const servers = new Set<Server>();

after(async () => {
  for (const child of children) child.kill('SIGKILL');
  await Promise.all([...servers].map((s) => new Promise((done) => s.close(done))));
  rmSync(dir, { recursive: true, force: true });
});

async function blockAPort(): Promise<number> {
  const blocker = createServer((socket) => socket.destroy());
  servers.add(blocker);
  await new Promise<void>((done) => blocker.listen(0, '127.0.0.1', done));
  return (blocker.address() as { port: number }).port;
}

function startRelay(env: Record<string, string>): {
  child: ChildProcess;
  exited: Promise<number | null>;
  stderr: () => string;
} {
  const child = spawn(process.execPath, ['--import', tsxImport(), join(REPO_ROOT, SERVICE_ENTRY.relay)], {
    cwd: REPO_ROOT,
    env: { ...process.env, RELAY_HOST: '127.0.0.1', ...env },
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  children.add(child);
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<number | null>((done) =>
    child.once('exit', (code) => {
      children.delete(child);
      done(code);
    }),
  );
  return { child, exited, stderr: () => stderr };
}

test('a taken preferred port: the service binds another, and its ready file names that URL and its pid', async () => {
  const taken = await blockAPort();
  const readyPath = join(dir, 'relay.ready.json');
  const relay = startRelay({
    RELAY_PORT: String(taken),
    FEDAI_READY_FILE: readyPath,
    FEDAI_PORT_FALLBACK: 'true',
  });
  let ready: ReadyFacts | null = null;
  let exitCode: number | null | undefined;
  void relay.exited.then((code) => {
    exitCode = code;
  });
  // A generous limit, never an assertion on speed.
  for (let i = 0; i < 600 && !ready && exitCode === undefined; i++) {
    ready = readReadyFile(readyPath);
    if (!ready) await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(ready, `no ready file; exit ${exitCode}; stderr: ${relay.stderr()}`);
  assert.equal(ready.pid, relay.child.pid);
  assert.equal(ready.preferred_port, taken);
  assert.equal(ready.port_fallback, true);
  const port = Number(new URL(ready.url).port);
  assert.notEqual(port, taken);
  assert.match(ready.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
  // What answers there is the relay (NIP-11 over HTTP on the same port), not the blocker.
  const info = (await (
    await fetch(`http://127.0.0.1:${port}/`, { headers: { accept: 'application/nostr+json' } })
  ).json()) as { name?: string };
  assert.equal(info.name, 'fed-ai local relay');
  // Written atomically: no temp file is left beside it.
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.startsWith('relay.ready.json.')),
    [],
  );
  relay.child.kill('SIGTERM');
  assert.equal(await relay.exited, 0);
});

test('a taken port without FEDAI_PORT_FALLBACK: one PORT_IN_USE line, exit 75, no ready file', async () => {
  const taken = await blockAPort();
  const readyPath = join(dir, 'relay-strict.ready.json');
  const relay = startRelay({
    RELAY_PORT: String(taken),
    FEDAI_READY_FILE: readyPath,
    FEDAI_PORT_FALLBACK: '',
  });
  const code = await relay.exited;
  assert.equal(code, EXIT_PORT_IN_USE);
  assert.match(relay.stderr(), /relay failed to start: PORT_IN_USE: port \d+ is taken/);
  assert.equal(existsSync(readyPath), false);
});

test('ready files: round trip, and a file that is not one is READY_FILE_INVALID', () => {
  const path = join(dir, 'x', 'svc.ready.json');
  assert.equal(readReadyFile(path), null);
  const facts: ReadyFacts = {
    url: 'http://127.0.0.1:41234',
    pubkey: 'ab'.repeat(32),
    pid: 4242,
    preferred_port: 7000,
    port_fallback: true,
  };
  writeReadyFile(path, facts);
  assert.deepEqual(readReadyFile(path), facts);
  writeFileSync(path, '{"url":"http://127.0.0.1:1","pid":1}');
  assert.throws(
    () => readReadyFile(path),
    (e: unknown) => e instanceof ReadyFileError && e.code === 'READY_FILE_INVALID',
  );
  writeFileSync(path, 'not json');
  assert.throws(() => readReadyFile(path), /READY_FILE_INVALID/);
  assert.throws(() => writeReadyFile(path, { ...facts, url: 'http://a b' }));
});
