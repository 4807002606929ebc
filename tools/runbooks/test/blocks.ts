// The marked blocks of the runbooks (docs/runbooks/*.md): every fenced block marked
// `sh runbook:<id>` is run with bash by one of the test files here, as an operator would paste it,
// from the repository root. runbooks.test.ts runs the blocks against a local network (`fedai up`);
// runbooks-postgres.test.ts runs the PostgreSQL ones (POSTGRES_BLOCK_IDS) against a real
// PostgreSQL server. Each file checks that it ran all of its blocks.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

import { type ProcessRun, runCollected } from '../../cli/test/built-cli';

export const root = resolve(new URL('../../..', import.meta.url).pathname);
const runbooksDir = join(root, 'docs/runbooks');

/** The blocks runbooks-postgres.test.ts runs; every other marked block is runbooks.test.ts's. */
export const POSTGRES_BLOCK_IDS: readonly string[] = [
  'pg-backup',
  'pg-restore-fresh',
  'pg-restore-replace',
  'rollback-record',
  'rollback-verify',
];

export interface Block {
  file: string;
  script: string;
}

/** Every `sh runbook:<id>` block of the runbooks, indentation (list items) removed. */
export function markedBlocks(): Map<string, Block> {
  const blocks = new Map<string, Block>();
  const fence = /^([ \t]*)```sh runbook:([a-z0-9-]+)[ \t]*\n([\s\S]*?)^\1```[ \t]*$/gm;
  for (const file of readdirSync(runbooksDir).filter((f) => f.endsWith('.md'))) {
    const text = readFileSync(join(runbooksDir, file), 'utf8');
    for (const match of text.matchAll(fence)) {
      const [, indent = '', id = '', body = ''] = match;
      assert.ok(!blocks.has(id), `runbook block ${id} is marked twice`);
      const script = body
        .split('\n')
        .map((line) => (line.startsWith(indent) ? line.slice(indent.length) : line))
        .join('\n');
      blocks.set(id, { file, script });
    }
  }
  return blocks;
}

export type Run = ProcessRun;

/** Runs a command from the repository root; SIGKILL after `timeoutMs`. */
export function run(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<Run> {
  return runCollected(command, args, { cwd: root, env, timeoutMs });
}

/**
 * Runs the block `id` of `blocks` with bash (-euo pipefail) in `env`, records it in `ran`, and fails
 * unless it exits 0.
 */
export async function runBlock(
  blocks: Map<string, Block>,
  ran: Set<string>,
  id: string,
  env: NodeJS.ProcessEnv,
  timeoutMs = 90_000,
): Promise<Run> {
  const found = blocks.get(id);
  assert.ok(found, `no block marked sh runbook:${id} in docs/runbooks`);
  ran.add(id);
  const result = await run('bash', ['-euo', 'pipefail', '-c', found.script], env, timeoutMs);
  assert.equal(
    result.code,
    0,
    `${found.file} runbook:${id} exited ${result.code}:\n${result.stdout}\n${result.stderr}`,
  );
  return result;
}
