// How a test or `fedai up` starts a service's entry point (`services/<name>/src/main.ts`, or a
// worker a service forks, such as the node's embedded model process) as a child process. Normally
// through tsx (`loaderArgs`, e.g. `['--import', tsxUrl]`); when the test runner has bundled the
// entry points (scripts/test.mjs sets FEDAI_TEST_SERVICE_BUNDLES to its build folder), from the
// bundle: the same code (scripts/test-build.mjs), without tsx resolving and compiling the
// service's module graph in every child (~1 s of CPU each).
import { existsSync } from 'node:fs';
import { join } from 'node:path';

/** The node arguments (before the service's own) that run `entry`. */
export function serviceNodeArgs(entry: string, loaderArgs: string[]): string[] {
  const builds = process.env.FEDAI_TEST_SERVICE_BUNDLES;
  const source = /\/(services\/[a-z0-9-]+\/src\/[a-z0-9/-]+)\.ts$/.exec(entry)?.[1];
  if (builds && source) {
    const bundle = join(builds, `${source}.mjs`);
    if (existsSync(bundle)) return ['--enable-source-maps', bundle];
  }
  return [...loaderArgs, entry];
}

/**
 * The environment for a service started with only `settings` (a test of what it does without the
 * rest of ours): PATH, and what the test runner hands every process (its V8 preload in
 * NODE_OPTIONS, its scratch TMPDIR; scripts/test.mjs), none of which the services read.
 */
export function bareServiceEnv(settings: Record<string, string>): Record<string, string> {
  const carried: Record<string, string> = { PATH: process.env.PATH ?? '/usr/bin:/bin' };
  for (const name of ['NODE_OPTIONS', 'TMPDIR'] as const) {
    const value = process.env[name];
    if (value !== undefined) carried[name] = value;
  }
  return { ...carried, ...settings };
}
