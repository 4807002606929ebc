// Runs fuzz targets and tallies per target: inputs, outcomes (acceptances and refusals by reason
// code), uncaught exceptions and forgeries. Both of the last two must be zero.
import { mulberry32 } from '@fed-ai/protocol';
import { relayTarget } from './relay-target';
import { protocolTargets, type Target } from './targets';

export interface TargetReport {
  name: string;
  inputs: number;
  outcomes: Record<string, number>;
  uncaught: number;
  forgeries: number;
  /** First few failures, for reproduction. */
  examples: string[];
}

function preview(input: unknown): string {
  let text: string;
  try {
    text = typeof input === 'string' ? input : (JSON.stringify(input) ?? String(input));
  } catch {
    text = Object.prototype.toString.call(input);
  }
  // The size matters for triage (the relay closes frames over its max_message_length): say it.
  return text.length > 200 ? `${text.slice(0, 200)}… (${Buffer.byteLength(text)} bytes)` : text;
}

async function runTarget(target: Target, inputs: number, seed: number): Promise<TargetReport> {
  const report: TargetReport = {
    name: target.name,
    inputs: 0,
    outcomes: {},
    uncaught: 0,
    forgeries: 0,
    examples: [],
  };
  for (const input of target.inputs(inputs, mulberry32(seed))) {
    report.inputs += 1;
    try {
      const verdict = await target.run(input);
      if (verdict.outcome === 'UNCAUGHT') {
        report.uncaught += 1;
        if (report.examples.length < 5) report.examples.push(`uncaught: ${preview(input)}`);
      } else report.outcomes[verdict.outcome] = (report.outcomes[verdict.outcome] ?? 0) + 1;
      if (verdict.forgery) {
        report.forgeries += 1;
        if (report.examples.length < 5)
          report.examples.push(`forgery (${verdict.forgery}): ${preview(input)}`);
      }
    } catch (error) {
      report.uncaught += 1;
      if (report.examples.length < 5)
        report.examples.push(
          `${(error as Error)?.name ?? 'throw'}: ${(error as Error)?.message ?? error} on ${preview(input)}`,
        );
    }
  }
  return report;
}

/** Every target, `perTarget` inputs each. */
export async function runAll(
  perTarget: number,
  seed: number,
  log?: (r: TargetReport) => void,
): Promise<TargetReport[]> {
  const reports: TargetReport[] = [];
  const relay = await relayTarget();
  try {
    for (const [i, target] of [...protocolTargets(), relay].entries()) {
      const report = await runTarget(target, perTarget, seed + i);
      log?.(report);
      reports.push(report);
    }
  } finally {
    await relay.close?.();
  }
  return reports;
}
