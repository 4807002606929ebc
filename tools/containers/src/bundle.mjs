#!/usr/bin/env node
// Bundles one service into a folder an image copies as it is: `main.mjs` (the service entry with
// every workspace and npm module inlined by esbuild), `healthcheck.mjs`, and `node_modules/` with
// only the packages that cannot be bundled (native code, wasm files, a forked worker), each with
// its own dependencies, copied out of the pnpm store (symlinks dereferenced).
// Usage: node tools/containers/src/bundle.mjs <service> <out-dir>
//   service: router | node | settlement | relay | wallet-fleet | lightning-devnet
// Runs in the image's build stage (infra/Dockerfile) and on a developer machine alike.
import {
  cpSync,
  existsSync,
  mkdirSync,
  readFileSync,
  realpathSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, relative, resolve } from 'node:path';
import * as esbuild from 'esbuild';

const root = resolve(new URL('../../..', import.meta.url).pathname);

/**
 * What is not bundled, by service. PGlite reads its .wasm/.data next to its own module (kit opens
 * it when no DATABASE_URL is set); node-llama-cpp loads a native addon; the node's embedded runner
 * forks `embedded-worker.ts` beside its module through tsx (services/node/src/runners/embedded.ts).
 */
const EXTERNAL = {
  // bcrypto: kit loads its native addon (build/Release/bcrypto.node) with createRequire, where it
  // built; without it the services sign with nostr-wasm.
  common: ['@electric-sql/pglite', 'bcrypto'],
  node: ['node-llama-cpp', 'tsx'],
};
/** Optional modules that packages try to load and that are never installed here. */
const ABSENT = ['pg-native', 'bufferutil', 'utf-8-validate', 'pino-pretty', 'esbuild'];
/** Packages whose sources and build intermediates stay out of the image: what they load at run time. */
const RUNTIME_FILES = {
  bcrypto: (path) =>
    ['', 'package.json', 'LICENSE', 'build', 'build/Release', 'build/Release/bcrypto.node'].includes(path) ||
    path === 'lib' ||
    path.startsWith('lib/'),
};
/** Services that serve the operator dashboard: its script is built here, not in the image. */
const DASHBOARD = ['router', 'wallet-fleet'];
export const SERVICES = ['router', 'node', 'settlement', 'relay', 'wallet-fleet', 'lightning-devnet'];

/** Bundles `entry` (a path inside the repository) to `outfile`. */
async function bundle(entry, outfile, external) {
  const result = await esbuild.build({
    absWorkingDir: root,
    entryPoints: [entry],
    outfile,
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'esm',
    // CommonJS dependencies call require(): give the ESM bundle one.
    banner: {
      js: "import { createRequire as __fedaiCreateRequire } from 'node:module'; const require = __fedaiCreateRequire(import.meta.url);",
    },
    external: [...external, ...ABSENT],
    legalComments: 'none',
    minify: true,
    keepNames: true,
    sourcemap: false,
    logLevel: 'error',
    metafile: true,
  });
  return statSync(outfile).size + Object.keys(result.metafile.outputs).length * 0;
}

/**
 * Copies `name` (resolved from `fromDir`) and, recursively, its dependencies under `modulesDir`:
 * at the top level, or under the dependent's own node_modules when the top level holds another
 * version (what npm's layout does), so Node's resolution finds the version each package declared.
 */
