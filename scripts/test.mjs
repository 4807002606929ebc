#!/usr/bin/env node
// Finds every *.test.ts in the workspace and runs them with node:test.
// Node 20 has no glob support in `node --test`, so the file list is built here.
// The test files are bundled first (scripts/test-build.mjs: the same code, one file per test
// process instead of tsx compiling and resolving each module graph; stack traces name the sources).
// FEDAI_TEST_FROM_SOURCES=1 runs the .ts files through tsx instead.
// Usage: node scripts/test.mjs [--checks] [--node-test-option ...] [substring filter ...]
// --checks (what `pnpm test` passes): typecheck, lint and the dead-code check run beside the tests
// at low priority (nice 10), in the CPU time the tests leave idle; their output comes after the
// tests', and a failed check fails the run.
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { buildTests } from './test-build.mjs';
import { scratchDir } from './test-scratch.mjs';

const root = new URL('..', import.meta.url).pathname;
const skipDirs = new Set(['node_modules', 'data', '.git', '.tmp', 'fixtures', 'reports']);

function findTests(dir, out) {
  for (const name of readdirSync(dir)) {
    if (skipDirs.has(name) || name.startsWith('.stryker-tmp')) continue;
    const full = join(dir, name);
    if (statSync(full).isDirectory()) findTests(full, out);
    else if (name.endsWith('.test.ts')) out.push(relative(root, full));
  }
  return out;
}

// Arguments starting with `--` go to node --test (e.g. --test-reporter=tap); the rest are filters.
const withChecks = process.argv.includes('--checks');
const nodeTestArgs = process.argv.slice(2).filter((arg) => arg.startsWith('--') && arg !== '--checks');
const filters = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
// The longest files start first, so the run does not end with one of them alone on a core (the
// bundles are named so that node --test, which sorts its files by path, keeps this order:
// scripts/test-build.mjs). Wall seconds per file in a whole run, session 19, 3 at a time on 2
// cores; the order only, nothing is asserted.
const LONGEST_FIRST = [
  'tools/runbooks/test/runbooks.test.ts', // ~55 s
  'tools/cli/test/cli-wallet.test.ts', // ~55 s
  'tools/cli/test/devnet-e2e.test.ts', // ~49 s
  'tools/federation/test/federation-e2e.test.ts', // ~32 s
  'tools/cli/test/safe-start-services.test.ts', // ~30 s
  'services/settlement/test/crash.test.ts', // ~28 s
  'tools/dashboard/test/dashboard-browser.test.ts',
  'services/settlement/test/backend-scenarios.test.ts',
  'services/wallet-fleet/test/crash-process.test.ts',
  'services/router/test/replicas-e2e.test.ts', // ~20 s
  'packages/kit/test/pglite-template.test.ts',
  'services/settlement/test/reconcile.test.ts',
  'tools/newcomer/test/examples.test.ts',
  'services/settlement/test/money-attacks.test.ts',
  'services/router/test/attacks-sybil.test.ts',
  'tools/cli/test/cli-doctor.test.ts',
  'packages/kit/test/db.test.ts',
  'services/router/test/start-errors.test.ts',
  'services/router/test/crash-held-leases.test.ts', // ~14 s
];
const rank = (file) => {
  const i = LONGEST_FIRST.indexOf(file);
  return i === -1 ? LONGEST_FIRST.length : i;
};
const files = ['packages', 'services', 'tools']
  .flatMap((top) => findTests(join(root, top), []))
  .filter((f) => filters.length === 0 || filters.some((needle) => f.includes(needle)))
  .sort()
  .sort((a, b) => rank(a) - rank(b));
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
// Three files at a time on 2 cores: many files spend part of their time waiting on their services
// (the suite used ~1.5 of the 2 cores with two at a time: 464 s, against 399 s with three; session
// 18, memory TMPDIR in both).
const concurrency = process.env.TEST_CONCURRENCY ?? '3';
// New PGlite databases start from one saved fresh cluster instead of running initdb each time
// (packages/kit/src/pglite-template.ts): ~0.7 s of CPU instead of ~2.5 s, for hundreds of them.
const templateDir = process.env.FEDAI_PGLITE_TEMPLATE_DIR ?? join(root, '.tmp', 'pglite-template');
mkdirSync(templateDir, { recursive: true, mode: 0o700 });
chmodSync(templateDir, 0o700);
const scratch = scratchDir();
// V8 settings for short processes (scripts/test-v8-flags.cjs); FEDAI_TEST_V8_FLAGS=0 leaves them.
const v8Preload =
  process.env.FEDAI_TEST_V8_FLAGS === '0'
    ? ''
    : `--require ${JSON.stringify(join(root, 'scripts', 'test-v8-flags.cjs'))}`;
