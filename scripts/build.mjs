#!/usr/bin/env node
// pnpm build: builds the publishable packages into their dist/ folders.
//   @fed-ai/protocol, @fed-ai/sdk: one ESM file each (esbuild, platform neutral: no Node built-in may
//     be imported; npm dependencies stay external) + .d.ts from `tsc -p tsconfig.build.json`.
//   @fed-ai/cli: one ESM file for node (the CLI and every workspace package it uses are bundled;
//     npm dependencies stay external and must be listed in tools/cli/package.json).
// The workspace itself does not need a build: package exports point at src/ and everything runs
// through tsx; `publishConfig` points the packed package.json at dist/.
// Usage: node scripts/build.mjs [protocol|sdk|cli ...]   (default: all three, in that order)
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import * as esbuild from 'esbuild';
import { resolveWithoutPlugin } from './esbuild-resolve.mjs';

const root = resolve(new URL('..', import.meta.url).pathname);
const require = createRequire(import.meta.url);

const TARGETS = {
  protocol: { dir: 'packages/protocol', entry: 'src/index.ts', out: 'dist/index.js', platform: 'neutral' },
  // The SDK's declarations are checked against the protocol's built ones (tsconfig.build.json paths).
  sdk: {
    dir: 'packages/sdk',
    entry: 'src/index.ts',
    out: 'dist/index.js',
    platform: 'neutral',
    needs: ['protocol'],
  },
  cli: { dir: 'tools/cli', entry: 'src/main.ts', out: 'dist/main.js', platform: 'node' },
};

/** The package name of a bare import (`@scope/name/sub` → `@scope/name`), or undefined. */
function packageOf(spec) {
  if (spec.startsWith('.') || spec.startsWith('/') || spec.startsWith('node:')) return undefined;
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

/**
 * Externals: every npm package. Workspace packages (@fed-ai/*) are bundled only into the CLI; the
 * browser-safe packages refuse Node built-ins outright.
 */
function externalsPlugin(platform) {
  return {
    name: 'fedai-externals',
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, (args) => {
        if (args.path.startsWith('node:') || require('node:module').isBuiltin(args.path)) {
          if (platform === 'neutral')
            return {
              errors: [{ text: `${args.path}: a browser-safe package may not import Node built-ins` }],
            };
          return { path: args.path, external: true };
        }
        const name = packageOf(args.path);
        if (platform === 'node' && name?.startsWith('@fed-ai/')) return workspaceModule(build, args);
        return { path: args.path, external: true };
      });
      // Modules of other workspace packages are bundled without side effects: the CLI keeps only
      // what it uses of them, so it does not import (nor need installed) what it never calls,
      // such as the HTTP server stack of @fed-ai/kit. Workspace sources have no side-effect imports.
      if (platform === 'node') build.onResolve({ filter: /^\./ }, (args) => workspaceModule(build, args));
    },
  };
}

const workspaceSources = ['packages', 'services'].map((top) => join(root, top));

async function workspaceModule(build, args) {
  const resolved = await resolveWithoutPlugin(build, args);
  if (!resolved) return undefined;
  if (resolved.errors.length > 0) return { errors: resolved.errors };
  const foreign = workspaceSources.some((dir) => resolved.path.startsWith(`${dir}/`));
  return { ...resolved, sideEffects: foreign ? false : resolved.sideEffects };
}

function readJson(path) {
  return JSON.parse(readFileSync(path, 'utf8'));
}

/**
 * The CLI lists npm packages that the workspace packages it bundles import: each range must be the
 * one those packages declare, so the installed CLI runs the versions the workspace tests.
 */
function checkRanges(pkg) {
  const declared = new Map();
  for (const top of ['packages', 'services'])
    for (const name of readdirSync(join(root, top))) {
      const path = join(root, top, name, 'package.json');
      if (!existsSync(path)) continue;
      for (const [dep, range] of Object.entries(readJson(path).dependencies ?? {}))
        if (!range.startsWith('workspace:')) declared.set(dep, [...(declared.get(dep) ?? []), range]);
    }
  for (const [dep, range] of Object.entries(pkg.dependencies ?? {})) {
    const ranges = declared.get(dep);
    if (ranges && !ranges.includes(range))
      throw new Error(`${pkg.name}: ${dep} ${range} differs from the workspace's ${ranges.join(' / ')}`);
  }
}

