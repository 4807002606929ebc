#!/usr/bin/env node
// Finds every *.test.ts in the workspace and runs them with node:test.
// Node 20 has no glob support in `node --test`, so the file list is built here.
// The test files are bundled first (scripts/test-build.mjs: the same code, one file per test
// process instead of tsx compiling and resolving each module graph; stack traces name the sources).
// FEDAI_TEST_FROM_SOURCES=1 runs the .ts files through tsx instead.
// Usage: node scripts/test.mjs [--node-test-option ...] [substring filter ...]
import { spawnSync } from 'node:child_process';
import { chmodSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { buildTests } from './test-build.mjs';

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
const nodeTestArgs = process.argv.slice(2).filter((arg) => arg.startsWith('--'));
const filters = process.argv.slice(2).filter((arg) => !arg.startsWith('--'));
const files = ['packages', 'services', 'tools']
  .flatMap((top) => findTests(join(root, top), []))
  .filter((f) => filters.length === 0 || filters.some((needle) => f.includes(needle)))
  .sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const concurrency = process.env.TEST_CONCURRENCY ?? '2';
// New PGlite databases start from one saved fresh cluster instead of running initdb each time
// (packages/kit/src/pglite-template.ts): ~0.7 s of CPU instead of ~2.5 s, for hundreds of them.
const templateDir = process.env.FEDAI_PGLITE_TEMPLATE_DIR ?? join(root, '.tmp', 'pglite-template');
mkdirSync(templateDir, { recursive: true, mode: 0o700 });
chmodSync(templateDir, 0o700);
const fromSources = process.env.FEDAI_TEST_FROM_SOURCES === '1';
const built = fromSources ? undefined : await buildTests(root, files, join(root, '.tmp', 'test-build'));
const run = built
  ? { loader: ['--enable-source-maps'], files: built.files }
  : { loader: ['--import', 'tsx'], files };
const result = spawnSync(
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
    env: { ...process.env, NODE_ENV: 'test', FEDAI_PGLITE_TEMPLATE_DIR: templateDir },
  },
);
await built?.remove();
process.exit(result.status ?? 1);
