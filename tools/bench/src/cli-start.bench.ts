// pnpm bench:cli — how long `fedai --version` and `fedai --help` take to start and exit, next to
// `node -e 1` in the same run (the ratio is what compares across machines).
// Default: the TypeScript CLI through tsx (`node --import tsx tools/cli/src/main.ts`).
// `--cli <path.js>`: a built CLI instead (`node <path.js>`). `--runs N` (default 10).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fmt, summarize } from './stats';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const { values } = parseArgs({
  options: { cli: { type: 'string' }, runs: { type: 'string', default: '10' } },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
const cliPath = values.cli ? resolve(values.cli) : undefined;
if (cliPath && !existsSync(cliPath)) throw new Error(`--cli ${cliPath}: no such file`);
const cliArgs = cliPath ? [cliPath] : ['--import', 'tsx', resolve(root, 'tools/cli/src/main.ts')];

const cases: { label: string; args: string[] }[] = [
  { label: 'node -e 1', args: ['-e', '1'] },
  { label: 'fedai --version', args: [...cliArgs, '--version'] },
  { label: 'fedai --help', args: [...cliArgs, '--help'] },
];

function timeOnce(args: string[]): number {
  const start = process.hrtime.bigint();
  const result = spawnSync(process.execPath, args, { cwd: root, encoding: 'utf8', env: process.env });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (result.status !== 0)
    throw new Error(`node ${args.join(' ')} exited ${result.status}: ${result.stderr.slice(0, 500)}`);
  return ms;
}

// Interleaved rounds, so a slow moment on the machine hits every case alike.
const samples = new Map<string, number[]>(cases.map((c) => [c.label, []]));
timeOnce(cases[1]!.args); // warm the file cache (and tsx's), not counted
for (let round = 0; round < runs; round++)
  for (const c of cases) samples.get(c.label)!.push(timeOnce(c.args));

const baseline = summarize(samples.get('node -e 1')!).median;
console.log(`CLI start: ${cliPath ? `node ${cliPath}` : 'node --import tsx tools/cli/src/main.ts'}`);
console.log(`${runs} runs each, Node ${process.version}, ${new Date().toISOString().slice(0, 10)}`);
console.log('case               median ms   p99 ms   × node -e 1');
for (const c of cases) {
  const s = summarize(samples.get(c.label)!);
  console.log(
    `${c.label.padEnd(18)} ${fmt(s.median, 0).padStart(9)} ${fmt(s.p99, 0).padStart(8)}   ${fmt(s.median / baseline, 1).padStart(9)}`,
  );
}
