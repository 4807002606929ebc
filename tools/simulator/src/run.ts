// Runs a scenario (each variant in turn) and renders the report files. Pure apart from the
// wall-clock measurement of the simulator's own speed, which is returned beside the report.
import { chartsOf } from './charts';
import { type SimOptions, Simulation } from './engine';
import { renderMarkdown } from './markdown';
import { buildVariantReport, type VariantReport } from './report';
import { applyVariant, type Scenario } from './scenario';

export interface Report {
  scenario: string;
  description: string;
  seed: number;
  variants: VariantReport[];
}

/** The simulator's own speed (wall clock: varies by machine and load, never part of the report). */
interface Speed {
  wallMs: number;
  simulatedRequests: number;
  requestsPerWallS: number;
  eventsPerWallS: number;
}

export interface RunResult {
  report: Report;
  speed: Speed;
  sims: Simulation[];
}

export function runScenario(scenario: Scenario, options: SimOptions & { seed?: number } = {}): RunResult {
  const seeded = options.seed === undefined ? scenario : { ...scenario, seed: options.seed };
  const variants = seeded.variants.length > 0 ? seeded.variants : [undefined];
  const started = performance.now();
  const sims: Simulation[] = [];
  let events = 0;
  const reports = variants.map((v) => {
    const sim = new Simulation(applyVariant(seeded, v), options);
    const ran = sim.run();
    events += ran;
    sims.push(sim);
    return buildVariantReport(sim, v?.name ?? 'base', ran);
  });
  const wallMs = performance.now() - started;
  const simulatedRequests = reports.reduce((s, r) => s + r.totals.requests, 0);
  return {
    report: { scenario: seeded.name, description: seeded.description, seed: seeded.seed, variants: reports },
    speed: {
      wallMs,
      simulatedRequests,
      requestsPerWallS: simulatedRequests / Math.max(1e-9, wallMs / 1000),
      eventsPerWallS: events / Math.max(1e-9, wallMs / 1000),
    },
    sims,
  };
}

/** The report's files by name: report.json, report.md and one SVG per chart and variant. */
export function renderFiles(report: Report): Map<string, string> {
  const files = new Map<string, string>();
  files.set('report.json', `${JSON.stringify(report, null, 2)}\n`);
  files.set('report.md', renderMarkdown(report));
  for (const v of report.variants)
    for (const [name, svg] of Object.entries(chartsOf(v))) files.set(`${v.variant}-${name}.svg`, svg);
  return files;
}
