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
