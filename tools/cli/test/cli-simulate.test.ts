// `fedai simulate` delegates to tools/simulator: a small scenario file runs, writes its report files
// and prints the simulator's speed; a missing or invalid scenario is one error line, exit 2.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const cli = join(root, 'tools/cli/src/main.ts');
const dir = mkdtempSync(join(tmpdir(), 'fedai-simulate-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function fedai(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', cli, ...args], {
      cwd: root,
      env: { ...process.env, NO_COLOR: '1' },
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
    child.once('error', reject);
    child.once('exit', (code) => done({ code, stdout, stderr }));
  });
}

const tiny = {
  name: 'tiny',
  durationS: 30,
  nodes: [
    {
      group: 'g',
      count: 3,
      model: 'm',
      price: { inputMsatPer1k: 100, outputMsatPer1k: 300 },
      ttftMs: { median: 200 },
      tokensPerS: { median: 50 },
      capacity: { maxConcurrency: 4 },
    },
  ],
  clients: [
    {
      name: 'c',
      share: 1,
      model: 'm',
      promptTokens: { median: 50 },
      outputTokens: { median: 20 },
      maxTokens: 64,
    },
  ],
  arrivals: { ratePerS: 5 },
};

test('fedai simulate runs a scenario file and writes the report', async () => {
  const file = join(dir, 'tiny.json');
  writeFileSync(file, JSON.stringify(tiny));
  const out = join(dir, 'out');
  const run = await fedai(['simulate', file, '--seed', '3', '--out', out]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /^tiny\/base: \d+ requests/m);
  assert.match(run.stdout, /simulated requests\/s/);
  const report = JSON.parse(readFileSync(join(out, 'report.json'), 'utf8'));
  assert.equal(report.seed, 3);
  assert.ok(report.variants[0].totals.ok > 50);
  assert.equal(report.variants[0].money.conserved, true);
  for (const name of ['report.md', 'speed.json', 'base-earnings.svg', 'base-traffic.svg'])
    assert.ok(existsSync(join(out, name)), name);
});

test('fedai simulate with a missing or invalid scenario: one error line, exit 2', async () => {
  const missing = await fedai(['simulate', 'no-such-scenario', '--out', join(dir, 'x')]);
  assert.equal(missing.code, 2);
  assert.match(missing.stderr.trimEnd(), /^error: SCENARIO_NOT_FOUND: .+\. fix: .+$/);
  const bad = join(dir, 'bad.json');
  writeFileSync(bad, JSON.stringify({ ...tiny, durationS: -1 }));
  const invalid = await fedai(['simulate', bad, '--out', join(dir, 'y')]);
  assert.equal(invalid.code, 2);
  assert.match(invalid.stderr, /^error: SCENARIO_INVALID: durationS: /);
  assert.doesNotMatch(invalid.stderr, /\n\s+at /);
});
