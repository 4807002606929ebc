// pnpm fuzz [--inputs N] [--seed S]: N inputs in total (default 1,000,000), split over the targets.
// Exits non-zero on any uncaught exception or forgery.
import { initCrypto } from '@fed-ai/protocol';
import { runAll, type TargetReport } from './run';

const TARGETS = 5;
function arg(name: string, fallback: number): number {
  const at = process.argv.indexOf(`--${name}`);
  const value = at === -1 ? fallback : Number(process.argv[at + 1]);
  if (!Number.isSafeInteger(value) || value < 0) throw new Error(`--${name} must be a non-negative integer`);
  return value;
}

const total = arg('inputs', 1_000_000);
const seed = arg('seed', 1);
await initCrypto();
const started = performance.now();
const print = (r: TargetReport) => {
  const outcomes = Object.entries(r.outcomes)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code}=${n}`)
    .join(' ');
  console.log(`${r.name}: inputs=${r.inputs} uncaught=${r.uncaught} forgeries=${r.forgeries}`);
  console.log(`  outcomes: ${outcomes}`);
  for (const example of r.examples) console.log(`  ! ${example}`);
};
const reports = await runAll(Math.ceil(total / TARGETS), seed, print);
const uncaught = reports.reduce((s, r) => s + r.uncaught, 0);
const forgeries = reports.reduce((s, r) => s + r.forgeries, 0);
const inputs = reports.reduce((s, r) => s + r.inputs, 0);
console.log(
  `total: inputs=${inputs} uncaught=${uncaught} forgeries=${forgeries} seed=${seed} wall_s=${((performance.now() - started) / 1000).toFixed(1)}`,
);
process.exit(uncaught > 0 || forgeries > 0 ? 1 : 0);
