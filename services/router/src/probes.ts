// Active health probes: GET /health of every registered node, a bounded number at a time, on a
// timer. A failed probe counts against the node's breaker like a failed request, so a dead node
// stops receiving work even before its heartbeat goes stale.
// Each round is one run of the `router_health_probes` job (kit's job-heartbeat.ts), so probes that
// stopped (a round that hangs, a timer that died) raise FedaiJobStopped.
import { beating, type JobHeartbeats } from '@fed-ai/kit';
import type { Logger } from 'pino';
import { type Agent, request } from 'undici';
import type { NodeRecord } from './registry';

const PROBE_TIMEOUT_MS = 2_000;
const PROBE_CONCURRENCY = 16;

export interface ProbeTargets {
  all(): NodeRecord[];
  now(): number;
}

/**
 * One round over every node that is not banned; `probe` says whether one answered healthy.
 * An aborted `signal` (the round ran past its job's timeout) ends the round between batches.
 */
export async function probeAll(
  targets: ProbeTargets,
  probe: (endpoint: string) => Promise<boolean>,
  concurrency = PROBE_CONCURRENCY,
  signal?: AbortSignal,
): Promise<{ ok: number; failed: number }> {
  const nodes = targets.all().filter((n) => !n.banned);
  let ok = 0;
  let failed = 0;
  for (let i = 0; i < nodes.length; i += concurrency) {
    signal?.throwIfAborted();
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
  /** Heartbeats of the rounds (job `router_health_probes`); none: rounds run bare. */
  jobs?: JobHeartbeats;
  /** Nodes the registry may hold (sizes the round's timeout); default 10,000. */
  maxNodes?: number;
}): { stop(): void } {
  if (options.intervalS <= 0) return { stop() {} };
  const intervalMs = options.intervalS * 1000;
  // A round is ceil(nodes / 16) batches of at most PROBE_TIMEOUT_MS each.
  const roundMs = Math.ceil((options.maxNodes ?? 10_000) / PROBE_CONCURRENCY) * PROBE_TIMEOUT_MS;
  const job = options.jobs?.job('router_health_probes', {
    intervalMs,
    timeoutMs: Math.min(3_600_000, Math.max(60_000, 2 * intervalMs, roundMs)),
  });
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
    beating(job, (signal) => probeAll(options.targets, probeHttp, PROBE_CONCURRENCY, signal))
      .catch((error: unknown) => options.logger.warn({ err: error }, 'probe round failed'))
      .finally(() => {
        probing = false;
      });
  }, options.intervalS * 1000);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}
