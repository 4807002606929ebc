// The CLI bundled once per test process (esbuild, as scripts/build.mjs bundles the published CLI),
// so a test that runs `fedai` many times spawns `node <bundle>` instead of `node --import tsx
// src/main.ts`: tsx resolving and loading the CLI and its workspace imports costs ~0.5 s of CPU per
// run, the bundle starts in a fraction of that. What the CLI does is the same code either way.
//
// The files go to tools/cli/.tmp/ (git-ignored): at src/'s depth, because the CLI computes the
// repository root from import.meta.url (src/services.ts), and next to tools/cli/node_modules, where
// its npm dependencies resolve. Names carry esbuild's content hash, and each file is written under a
// temporary name and renamed, so test files building at the same time never see a partial file and
// an edited source never runs stale.

import { spawn } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  readdirSync,
  renameSync,
  rmSync,
  statSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { isBuiltin } from 'node:module';
import { basename, join, resolve } from 'node:path';
import { build, type Plugin } from 'esbuild';

const cliDir = resolve(new URL('..', import.meta.url).pathname);
const repoRoot = resolve(cliDir, '../..');
const outDir = join(cliDir, '.tmp');
const workspaceSources = ['packages', 'services'].map((top) => join(repoRoot, top));
/** Bundles nobody has used for this long are removed (an edited source leaves the old one behind). */
const STALE_MS = 6 * 60 * 60 * 1000;

function packageOf(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : (parts[0] ?? spec);
}

/** npm packages stay external; workspace packages are bundled, other packages' modules without side effects. */
const externals: Plugin = {
  name: 'fedai-test-externals',
  setup(plugin) {
    const workspaceModule = async (args: Parameters<Parameters<typeof plugin.onResolve>[1]>[0]) => {
      if (args.pluginData === 'fedai-resolving') return undefined;
      const resolved = await plugin.resolve(args.path, {
        kind: args.kind,
        importer: args.importer,
        resolveDir: args.resolveDir,
        pluginData: 'fedai-resolving',
      });
      if (resolved.errors.length > 0) return { errors: resolved.errors };
      const foreign = workspaceSources.some((dir) => resolved.path.startsWith(`${dir}/`));
      return { ...resolved, sideEffects: foreign ? false : resolved.sideEffects };
    };
    plugin.onResolve({ filter: /^[^./]/ }, (args) => {
      if (args.path.startsWith('node:') || isBuiltin(args.path)) return { path: args.path, external: true };
      if (packageOf(args.path).startsWith('@fed-ai/')) return workspaceModule(args);
      return { path: args.path, external: true };
    });
    plugin.onResolve({ filter: /^\./ }, workspaceModule);
  },
};

async function buildCli(): Promise<string> {
  const result = await build({
    absWorkingDir: cliDir,
    entryPoints: ['src/main.ts'],
    outdir: outDir,
    entryNames: 'cli-[hash]',
    chunkNames: 'cli-chunk-[hash]',
    splitting: true, // commands stay lazily loaded, as in src/ and in the published build
    bundle: true,
    format: 'esm',
    platform: 'node',
    target: 'node20',
    legalComments: 'none',
    logLevel: 'silent',
    write: false,
    plugins: [externals],
  });
  mkdirSync(outDir, { recursive: true });
  const now = new Date();
  let entry: string | undefined;
  for (const file of result.outputFiles) {
    if (basename(file.path).startsWith('cli-') && !basename(file.path).startsWith('cli-chunk-'))
      entry = file.path;
    if (existsSync(file.path)) {
      utimesSync(file.path, now, now);
      continue;
    }
    const temporary = `${file.path}.${process.pid}.tmp`;
    writeFileSync(temporary, file.contents);
    renameSync(temporary, file.path);
  }
  if (entry === undefined) throw new Error('esbuild wrote no CLI entry');
  for (const name of readdirSync(outDir)) {
    const path = join(outDir, name);
    try {
      if (name.startsWith('cli-') && now.getTime() - statSync(path).mtimeMs > STALE_MS)
        rmSync(path, { force: true });
    } catch {
      // another test process removed it first
    }
  }
  return entry;
}

let built: Promise<string> | undefined;

/** The path of the bundled CLI (built on first use in this process): run it with `node <path> ...`. */
export function builtCli(): Promise<string> {
  built ??= buildCli();
  return built;
}

export interface ProcessRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end and collects its output; SIGKILL after `timeoutMs` when given. */
export function runCollected(
  command: string,
  args: string[],
  options: { env: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number },
): Promise<ProcessRun> {
  return new Promise((done, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = options.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), options.timeoutMs) : null;
    child.once('error', reject);
    child.once('exit', (code) => {
      if (timer) clearTimeout(timer);
      done({ code, stdout, stderr });
    });
  });
}
