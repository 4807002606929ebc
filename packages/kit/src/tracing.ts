// OpenTelemetry traces, OFF unless OTEL_EXPORTER_OTLP_ENDPOINT (or OTEL_EXPORTER_OTLP_TRACES_ENDPOINT)
// is set. Off, nothing of OpenTelemetry is loaded (no import, no hook, no wrapper): the per-request
// cost is one null check. On (docs/observability.md): the SDK with W3C `traceparent` propagation,
// a bounded batch processor and the OTLP/HTTP (JSON) exporter; a server span per request
// (`traceRequests`, called by createServer) and a client span per outbound undici request
// (`@opentelemetry/instrumentation-undici`, on diagnostics_channel: no module patching, so it works
// under tsx/ESM). Spans carry methods, route patterns, status codes and host:port only: never a
// query string, a body, a header value, a prompt, an output, a key or an invoice.
import type * as Api from '@opentelemetry/api';
import type { FastifyInstance, FastifyRequest } from 'fastify';

export interface Tracing {
  /** True when spans are recorded and exported. */
  readonly enabled: boolean;
  /** Exports what is still queued and stops (bounded: gives up after a few seconds). */
  shutdown(): Promise<void>;
  /**
   * `running` (a started service), whose close() also shuts tracing down, after the service has
   * closed so its last spans go out. Returns the same object.
   */
  flushOnClose<T extends { close(): Promise<void> }>(running: T): T;
}

type SpanAttributes = Record<string, string | number | boolean>;

interface Active {
  api: typeof Api;
  tracer: Api.Tracer;
  handle: Tracing;
}

let active: Active | null = null;

const OFF: Tracing = {
  enabled: false,
  shutdown: async () => {},
  flushOnClose: (running) => running,
};

const SHUTDOWN_TIMEOUT_MS = 5_000;
const DEFAULT_QUEUE_SIZE = 2_048;
const MAX_QUEUE_SIZE = 65_536;
const DEFAULT_BATCH_SIZE = 512;
const MAX_TRACEPARENT_CHARS = 128;
const TRACER_NAME = '@fed-ai/kit';

/** Whether the environment asks for traces (an OTLP endpoint is set, the SDK is not disabled). */
export function tracingRequested(env: NodeJS.ProcessEnv = process.env): boolean {
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT?.trim() || env.OTEL_EXPORTER_OTLP_ENDPOINT?.trim();
  return Boolean(endpoint) && env.OTEL_SDK_DISABLED?.trim().toLowerCase() !== 'true';
}

function boundedInt(value: string | undefined, fallback: number, max: number): number {
  const n = Number(value);
  return Number.isSafeInteger(n) && n >= 1 ? Math.min(n, max) : fallback;
}

/**
 * Starts tracing for this process (once: a second call returns the first one's handle). With no
 * OTLP endpoint set it returns a no-op handle and loads nothing. Call it before the service starts
 * its HTTP server (createServer adds the server-span hooks only when tracing is on).
 * `OTEL_SERVICE_NAME` overrides `serviceName`; `OTEL_TRACES_SAMPLER`/`_ARG`, `OTEL_BSP_*` and
 * `OTEL_EXPORTER_OTLP_*` are read as the OpenTelemetry specification says.
 */
export async function startTracing(serviceName: string): Promise<Tracing> {
  if (active) return active.handle;
  if (!tracingRequested()) return OFF;
  const [api, core, resources, sdk, exporter, undici] = await Promise.all([
    import('@opentelemetry/api'),
    import('@opentelemetry/core'),
    import('@opentelemetry/resources'),
    import('@opentelemetry/sdk-trace-node'),
    import('@opentelemetry/exporter-trace-otlp-http'),
    import('@opentelemetry/instrumentation-undici'),
  ]);
  const env = process.env;
  const queueSize = boundedInt(env.OTEL_BSP_MAX_QUEUE_SIZE, DEFAULT_QUEUE_SIZE, MAX_QUEUE_SIZE);
  const provider = new sdk.NodeTracerProvider({
    resource: resources
      .defaultResource()
      .merge(resources.detectResources({ detectors: [resources.envDetector] }))
      .merge(
        resources.resourceFromAttributes({
          'service.name': env.OTEL_SERVICE_NAME?.trim() || serviceName,
        }),
      ),
    spanProcessors: [
      // Bounded: spans beyond the queue are dropped (counted by the SDK), never buffered unbounded.
      new sdk.BatchSpanProcessor(new exporter.OTLPTraceExporter(), {
        maxQueueSize: queueSize,
        maxExportBatchSize: Math.min(
          boundedInt(env.OTEL_BSP_MAX_EXPORT_BATCH_SIZE, DEFAULT_BATCH_SIZE, queueSize),
          queueSize,
        ),
      }),
    ],
  });
  // W3C trace context only: a caller's `baggage` header is not carried on to nodes or upstreams.
  provider.register({ propagator: new core.W3CTraceContextPropagator() });
  const client = new undici.UndiciInstrumentation({
    // Background loops (heartbeats, probes, sweeps) make no root spans of their own.
    requireParentforSpans: true,
    // The query string may carry anything: record the URL without it.
    startSpanHook: (request) => ({
      'url.full': `${request.origin}${request.path.split('?')[0]}`,
      'url.query': '',
    }),
  });
  client.setTracerProvider(provider);
  client.enable();
  let stopped: Promise<void> | null = null;
  const shutdown = (): Promise<void> => {
    stopped ??= (async () => {
      client.disable();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((done) => {
        timer = setTimeout(done, SHUTDOWN_TIMEOUT_MS);
        timer.unref();
      });
      await Promise.race([provider.shutdown().catch(() => {}), timeout]);
      clearTimeout(timer);
      active = null;
    })();
    return stopped;
  };
  const handle: Tracing = {
    enabled: true,
    shutdown,
    flushOnClose(running) {
      const close = running.close.bind(running);
      Object.defineProperty(running, 'close', {
        configurable: true,
        writable: true,
        value: async () => {
          try {
            await close();
          } finally {
            await shutdown();
          }
        },
      });
      return running;
    },
  };
  active = { api, tracer: api.trace.getTracer(TRACER_NAME), handle };
  return handle;
}

