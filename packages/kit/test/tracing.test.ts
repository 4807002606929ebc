// Tracing off loads nothing of OpenTelemetry and changes nothing; on, a server span continues the
// caller's traceparent, the handler's undici request is its child and carries the context on, a
// span continues a traceparent carried outside HTTP, and closing the service flushes the spans.
// (tracing-e2e.test.ts checks the same across real service processes.)
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createRequire, register } from 'node:module';
import { test } from 'node:test';
import { MessageChannel } from 'node:worker_threads';

// Records every module URL resolved from here on (module hooks run on their own thread).
const seen: string[] = [];
const channel = new MessageChannel();
channel.port1.on('message', (url: string) => seen.push(url));
channel.port1.unref();
const HOOKS = `
let port;
export function initialize(data) { port = data.port; }
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  port.postMessage(result.url);
  return result;
}`;
register(`data:text/javascript,${encodeURIComponent(HOOKS)}`, {
  parentURL: import.meta.url,
  data: { port: channel.port2 },
  transferList: [channel.port2],
});

async function listen(server: Server): Promise<string> {
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  return `http://127.0.0.1:${(server.address() as { port: number }).port}`;
}
const closeServer = (server: Server) => new Promise<void>((done) => server.close(() => done()));

test('off (no OTEL_EXPORTER_OTLP_ENDPOINT): startTracing is a no-op and no OpenTelemetry SDK module loads', async () => {
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  delete process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
  const kit = await import('../src/index');
  assert.equal(kit.tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318' }), true);
  assert.equal(kit.tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: '  ' }), false);
  assert.equal(
    kit.tracingRequested({ OTEL_EXPORTER_OTLP_ENDPOINT: 'http://127.0.0.1:4318', OTEL_SDK_DISABLED: 'true' }),
    false,
  );
  const tracing = await kit.startTracing('kit-test');
  assert.equal(tracing.enabled, false);
  const running = { close: async () => {} };
  assert.equal(tracing.flushOnClose(running), running);
  const app = kit.createServer({ name: 'kit-test' });
  let header: string | undefined;
  app.get('/x/:id', async (request) => {
    header = request.headers.traceparent as string | undefined;
    return kit.inSpan(
      'work',
      { traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01' },
      async () => 'ok',
    );
  });
  const answer = await app.inject({ method: 'GET', url: '/x/1' });
  assert.equal(answer.body, 'ok');
  assert.equal(header, undefined);
  await app.close();
  await tracing.shutdown();
  await new Promise((r) => setTimeout(r, 50)); // the hook thread's last messages
  assert.ok(seen.length > 0, 'the resolve hook saw the imports');
  // Only the API may be there (prom-client requires it for exemplars; without an SDK its calls
  // are no-ops): no SDK, exporter, instrumentation, core or resources module.
  const sdkModule = (path: string) => /@opentelemetry[+/](?!api[@/])/.test(path);
  assert.deepEqual(seen.filter(sdkModule), [], 'OpenTelemetry SDK modules were imported with tracing off');
  const required = Object.keys(createRequire(import.meta.url).cache).filter(sdkModule);
  assert.deepEqual(required, [], 'OpenTelemetry SDK modules were required with tracing off');
});

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
}

test('on: server span from traceparent, undici child span that propagates, inSpan, flushed on close', async () => {
  const spans: Span[] = [];
  const receiver = createHttpServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      const doc = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: Span[] }[] }[] };
      for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  let downstreamHeaders: IncomingHttpHeaders = {};
  const downstream = createHttpServer((req, res) => {
    downstreamHeaders = req.headers;
    res.end('pong');
  });
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = await listen(receiver);
  process.env.OTEL_BSP_SCHEDULE_DELAY = '60000'; // only the flush on close exports
  const downstreamUrl = await listen(downstream);
  const kit = await import('../src/index');
  const { request } = await import('undici');
  const tracing = await kit.startTracing('kit-test');
  assert.equal(tracing.enabled, true);
  assert.equal(await kit.startTracing('again'), tracing, 'one tracing per process');
  const app = kit.createServer({ name: 'kit-test' });
  app.post('/items/:id', async () => {
    const answer = await request(`${downstreamUrl}/ping?token=not-in-spans`);
    await answer.body.text();
    return { ok: true };
  });
  const url = await app.listen({ port: 0, host: '127.0.0.1' });
  const traceId = randomBytes(16).toString('hex');
  const callerSpanId = randomBytes(8).toString('hex');
  const response = await fetch(`${url}/items/42?secret=abc`, {
    method: 'POST',
    headers: { traceparent: `00-${traceId}-${callerSpanId}-01`, 'content-type': 'application/json' },
    body: '{"prompt":"never in a span"}',
  });
  assert.equal(response.status, 200);
  await response.text();
  const otherTrace = randomBytes(16).toString('hex');
  const otherParent = randomBytes(8).toString('hex');
  const inner = await kit.inSpan(
    'nwc request',
    { traceparent: `00-${otherTrace}-${otherParent}-01` },
    async () => {
      kit.annotateSpan({ 'nwc.method': 'get_info' });
      return 7;
    },
  );
  assert.equal(inner, 7);
  const running = tracing.flushOnClose({ closed: false, close: async () => {} });
  await app.close();
  await running.close(); // shuts tracing down: the queued spans are exported now
  await closeServer(downstream);
  await closeServer(receiver);

  const server = spans.find((s) => s.kind === 2);
  assert.equal(server?.name, 'POST /items/:id');
  assert.equal(server?.traceId, traceId);
  assert.equal(server?.parentSpanId, callerSpanId);
  const client = spans.find((s) => s.kind === 3);
  assert.equal(client?.traceId, traceId);
  assert.equal(client?.parentSpanId, server?.spanId);
  assert.equal(String(downstreamHeaders.traceparent).split('-')[1], traceId, 'traceparent sent on');
  assert.equal(String(downstreamHeaders.traceparent).split('-')[2], client?.spanId);
  const nwc = spans.find((s) => s.name === 'nwc request');
  assert.equal(nwc?.traceId, otherTrace);
  assert.equal(nwc?.parentSpanId, otherParent);
  assert.deepEqual(nwc?.attributes, [{ key: 'nwc.method', value: { stringValue: 'get_info' } }]);
  // The checks of the first test see a load when there is one.
  assert.ok(seen.some((u) => u.includes('@opentelemetry/sdk-trace-node')));
  const text = JSON.stringify(spans);
  for (const secret of ['not-in-spans', 'secret=abc', 'never in a span', '/items/42'])
    assert.ok(!text.includes(secret), `${secret} is in a span`);
});
