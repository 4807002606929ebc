// Where each service's entry point lives, and how to run one as a child process through tsx (or from
// the test runner's bundle of it: kit's serviceNodeArgs).
import { type ChildProcess, spawn } from 'node:child_process';
import { createWriteStream, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';
import { serviceNodeArgs } from '@fed-ai/kit';

export const REPO_ROOT = resolve(new URL('../../..', import.meta.url).pathname);

export const SERVICE_ENTRY = {
  relay: 'services/relay/src/main.ts',
  router: 'services/router/src/main.ts',
  node: 'services/node/src/main.ts',
  settlement: 'services/settlement/src/main.ts',
  'wallet-fleet': 'services/wallet-fleet/src/main.ts',
  'lightning-devnet': 'services/lightning-devnet/src/main.ts',
} as const;
export type ServiceName = keyof typeof SERVICE_ENTRY;

/** tsx's ESM loader, resolved from this package so children work from any cwd. */
export function tsxImport(): string {
  const require = createRequire(import.meta.url);
  return new URL(`file://${require.resolve('tsx/esm')}`).href;
}

export interface SpawnedService {
  name: string;
  child: ChildProcess;
  exited: Promise<number | null>;
  /** The last few KB of the child's stderr: where a start failure's one line is. */
  stderrTail(): string;
}

const STDERR_TAIL_BYTES = 4096;

/** Starts a service with its own env; stdout/stderr go to `logFile` (JSON lines). */
export function spawnService(
  service: ServiceName,
  name: string,
  env: Record<string, string>,
  logFile: string,
): SpawnedService {
  mkdirSync(resolve(logFile, '..'), { recursive: true });
  const log = createWriteStream(logFile, { flags: 'a' });
  const child = spawn(
    process.execPath,
    serviceNodeArgs(resolve(REPO_ROOT, SERVICE_ENTRY[service]), ['--import', tsxImport()]),
    {
      cwd: REPO_ROOT,
      env: { ...process.env, ...env, FORCE_COLOR: '0' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  let tail = '';
  child.stderr?.on('data', (chunk: Buffer) => {
    tail = (tail + chunk.toString()).slice(-STDERR_TAIL_BYTES);
  });
  // 'close', not 'exit': the child's last stderr lines have been read by then.
  const exited = new Promise<number | null>((resolveExit) => {
    child.once('close', (code, signal) => {
      log.end();
      resolveExit(code ?? (signal ? 128 : null));
    });
  });
  return { name, child, exited, stderrTail: () => tail };
}
