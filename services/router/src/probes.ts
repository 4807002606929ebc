// Active health probes: GET /health of every registered node, a bounded number at a time, on a
// timer. A failed probe counts against the node's breaker like a failed request, so a dead node
// stops receiving work even before its heartbeat goes stale.
import type { Logger } from 'pino';
import { type Agent, request } from 'undici';
import type { NodeRecord } from './registry';

const PROBE_TIMEOUT_MS = 2_000;

export interface ProbeTargets {
  all(): NodeRecord[];
  now(): number;
}

/** One round over every node that is not banned; `probe` says whether one answered healthy. */
export async function probeAll(
  targets: ProbeTargets,
  probe: (endpoint: string) => Promise<boolean>,
  concurrency = 16,
): Promise<{ ok: number; failed: number }> {
  const nodes = targets.all().filter((n) => !n.banned);
  let ok = 0;
  let failed = 0;
  for (let i = 0; i < nodes.length; i += concurrency) {
    await Promise.all(
      nodes.slice(i, i + concurrency).map(async (node) => {
        const healthy = await probe(node.endpoint).catch(() => false);
        if (healthy) ok += 1;
        else {
          failed += 1;
          node.health.recordFailure(targets.now());
        }
      }),
    );
  }
  return { ok, failed };
}

/** Probes every `intervalS` (one round at a time) until the returned stop() is called. */
export function startProber(options: {
  targets: ProbeTargets;
  agent: Agent;
  intervalS: number;
  logger: Logger;
}): { stop(): void } {
  if (options.intervalS <= 0) return { stop() {} };
  const probeHttp = async (endpoint: string) => {
    const response = await request(`${endpoint}/health`, {
      dispatcher: options.agent,
      signal: AbortSignal.timeout(PROBE_TIMEOUT_MS),
    });
    await response.body.dump();
    return response.statusCode === 200;
  };
  let probing = false;
  const timer = setInterval(() => {
    if (probing) return;
    probing = true;
    probeAll(options.targets, probeHttp)
      .catch((error: unknown) => options.logger.warn({ err: error }, 'probe round failed'))
      .finally(() => {
        probing = false;
      });
  }, options.intervalS * 1000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