const checks = withChecks
  ? runChecks(['typecheck', 'lint', 'deadcode'])
  : Promise.resolve({ passed: true, report: '' });
const fromSources = process.env.FEDAI_TEST_FROM_SOURCES === '1';
const built = fromSources ? undefined : await buildTests(root, files, join(root, '.tmp', 'test-build'));
const run = built
  ? { loader: ['--enable-source-maps'], files: built.files }
  : { loader: ['--import', 'tsx'], files };
const testsCode = await runToExit(
  process.execPath,
  [
    ...run.loader,
    '--test',
    `--test-concurrency=${concurrency}`,
    '--test-timeout=240000',
    ...nodeTestArgs,
    ...run.files,
  ],
  {
    cwd: root,
    stdio: 'inherit',
    env: {
      ...process.env,
      NODE_ENV: 'test',
      ...(scratch ? { TMPDIR: scratch } : {}),
      NODE_OPTIONS: [process.env.NODE_OPTIONS, v8Preload].filter(Boolean).join(' '),
      FEDAI_PGLITE_TEMPLATE_DIR: templateDir,
      // PGlite's buffer pool is written through at every start: a small one for small test databases.
      PGLITE_SHARED_BUFFERS: process.env.PGLITE_SHARED_BUFFERS ?? '16MB',
      // Services started through kit's serviceNodeArgs run from their bundles (empty: through tsx).
      ...(built
        ? { FEDAI_TEST_SERVICE_BUNDLES: process.env.FEDAI_TEST_SERVICE_BUNDLES ?? built.serviceBundles }
        : {}),
    },
  },
);
await built?.remove();
if (scratch) rmSync(scratch, { recursive: true, force: true });
const { passed: checksPassed, report } = await checks;
process.stdout.write(report);
process.exit(testsCode === 0 && checksPassed ? 0 : testsCode || 1);

/** Runs a command with its output on ours; resolves to its exit code. */
function runToExit(command, args, options) {
  return new Promise((done) => {
    const child = spawn(command, args, options);
    child.once('error', () => done(1));
    child.once('exit', (code) => done(code ?? 1));
  });
}

/** Runs `pnpm -s <script>` for each check in turn, niced where nice exists: whether all passed, and what they said. */
async function runChecks(scripts) {
  const niced = spawnSync('nice', ['-n', '10', 'true']).status === 0;
  let passed = true;
  const report = [];
  for (const script of scripts) {
    const [command, args] = niced ? ['nice', ['-n', '10', 'pnpm', '-s', script]] : ['pnpm', ['-s', script]];
    const { code, output } = await new Promise((done) => {
      const child = spawn(command, args, { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
      let text = '';
      child.stdout.on('data', (d) => {
        text += d;
      });
      child.stderr.on('data', (d) => {
        text += d;
      });
      child.once('error', (error) => done({ code: 1, output: String(error) }));
      child.once('exit', (exitCode) => done({ code: exitCode ?? 1, output: text }));
    });
    if (code !== 0) passed = false;
    report.push(
      `# check ${script}: ${code === 0 ? 'passed' : `FAILED (exit ${code})`}\n${code === 0 ? '' : output}`,
    );
  }
  return { passed, report: report.join('') };
}
