// Bundles test files with esbuild for scripts/test.mjs, so each test process loads one JavaScript
// file instead of resolving and compiling its workspace imports through tsx (~1.5 s of CPU for a
// service's module graph under tsx, ~0.6 s from a bundle; node --test starts one process per file).
//
// What runs is the same code:
// - workspace modules (@fed-ai/* and relative imports) are bundled as they are, with their side
//   effects; every npm package stays external and is imported from the file Node's resolver would
//   pick (an absolute path: the bundles live in .tmp/, where pnpm's node_modules would not resolve);
// - `import.meta.url` in each workspace module is replaced by that module's own source URL, so paths
//   computed from it (fixtures, migrations, `services/x/src/main.ts` to spawn, the repository root)
//   are the ones tsx would give;
// - linked source maps (node --enable-source-maps): stack traces name the .ts sources.
// The services' entry points (services/*/src/main.ts) are bundled too: tests and `fedai up` that
// start them through kit's `serviceNodeArgs` run the bundles (FEDAI_TEST_SERVICE_BUNDLES); other
// child processes the tests spawn with `--import tsx` still run from the sources.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { createRequire, isBuiltin } from 'node:module';
import { dirname, extname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import { resolveWithoutPlugin } from './esbuild-resolve.mjs';
import { removeDeadRunFolders } from './run-folders.mjs';

/**
 * Test files that observe how modules load, so they run from their sources through tsx (their
 * entry in the build only registers tsx and imports the .ts file):
 * - tracing.test.ts: a resolve hook must see the OpenTelemetry imports that kit's index makes.
 */
const FROM_SOURCES = new Set(['packages/kit/test/tracing.test.ts']);

/** Child processes a service forks through kit's `serviceNodeArgs`, bundled like the entry points. */
const SERVICE_WORKERS = ['services/node/src/runners/embedded-worker.ts'];

const META_URL = '__fedaiImportMetaUrl';
const LOADERS = {
  '.ts': 'ts',
  '.mts': 'ts',
  '.cts': 'ts',
  '.tsx': 'tsx',
  '.js': 'js',
  '.mjs': 'js',
  '.cjs': 'js',
};

/** npm packages external at the path Node would load; import.meta.url as each source's own URL. */
function sameCodePlugin() {
  return {
    name: 'fedai-test-build',
    setup(build) {
      build.onResolve({ filter: /^[^./]/ }, async (args) => {
        if (args.path.startsWith('node:') || isBuiltin(args.path)) return { path: args.path, external: true };
        if (args.path.startsWith('@fed-ai/')) return undefined; // workspace package: bundled
        const resolved = await resolveWithoutPlugin(build, args);
        if (!resolved) return undefined;
        if (resolved.errors.length > 0) return { errors: resolved.errors };
        return { path: pathToFileURL(resolved.path).href, external: true };
      });
      build.onLoad({ filter: /\.[cm]?[jt]sx?$/ }, async (args) => {
        const loader = LOADERS[extname(args.path)];
        if (loader === undefined || args.path.includes('/node_modules/')) return undefined;
        const source = await readFile(args.path, 'utf8');
        if (!source.includes('import.meta.url')) return { contents: source, loader };
        // `define` (below) turns each `import.meta.url` expression, not text in strings, into this
        // module's own constant; on the first line, so later lines keep their source-map positions.
        const url = JSON.stringify(pathToFileURL(args.path).href);
        const shebang = source.startsWith('#!') ? source.slice(0, source.indexOf('\n') + 1) : '';
        const rest = source.slice(shebang.length);
        return { contents: `${shebang}const ${META_URL} = ${url};${rest}`, loader };
      });
    },
  };
}

/**
 * Bundles `files` (paths relative to `root`) into a folder of their own under `buildsDir` (runs at
 * the same time in one checkout do not share one), keeping their relative paths under their place
 * in `files` (services' entries keep theirs as they are). Returns the bundle paths in the same
 * order and a function that removes the folder; folders of runs whose process is gone are removed
 * first.
 */
export async function buildTests(root, files, buildsDir) {
  const serviceEntries = (await readdir(join(root, 'services')))
    .map((name) => `services/${name}/src/main.ts`)
    .concat(SERVICE_WORKERS)
    .filter((entry) => existsSync(join(root, entry)));
  removeDeadRunFolders(buildsDir, 'run-');
  const outDir = join(buildsDir, `run-${process.pid}`);
  await rm(outDir, { recursive: true, force: true });
  // node --test (Node 20) sorts the files it is given by path: each test's bundle goes under its
  // place in `files` (0000/, 0001/, ...), so they start in the caller's order.
  const slotOf = new Map(files.map((file, i) => [file, String(i).padStart(4, '0')]));
  const outName = (file) => {
    const slot = slotOf.get(file);
    return (slot === undefined ? file : `${slot}/${file}`).replace(/\.ts$/, '');
  };
  const outputOf = (file) => join(outDir, `${outName(file)}.mjs`);
  const tsx = pathToFileURL(createRequire(import.meta.url).resolve('tsx/esm')).href;
  for (const file of files.filter((f) => FROM_SOURCES.has(f))) {
    await mkdir(dirname(outputOf(file)), { recursive: true });
    const source = JSON.stringify(pathToFileURL(join(root, file)).href);
    await writeFile(outputOf(file), `import ${JSON.stringify(tsx)};\nawait import(${source});\n`);
  }
  const bundled = [...files.filter((f) => !FROM_SOURCES.has(f)), ...serviceEntries];
  if (bundled.length > 0)
    await esbuild.build({
      absWorkingDir: root,
      entryPoints: bundled.map((file) => ({ in: file, out: outName(file) })),
      outdir: outDir,
      outExtension: { '.js': '.mjs' },
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      // Node's own choice of a package's files (esbuild would also try the "module" field/condition).
      mainFields: ['main'],
      conditions: [],
      sourcemap: 'linked',
      sourcesContent: false,
      legalComments: 'none',
      logLevel: 'warning',
      define: { 'import.meta.url': META_URL },
      plugins: [sameCodePlugin()],
    });
  return {
    files: files.map(outputOf),
    /** Where `serviceNodeArgs` (@fed-ai/kit) finds services/<name>/src/main.mjs. */
    serviceBundles: outDir,
    remove: () => rm(outDir, { recursive: true, force: true }),
  };
}
