// A newcomer's app outside the workspace: the packed tarballs of @fed-ai/protocol, @fed-ai/sdk and
// @fed-ai/cli installed with npm into a folder of its own, and the docs' examples run in it with
// plain node (TypeScript compiled with esbuild first).
import { spawn, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { transformSync } from 'esbuild';
import { type CodeBlock, isTypeScript } from './markdown';

const PACKED = ['packages/protocol', 'packages/sdk', 'tools/cli'] as const;

export interface Ran {
  code: number | null;
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

function mustRun(command: string, args: string[], cwd: string, env?: NodeJS.ProcessEnv): string {
  const result = spawnSync(command, args, { cwd, encoding: 'utf8', env: env ?? process.env });
  if (result.status !== 0)
    throw new Error(
      `${command} ${args.join(' ')} (in ${cwd}) exited ${result.status}: ${result.stderr || result.error?.message}`,
    );
  return result.stdout;
}

/** `pnpm build` in `repoDir`, then `pnpm pack` of the three published packages into `outDir`. */
export function buildAndPack(repoDir: string, outDir: string): string[] {
  mkdirSync(outDir, { recursive: true });
  mustRun(process.execPath, ['scripts/build.mjs'], repoDir);
  for (const dir of PACKED) mustRun('pnpm', ['pack', '--pack-destination', outDir], join(repoDir, dir));
  return readdirSync(outDir)
    .filter((name) => name.endsWith('.tgz'))
    .sort()
    .map((name) => join(outDir, name));
}

/** The `openai` version the workspace tests with (the README's example uses the official client). */
export function workspaceOpenaiVersion(repoDir: string): string {
  // tools/cli has openai as a dev dependency (its end-to-end test); pnpm links it there.
  const path = join(realpathSync(join(repoDir, 'tools/cli/node_modules/openai')), 'package.json');
  return (JSON.parse(readFileSync(path, 'utf8')) as { version: string }).version;
}

/** A folder with its own package.json and the tarballs (plus `extra` registry packages) installed. */
export function createScratchApp(appDir: string, tarballs: string[], extra: string[]): void {
  mkdirSync(appDir, { recursive: true });
  writeFileSync(
    join(appDir, 'package.json'),
    `${JSON.stringify({ name: 'fedai-newcomer-app', private: true, type: 'module' }, null, 2)}\n`,
  );
  // The registry only for third-party packages; --prefer-offline reuses the npm cache.
  mustRun(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      '--ignore-scripts',
      '--loglevel=error',
      ...tarballs,
      ...extra,
    ],
    appDir,
  );
}

/** Writes a block as a file of the app (TypeScript compiled to .mjs with esbuild) and returns its path. */
export function writeExample(appDir: string, block: CodeBlock, name: string): string {
  const dir = join(appDir, 'examples');
  mkdirSync(dir, { recursive: true });
  if (isTypeScript(block)) writeFileSync(join(dir, `${name}.ts`), block.code);
  const js = isTypeScript(block)
    ? transformSync(block.code, { loader: 'ts', format: 'esm', target: 'node20', sourcefile: block.where })
        .code
    : block.code;
  const path = join(dir, `${name}.mjs`);
  writeFileSync(path, js);
  return path;
}

/** Runs a command; kills its process group after `timeoutMs`. */
export function run(
  command: string,
  args: string[],
  options: { cwd: string; env: NodeJS.ProcessEnv; timeoutMs: number },
): Promise<Ran> {
  return new Promise((resolveRun) => {
    const child = spawn(command, args, {
      cwd: options.cwd,
      env: options.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: true,
    });
    let stdout = '';
    let stderr = '';
    const limit = 1 << 20;
    child.stdout.on('data', (chunk: Buffer) => {
      if (stdout.length < limit) stdout += chunk.toString('utf8');
    });
    child.stderr.on('data', (chunk: Buffer) => {
      if (stderr.length < limit) stderr += chunk.toString('utf8');
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      if (child.pid) process.kill(-child.pid, 'SIGKILL');
    }, options.timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolveRun({ code, stdout, stderr, timedOut });
    });
  });
}

// With skipLibCheck an unresolved declaration would silently be `any`: this probe fails to compile then.
const TYPES_PROBE = `import { KIND } from '@fed-ai/protocol';
import { FedAiClient } from '@fed-ai/sdk';
// @ts-expect-error routerUrl is required
new FedAiClient({});
// @ts-expect-error KIND's values are numbers
export const kind: string = KIND.meteringRecord;
`;

/**
 * Type-checks the examples written as .ts against the installed packages' declarations, the way a
 * TypeScript app on Node resolves them (module NodeNext).
 */
export function typecheckExamples(appDir: string, repoDir: string): Ran {
  const require = createRequire(join(repoDir, 'tools/newcomer/package.json'));
  mkdirSync(join(appDir, 'examples'), { recursive: true });
  writeFileSync(join(appDir, 'examples', 'types-probe.ts'), TYPES_PROBE);
  writeFileSync(
    join(appDir, 'tsconfig.json'),
    `${JSON.stringify(
      {
        compilerOptions: {
          target: 'ES2022',
          module: 'NodeNext',
          moduleResolution: 'NodeNext',
          strict: true,
          noEmit: true,
          skipLibCheck: true,
          types: ['node'],
          typeRoots: [join(repoDir, 'node_modules/@types')],
        },
        include: ['examples/*.ts'],
      },
      null,
      2,
    )}\n`,
  );
  const result = spawnSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', appDir], {
    cwd: appDir,
    encoding: 'utf8',
  });
  return { code: result.status, stdout: result.stdout, stderr: result.stderr, timedOut: false };
}