function copyPackage(name, fromDir, modulesDir, installed, parentDir) {
  const require = createRequire(join(fromDir, 'noop.js'));
  let manifestPath;
  try {
    manifestPath = require.resolve(`${name}/package.json`);
  } catch {
    // Packages whose exports hide package.json: walk up from the entry.
    let dir = dirname(require.resolve(name));
    while (
      !existsSync(join(dir, 'package.json')) ||
      JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name !== name
    )
      dir = dirname(dir);
    manifestPath = join(dir, 'package.json');
  }
  const dir = realpathSync(dirname(manifestPath));
  const manifest = JSON.parse(readFileSync(manifestPath, 'utf8'));
  const top = join(modulesDir, name);
  const nested = parentDir ? join(parentDir, 'node_modules', name) : top;
  let target;
  if (!installed.has(top)) target = top;
  else if (installed.get(top) === manifest.version) return;
  else if (installed.has(nested)) return;
  else target = nested;
  installed.set(target, manifest.version);
  const runtimeFile = RUNTIME_FILES[name] ?? (() => true);
  cpSync(dir, target, {
    recursive: true,
    dereference: true,
    filter: (src) =>
      !relative(dir, src).split('/').includes('node_modules') && runtimeFile(relative(dir, src)),
  });
  const optional = manifest.optionalDependencies ?? {};
  for (const dep of Object.keys({ ...manifest.dependencies, ...optional })) {
    try {
      copyPackage(dep, dir, modulesDir, installed, target);
    } catch (error) {
      // An optional dependency for another platform is not installed: fine. Anything else is not.
      if (!(dep in optional)) throw error;
    }
  }
}

/**
 * The dashboard's browser bundle (app.js, app.css), as packages/dashboard/src/serve.ts builds it
 * on a developer machine; the image points FEDAI_DASHBOARD_DIR at it.
 */
async function bundleDashboard(dir) {
  await esbuild.build({
    absWorkingDir: root,
    entryPoints: ['packages/dashboard/web/main.ts'],
    outdir: dir,
    entryNames: 'app',
    bundle: true,
    platform: 'browser',
    format: 'esm',
    target: 'es2022',
    minify: true,
    legalComments: 'none',
    logLevel: 'error',
  });
  if (!existsSync(join(dir, 'app.js'))) throw new Error('dashboard bundle: no app.js');
}

export async function bundleService(service, outDir) {
  if (!SERVICES.includes(service)) throw new Error(`unknown service ${service} (${SERVICES.join(', ')})`);
  const started = performance.now();
  const serviceDir = join(root, 'services', service);
  const external = [...EXTERNAL.common, ...(EXTERNAL[service] ?? [])];
  rmSync(outDir, { recursive: true, force: true });
  mkdirSync(outDir, { recursive: true });
  const mainBytes = await bundle(`services/${service}/src/main.ts`, join(outDir, 'main.mjs'), external);
  if (service === 'node') {
    // The runner forks new URL('./embedded-worker.ts', import.meta.url) with `--import tsx/esm`:
    // a bundled worker under that name (plain JavaScript is valid input to tsx).
    await bundle(
      'services/node/src/runners/embedded-worker.ts',
      join(outDir, 'embedded-worker.ts'),
      external,
    );
  }
  if (DASHBOARD.includes(service)) await bundleDashboard(join(outDir, 'dashboard'));
  cpSync(join(root, 'infra/docker/healthcheck.mjs'), join(outDir, 'healthcheck.mjs'));
  if (service === 'lightning-devnet')
    cpSync(join(root, 'infra/docker/devnet-wallets.mjs'), join(outDir, 'devnet-wallets.mjs'));
  const modulesDir = join(outDir, 'node_modules');
  const installed = new Map();
  // Each external is resolved where it is declared: the service, kit (PGlite) or this package (tsx).
  const from = [serviceDir, join(root, 'packages/kit'), join(root, 'tools/containers')];
  for (const name of external) {
    const dir = from.find((d) => existsSync(join(d, 'node_modules', name)));
    if (!dir) throw new Error(`${name}: not installed for ${service} (run pnpm install)`);
    copyPackage(name, dir, modulesDir, installed, undefined);
  }
  writeFileSync(
    join(outDir, 'package.json'),
    `${JSON.stringify({ name: `fedai-${service}-image`, private: true, type: 'module' }, null, 2)}\n`,
  );
  const ms = Math.round(performance.now() - started);
  console.log(
    `bundled ${service}: main.mjs ${(mainBytes / 1024).toFixed(0)} KiB, node_modules: ${installed.size} packages (${external.join(', ')} and their dependencies) in ${ms} ms`,
  );
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const [service, out] = process.argv.slice(2);
  if (!service || !out) {
    console.error('usage: node tools/containers/src/bundle.mjs <service> <out-dir>');
    process.exit(2);
  }
  await bundleService(service, resolve(out));
}
