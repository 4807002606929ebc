// The router's image bundle (what infra/Dockerfile copies): its operator dashboard is built ahead
// into dashboard/ and served from there by the bundled service (an image has neither the web/
// sources nor esbuild; helper-26 found /dashboard/app.js answering 500 in images before this), and
// it signs with the native backend from the bcrypto it carries.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
// @ts-expect-error: a plain .mjs build script without types
import { bundleService } from '../src/bundle.mjs';

const dir = mkdtempSync(join(tmpdir(), 'fedai-bundle-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

test('the bundled router serves the dashboard it was built with, from FEDAI_DASHBOARD_DIR, and signs natively', async () => {
  const out = join(dir, 'router');
  await (bundleService as (service: string, outDir: string) => Promise<void>)('router', out);
  const appJs = join(out, 'dashboard', 'app.js');
  assert.ok(existsSync(appJs) && existsSync(join(out, 'dashboard', 'app.css')));
  const port = await freePort();
  const child = spawn(process.execPath, [join(out, 'main.mjs')], {
    cwd: out,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      // The test runner's V8 preload and scratch TMPDIR (scripts/test.mjs): nothing the router reads.
      NODE_OPTIONS: process.env.NODE_OPTIONS,
      TMPDIR: process.env.TMPDIR,
      ROUTER_HOST: '127.0.0.1',
      ROUTER_PORT: String(port),
      DATA_DIR: join(dir, 'data'),
      CREATE_KEY: 'true',
      LOG_LEVEL: 'info',
      FEDAI_DASHBOARD_DIR: join(out, 'dashboard'),
    },
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  let log = '';
  child.stdout.on('data', (chunk: Buffer) => {
    log += chunk.toString();
  });
  const exited = new Promise((done) => child.once('exit', done));
  try {
    const base = `http://127.0.0.1:${port}`;
    for (let i = 0; i < 300; i++) {
      const ok = await fetch(`${base}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (ok) break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const js = await fetch(`${base}/dashboard/app.js`);
    assert.equal(js.status, 200);
    assert.equal(await js.text(), readFileSync(appJs, 'utf8'));
    assert.match(js.headers.get('content-security-policy') ?? '', /default-src 'self'/);
    assert.equal((await fetch(`${base}/dashboard`)).status, 200);
    const ready = log
      .split('\n')
      .filter((line) => line.includes('"router ready"'))
      .map((line) => JSON.parse(line) as { signatures?: string });
    assert.equal(ready[0]?.signatures, 'native', `the bundle's router log: ${log.slice(0, 2000)}`);
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
});