/** `from './x'` in emitted .d.ts → `from './x.js'` (or './x/index.js'), so NodeNext consumers resolve them. */
function addDtsExtensions(dir) {
  for (const name of readdirSync(dir)) {
    const full = join(dir, name);
    if (statSync(full).isDirectory()) {
      addDtsExtensions(full);
      continue;
    }
    if (!name.endsWith('.d.ts')) continue;
    const text = readFileSync(full, 'utf8');
    const fixed = text.replace(
      /(from\s+|import\(\s*)(['"])(\.\.?\/[^'"]*)\2/g,
      (match, lead, quote, spec) => {
        if (/\.(js|mjs|cjs|json)$/.test(spec)) return match;
        const base = resolve(dirname(full), spec);
        if (existsSync(`${base}.d.ts`)) return `${lead}${quote}${spec}.js${quote}`;
        if (existsSync(join(base, 'index.d.ts'))) return `${lead}${quote}${spec}/index.js${quote}`;
        throw new Error(`${full}: cannot resolve ${spec}`);
      },
    );
    if (fixed !== text) writeFileSync(full, fixed);
  }
}

async function buildTarget(key) {
  const target = TARGETS[key];
  const pkgDir = join(root, target.dir);
  const pkg = readJson(join(pkgDir, 'package.json'));
  const started = performance.now();
  rmSync(join(pkgDir, 'dist'), { recursive: true, force: true });
  const result = await esbuild.build({
    absWorkingDir: pkgDir,
    entryPoints: [target.entry],
    outdir: 'dist',
    entryNames: '[name]',
    // The CLI loads each command lazily (dynamic import); split chunks keep that, so `fedai --version`
    // loads neither the commands nor their npm dependencies.
    splitting: target.platform === 'node',
    // Chunks next to main.js: modules compute paths from import.meta.url at src/'s depth.
    chunkNames: '[name]-[hash]',
    bundle: true,
    format: 'esm',
    platform: target.platform,
    target: target.platform === 'node' ? 'node20' : 'es2022',
    mainFields: target.platform === 'node' ? undefined : ['module', 'main'],
    banner: target.platform === 'node' ? { js: '#!/usr/bin/env node' } : undefined,
    legalComments: 'none',
    logLevel: 'warning',
    metafile: true,
    plugins: [externalsPlugin(target.platform)],
  });
  // Every external npm package of the bundle must be a dependency of the package, or the installed
  // package would not start.
  const deps = { ...pkg.dependencies, ...pkg.peerDependencies };
  const missing = new Set();
  for (const output of Object.values(result.metafile.outputs))
    for (const imported of output.imports) {
      const name = imported.external ? packageOf(imported.path) : undefined;
      if (name && !(name in deps)) missing.add(name);
    }
  if (missing.size > 0)
    throw new Error(`${pkg.name}: the bundle imports ${[...missing].join(', ')}, missing from dependencies`);
  if (target.platform === 'node') checkRanges(pkg);

  if (existsSync(join(pkgDir, 'tsconfig.build.json'))) {
    const tsc = require.resolve('typescript/bin/tsc');
    const run = spawnSync(process.execPath, [tsc, '-p', join(pkgDir, 'tsconfig.build.json')], {
      cwd: pkgDir,
      stdio: 'inherit',
    });
    if (run.status !== 0) throw new Error(`${pkg.name}: tsc failed`);
    addDtsExtensions(join(pkgDir, 'dist'));
  }
  const bytes = statSync(join(pkgDir, target.out)).size;
  console.log(
    `built ${pkg.name}: ${target.dir}/${target.out} (${(bytes / 1024).toFixed(1)} KiB) in ${Math.round(performance.now() - started)} ms`,
  );
}

const wanted = new Set(process.argv.slice(2));
for (const key of wanted)
  if (!(key in TARGETS)) throw new Error(`unknown target ${key} (${Object.keys(TARGETS)})`);
for (const key of wanted) for (const need of TARGETS[key].needs ?? []) wanted.add(need);
for (const key of Object.keys(TARGETS)) if (wanted.size === 0 || wanted.has(key)) await buildTarget(key);
