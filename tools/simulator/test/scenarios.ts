// Test helpers: the shipped scenarios, cut to a few simulated minutes so a run takes well under a
// second, and an independent capacity check over the slot records (a sweep over start/end times).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SlotRecord } from '../src/engine';
import { parseScenario, type Scenario } from '../src/scenario';
import { SCENARIO_DIR } from '../src/shell';

/** A shipped scenario, shortened to `durationS` (events and bursts scaled into the window). */
export function shortScenario(name: string, durationS: number): Scenario {
  const full = parseScenario(readFileSync(join(SCENARIO_DIR, `${name}.json`), 'utf8'));
  const scale = durationS / full.durationS;
  return {
    ...full,
    durationS,
    events: full.events.map((e) => ({ ...e, atS: e.atS * scale })),
    arrivals: {
      ...full.arrivals,
      bursts: full.arrivals.bursts.map((b) => ({ ...b, atS: b.atS * scale, durationS: b.durationS * scale })),
    },
  };
}

/** The most generations each node ran at once, from its slot records. */
export function peakConcurrency(slots: readonly SlotRecord[]): Map<string, number> {
  const edges = new Map<string, [number, number][]>();
  for (const s of slots) {
    const list = edges.get(s.node) ?? [];
    // An end sorts before a start at the same instant: the freed slot is taken at once.
    list.push([s.startMs, 1], [s.endMs, -1]);
    edges.set(s.node, list);
  }
  const peaks = new Map<string, number>();
  for (const [node, list] of edges) {
    list.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    let running = 0;
    let peak = 0;
    for (const [, delta] of list) {
      running += delta;
      peak = Math.max(peak, running);
    }
    peaks.set(node, peak);
  }
  return peaks;
}
