// The dashboard's browser code: it typechecks against the DOM (web/tsconfig.json: the root
// typecheck is Node-only), it bundles into one script with no Node built-in and no import left,
// the bundle is built once and then served from memory, and every answer carries the CSP.
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createServer } from '@fed-ai/kit';
import { DASHBOARD_CSP, registerDashboard } from '../src/index';

const packageDir = fileURLToPath(new URL('..', import.meta.url));
const repoRoot = join(packageDir, '..', '..');

test('the browser code typechecks against the DOM library', async () => {
  const tsc = join(repoRoot, 'node_modules', 'typescript', 'bin', 'tsc');
  const { stdout } = await promisify(execFile)(
    process.execPath,
    [tsc, '-p', join(packageDir, 'web', 'tsconfig.json'), '--noEmit'],
    { cwd: repoRoot },
  ).catch((error: { stdout?: string }) => ({ stdout: error.stdout ?? String(error) }));
  assert.equal(stdout.trim(), '');
});

test('the script is one bundle without Node built-ins or imports, built once, served with the CSP', async () => {
  const app = createServer({ name: 'dashboard-test' });
  registerDashboard(app, { app: 'fleet' });
  try {
    const page = await app.inject({ url: '/dashboard' });
    assert.equal(page.statusCode, 200);
    assert.equal(page.headers['content-security-policy'], DASHBOARD_CSP);
    assert.match(page.body, /<body data-app="fleet">/);
    const first = await app.inject({ url: '/dashboard/app.js' });
    assert.equal(first.statusCode, 200);
    assert.equal(first.headers['content-security-policy'], DASHBOARD_CSP);
    assert.match(String(first.headers['content-type']), /^text\/javascript/);
    assert.doesNotMatch(first.body, /from\s*"node:|require\("node:|\bimport\s*\(\s*"/);
    assert.doesNotMatch(first.body, /^\s*import\s/m, 'no import left outside the bundle');
    assert.ok(first.body.length < 2_000_000, `bundle is ${first.body.length} bytes`);
    const again = await app.inject({ url: '/dashboard/app.js' });
    assert.equal(again.body, first.body, 'served from memory');
    const css = await app.inject({ url: '/dashboard/app.css' });
    assert.equal(css.statusCode, 200);
    assert.match(css.body, /\.badge/);
  } finally {
    await app.close();
  }
});
