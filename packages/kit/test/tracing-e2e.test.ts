// Traces across real processes: settlement, router and node (each its main.ts as `fedai up` starts
// them: kit's serviceNodeArgs) export to an OTLP/HTTP receiver in this test. ONE paid chat request,
// sent with a traceparent of ours, must come back as one trace with spans from all three services
// whose parent links chain up to our span, and no span may carry the prompt, the output, the API
// key or an invoice.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { createNip98Header, generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
// Relative, as the router's tests import settlement's: the double lives under the node's test/.
import { OpenAiUpstreamDouble } from '../../../services/node/test/upstream-double';
import { readReadyFile, serviceNodeArgs } from '../src/index';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'fedai-tracing-'));
const routerKey = generateSecretKey();
const settlementKey = generateSecretKey();
const nodeKey = generateSecretKey();
const operatorKey = generateSecretKey();
const PROMPT = `tracing-secret-prompt-${randomBytes(6).toString('hex')}`;
const TRACE_ID = randomBytes(16).toString('hex');
const CLIENT_SPAN_ID = randomBytes(8).toString('hex');

interface ReceivedSpan {
  service: string;
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
}

const received: ReceivedSpan[] = [];
const rawBodies: string[] = [];
let receiver: Server;
let receiverUrl = '';
const children: { name: string; proc: ChildProcess }[] = [];
const upstream = new OpenAiUpstreamDouble();