/** The span context of each request being traced (set in onRequest, read by the wrapped handler). */
const REQUEST_CONTEXTS = new WeakMap<FastifyRequest, Api.Context>();

/**
 * Server spans for `app` when tracing is on (a no-op otherwise; createServer calls it). Each request
 * continues the caller's `traceparent` and gets a span named `METHOD /route/:pattern` (never the URL
 * with ids or a query), ended when the response closes; the route handler runs inside it, so the
 * handler's outbound requests are its children and carry its `traceparent`.
 */
export function traceRequests(app: FastifyInstance): void {
  const on = active;
  if (!on) return;
  const { api, tracer } = on;
  app.addHook('onRoute', (route) => {
    const handler = route.handler;
    route.handler = function tracedHandler(this: FastifyInstance, request, reply) {
      const ctx = REQUEST_CONTEXTS.get(request);
      return ctx ? api.context.with(ctx, handler, this, request, reply) : handler.call(this, request, reply);
    } as typeof handler;
  });
  app.addHook('onRequest', (request, reply, done) => {
    const parent = api.propagation.extract(api.ROOT_CONTEXT, request.headers);
    const route = request.routeOptions.url;
    const attributes: SpanAttributes = { 'http.request.method': request.method };
    if (route) attributes['http.route'] = route;
    const span = tracer.startSpan(
      route ? `${request.method} ${route}` : request.method,
      { kind: api.SpanKind.SERVER, attributes },
      parent,
    );
    reply.raw.once('close', () => {
      const status = reply.raw.statusCode;
      span.setAttribute('http.response.status_code', status);
      if (status >= 500) span.setStatus({ code: api.SpanStatusCode.ERROR });
      if (!reply.raw.writableFinished) span.setAttribute('fedai.client_aborted', true);
      span.end();
    });
    const ctx = api.trace.setSpan(parent, span);
    REQUEST_CONTEXTS.set(request, ctx);
    api.context.with(ctx, done);
  });
}

/**
 * Runs `fn` inside a span named `name` that continues `traceparent` (a W3C traceparent value carried
 * outside HTTP, e.g. in a Nostr event's tag; ignored when malformed); just `fn()` when tracing is off.
 */
export async function inSpan<T>(
  name: string,
  options: { traceparent?: string | undefined; kind?: 'server' | 'consumer' | 'internal' },
  fn: () => Promise<T>,
): Promise<T> {
  const on = active;
  if (!on) return fn();
  const { api, tracer } = on;
  const traceparent = options.traceparent;
  const parent =
    traceparent && traceparent.length <= MAX_TRACEPARENT_CHARS
      ? api.propagation.extract(api.ROOT_CONTEXT, { traceparent })
      : api.context.active();
  const kind =
    options.kind === 'server'
      ? api.SpanKind.SERVER
      : options.kind === 'consumer'
        ? api.SpanKind.CONSUMER
        : api.SpanKind.INTERNAL;
  return tracer.startActiveSpan(name, { kind }, parent, async (span) => {
    try {
      return await fn();
    } catch (error) {
      span.setStatus({ code: api.SpanStatusCode.ERROR });
      throw error;
    } finally {
      span.end();
    }
  });
}

/** Adds attributes to the active span (no-op when tracing is off). Never pass secrets or content. */
export function annotateSpan(attributes: SpanAttributes): void {
  active?.api.trace.getActiveSpan()?.setAttributes(attributes);
}
