// Prometheus metrics: one registry per service (so tests can run several in one process), with
// default process metrics and a `/metrics` route.
import type { FastifyInstance } from 'fastify';
import { collectDefaultMetrics, Registry } from 'prom-client';

/**
 * How often the event-loop-delay histogram samples (ms). prom-client's default, 10, woke every
 * service ~200 times a second even when idle (strace: epoll_pwait 195/s against 2/s at 1000;
 * ~12 ms of CPU per second per idle service). At 50 a block of 50 ms or more is still always seen
 * (the sampling timer comes due inside it), and a 15 s scrape still holds ~300 samples for p99.
 */
const EVENT_LOOP_SAMPLE_MS = 50;

export function createMetricsRegistry(service: string): Registry {
  const registry = new Registry();
  registry.setDefaultLabels({ service });
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  return registry;
}

export function addMetricsRoute(app: FastifyInstance, registry: Registry): void {
  app.get('/metrics', async (_request, reply) => {
    reply.header('content-type', registry.contentType);
    return registry.metrics();
  });
}