/** OTLP/HTTP JSON (the default of exporter-trace-otlp-http): POST /v1/traces. */
function startReceiver(): Promise<void> {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    req.on('end', () => {
      if (req.method !== 'POST' || req.url !== '/v1/traces') {
        res.writeHead(404).end();
        return;
      }
      rawBodies.push(body);
      const doc = JSON.parse(body) as {
        resourceSpans: {
          resource: { attributes: { key: string; value: { stringValue?: string } }[] };
          scopeSpans: { spans: Omit<ReceivedSpan, 'service'>[] }[];
        }[];
      };
      for (const rs of doc.resourceSpans) {
        const service = rs.resource.attributes.find((a) => a.key === 'service.name')?.value.stringValue ?? '';
        for (const ss of rs.scopeSpans) for (const span of ss.spans) received.push({ ...span, service });
      }
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  return new Promise((done) =>
    receiver.listen(0, '127.0.0.1', () => {
      receiverUrl = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;
      done();
    }),
  );
}

async function waitFor<T>(
  what: string,
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 60_000,
) {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    const value = await Promise.resolve()
      .then(probe)
      .catch(() => undefined);
    if (value !== undefined) return value;
    await new Promise((r) => setTimeout(r, 100));
  }
  const logs = children.map(({ name }) => {
    try {
      return `${name}: ${readFileSync(join(dir, `${name}.log`), 'utf8').slice(-1500)}`;
    } catch {
      return `${name}: (no log)`;
    }
  });
  throw new Error(`timed out waiting for ${what}\n${logs.join('\n')}`);
}

/** Starts `service`'s main.ts as a child process on any free port; resolves to the URL it bound. */
async function launch(service: string, name: string, env: Record<string, string>): Promise<string> {
  const readyFile = join(dir, `${name}.ready.json`);
  const proc = spawn(
    process.execPath,
    serviceNodeArgs(resolve(root, `services/${service}/src/main.ts`), ['--import', 'tsx']),
    {
      cwd: root,
      env: {
        ...process.env,
        NODE_ENV: 'production',
        LOG_LEVEL: 'warn',
        FEDAI_READY_FILE: readyFile,
        DATA_DIR: join(dir, name),
        OTEL_EXPORTER_OTLP_ENDPOINT: receiverUrl,
        OTEL_BSP_SCHEDULE_DELAY: '100',
        ...env,
      },
      stdio: ['ignore', 'ignore', openSync(join(dir, `${name}.log`), 'a')],
    },
  );
  children.push({ name, proc });
  const facts = await waitFor(`${name} ready`, () => {
    if (proc.exitCode !== null) throw new Error(`${name} exited`);
    return readReadyFile(readyFile) ?? undefined;
  });
  return facts.url;
}

let routerUrl = '';
let apiKey = '';
let bolt11 = '';

before(async () => {
  await startReceiver();
  await upstream.start();
  upstream.tokens = ['tracing', '-secret', '-output'];
  const settlementUrl = await launch('settlement', 'settlement', {
    SETTLEMENT_PORT: '0',
    SETTLEMENT_KEY: secretKeyHex(settlementKey),
    SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
    FAUCET: 'true',
  });
  routerUrl = await launch('router', 'router', {
    ROUTER_PORT: '0',
    ROUTER_KEY: secretKeyHex(routerKey),
    OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
    ALLOW_PRIVATE_ENDPOINTS: 'true',
    SETTLEMENT_URL: settlementUrl,
    SETTLEMENT_PUBKEY: publicKeyOf(settlementKey),
    PROBE_INTERVAL_S: '0',
  });
  await launch('node', 'node', {
    NODE_PORT: '0',
    NODE_KEY: secretKeyHex(nodeKey),
    ROUTER_URLS: routerUrl,
    ROUTER_PUBKEYS: publicKeyOf(routerKey),
    RUNNER: 'openai',
    OPENAI_BASE_URL: upstream.url,
    MODEL_ID: 'upstream-model',
    HEARTBEAT_INTERVAL_S: '1',
  });
  await waitFor('the node serving at the router', async () => {
    const list = (await (await fetch(`${routerUrl}/v1/models`)).json()) as { data?: { id: string }[] };
    return list.data?.some((m) => m.id === 'upstream-model') ? true : undefined;
  });
  // An API key (admin API, NIP-98) and a tab funded from the devnet faucet.
  const adminUrl = `${routerUrl}/admin/apikeys`;
  const body = JSON.stringify({ name: 'tracing' });
  const created = await fetch(adminUrl, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(adminUrl, 'POST', body, operatorKey),
    },
    body,
  });
  assert.equal(created.status, 200);
  apiKey = ((await created.json()) as { key: string }).key;
  const tab = async (path: string, payload: unknown) => {
    const response = await fetch(`${routerUrl}/v1/tabs/${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify(payload),
    });
    const json = (await response.json()) as Record<string, unknown>;
    assert.equal(response.status, 200, JSON.stringify(json));
    return json;
  };
  bolt11 = String((await tab('topup', { amount_msat: 1_000_000 })).bolt11);
  await tab('faucet', { bolt11 });
});

after(async () => {
  for (const { proc } of children.reverse()) {
    if (proc.exitCode !== null || proc.signalCode !== null) continue;
    const exited = new Promise((done) => proc.once('exit', done));
    proc.kill('SIGTERM');
    const timer = setTimeout(() => proc.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(timer);
  }
  await upstream.stop();
  receiver?.closeAllConnections();
  await new Promise<void>((done) => (receiver ? receiver.close(() => done()) : done()));
  rmSync(dir, { recursive: true, force: true });
});

const attr = (span: ReceivedSpan, key: string) => span.attributes.find((a) => a.key === key)?.value;

test('one paid chat request is one trace: router, node and settlement spans that chain to the caller', async () => {
  const response = await fetch(`${routerUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      authorization: `Bearer ${apiKey}`,
      'content-type': 'application/json',
      traceparent: `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01`,
    },
    body: JSON.stringify({
      model: 'upstream-model',
      messages: [{ role: 'user', content: PROMPT }],
      max_tokens: 8,
    }),
  });
  const answer = (await response.json()) as {
    choices: { message: { content: string } }[];
    fedai: { cost_msat: number };
  };
  assert.equal(response.status, 200, JSON.stringify(answer));
  assert.equal(answer.choices[0]?.message.content, 'tracing-secret-output');
  assert.ok(answer.fedai.cost_msat > 0, 'a paid request');

  const spans = await waitFor('spans of the trace from router, node and settlement', () => {
    const inTrace = received.filter((s) => s.traceId === TRACE_ID);
    // OTLP JSON span kinds: 2 server, 3 client. The router's server span ends last (after the answer).
    const server = (service: string) => inTrace.some((s) => s.service === service && s.kind === 2);
    // Three processes export on their own timers, and the capture goes out after the answer: a
    // settlement span can arrive before the router span it hangs under. Wait for the whole tree.
    const ids = new Set([CLIENT_SPAN_ID, ...inTrace.map((s) => s.spanId)]);
    const whole = inTrace.every((s) => ids.has(s.parentSpanId));
    return server('router') && server('node') && server('settlement') && whole ? inTrace : undefined;
  });

  // The router's server span continues our traceparent and is named by the route pattern.
  const routerServer = spans.find((s) => s.service === 'router' && s.kind === 2);
  assert.equal(routerServer?.name, 'POST /v1/chat/completions');
  assert.equal(routerServer?.parentSpanId, CLIENT_SPAN_ID);
  assert.deepEqual(attr(routerServer!, 'http.route'), { stringValue: '/v1/chat/completions' });

  // Every span's parent is our span or another span of the trace: one tree.
  const ids = new Set([CLIENT_SPAN_ID, ...spans.map((s) => s.spanId)]);
  for (const span of spans)
    assert.ok(
      ids.has(span.parentSpanId),
      `${span.service} ${span.name}: parent ${span.parentSpanId} not in the trace`,
    );
  const byId = new Map(spans.map((s) => [s.spanId, s]));
  const chainToClient = (span: ReceivedSpan): string[] => {
    const path = [`${span.service}:${span.name}`];
    for (let p = span.parentSpanId; p !== CLIENT_SPAN_ID; ) {
      const parent = byId.get(p);
      assert.ok(parent, `${span.name}: broken chain`);
      path.push(`${parent.service}:${parent.name}`);
      p = parent.parentSpanId;
    }
    return path;
  };
  // The node's and settlement's server spans are children of the router's client spans (kind 3).
  for (const service of ['node', 'settlement']) {
    const server = spans.find((s) => s.service === service && s.kind === 2);
    assert.ok(server, `a ${service} server span`);
    const parent = byId.get(server.parentSpanId);
    assert.equal(parent?.service, 'router', `${service}'s parent is a router span`);
    assert.equal(parent?.kind, 3, `${service}'s parent is a client span`);
    assert.ok(!server.name.includes('?'), server.name);
    assert.equal(chainToClient(server).at(-1), 'router:POST /v1/chat/completions');
  }
  // The node's call to its upstream model is a client span too.
  assert.ok(
    spans.some((s) => s.service === 'node' && s.kind === 3),
    'node -> upstream client span',
  );

  // No span of any trace carries the prompt, the output, the API key or an invoice.
  for (const text of rawBodies) {
    assert.ok(!text.includes(PROMPT), 'the prompt is in a span');
    assert.ok(
      !text.includes('tracing-secret-output') && !text.includes('-secret-output'),
      'the output is in a span',
    );
    assert.ok(!text.includes(apiKey), 'the API key is in a span');
    assert.ok(!text.includes(bolt11), 'a bolt11 is in a span');
  }
  for (const span of received) assert.ok(!JSON.stringify(attr(span, 'url.query') ?? '').includes('='));
});
