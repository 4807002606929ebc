// The simulator's shell: finds and reads the scenario file, runs it, writes the report files and
// prints a summary. `fedai simulate` and `pnpm simulate` both call simulateCommand.
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SimError } from './errors';
import { renderFiles, runScenario } from './run';
import { parseScenario } from './scenario';

export const SCENARIO_DIR = resolve(dirname(fileURLToPath(import.meta.url)), '../scenarios');

interface SimulateFlags {
  seed?: string | undefined;
  out?: string | undefined;
  json?: boolean | undefined;
}

/** A scenario file path, or the name of one in tools/simulator/scenarios. */
export function resolveScenario(nameOrPath: string): string {
  if (existsSync(nameOrPath)) return nameOrPath;
  const named = join(SCENARIO_DIR, `${nameOrPath.replace(/\.json$/, '')}.json`);
  if (/^[a-z0-9-]+(\.json)?$/.test(nameOrPath) && existsSync(named)) return named;
  throw new SimError(
    'SCENARIO_NOT_FOUND',
    `no file "${nameOrPath}" and no scenario of that name in ${SCENARIO_DIR}`,
  );
}

function parseSeed(seed: string | undefined): number | undefined {
  if (seed === undefined) return undefined;
  const value = Number(seed);
  if (!Number.isSafeInteger(value) || value < 0 || value > 2 ** 32 - 1)
    throw new SimError('BAD_ARGUMENT', `--seed takes a whole number from 0 to 4294967295, got "${seed}"`);
  return value;
}

export function simulateCommand(nameOrPath: string, flags: SimulateFlags): { outDir: string } {
  const file = resolveScenario(nameOrPath);
  const scenario = parseScenario(readFileSync(file, 'utf8'));
  const seed = parseSeed(flags.seed);
  const { report, speed } = runScenario(scenario, seed === undefined ? {} : { seed });
  const outDir = resolve(flags.out ?? join('data', 'simulations', scenario.name));
  mkdirSync(outDir, { recursive: true });
  for (const [name, text] of renderFiles(report)) writeFileSync(join(outDir, name), text);
  const measured = { ...speed, peakRssMiB: Math.round(process.resourceUsage().maxRSS / 1024) };
  writeFileSync(join(outDir, 'speed.json'), `${JSON.stringify(measured, null, 2)}\n`);
  if (flags.json) {
    process.stdout.write(`${JSON.stringify({ outDir, speed: measured, report }, null, 2)}\n`);
    return { outDir };
  }
  for (const v of report.variants)
    process.stdout.write(
      `${report.scenario}/${v.variant}: ${v.totals.requests} requests, ${(v.totals.successRate * 100).toFixed(1)}% answered, ` +
        `p50 ${v.latencyMs.p50} ms, client paid ${v.money.clientPaidMsat} = nodes ${v.money.nodeEarnedMsat} + routers ${v.money.routerFeeMsat}${v.federation ? ` + offload fees ${v.federation.offloadFeeMsat}` : ''} msat, ` +
        (v.federation ? `offloaded ${(v.federation.offloadedShare * 100).toFixed(1)}% of answers, ` : '') +
        `unpaid work ${v.money.unpaidWorkMsat} msat, Gini ${v.earnings.gini}\n`,
    );
  process.stdout.write(
    `speed: ${speed.simulatedRequests} requests in ${(speed.wallMs / 1000).toFixed(1)} s = ${Math.round(speed.requestsPerWallS)} simulated requests/s, ${Math.round(speed.eventsPerWallS)} events/s, peak RSS ${measured.peakRssMiB} MiB\n`,
  );
  process.stdout.write(`report: ${join(outDir, 'report.md')}\n`);
  return { outDir };
}
