import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  ChannelKeys,
  createEnvelope,
  generateSecretKey,
  KIND,
  outputSha256,
  promptSha256,
  verifyEnvelope,
} from '@fed-ai/protocol';
import { nodeConfigSchema } from '../src/config';
import { type RunningNode, startNode } from '../src/node';
import {
  inferenceRequest,
  macRequest,
  postInfer,
  readEvents,
  routerKey,
  routerPubkey,
  signedRequest,
} from './helpers';
import { ScriptedRunnerDouble } from './runner-double';

let node: RunningNode;
let runner: ScriptedRunnerDouble;
const dir = mkdtempSync(join(tmpdir(), 'fedai-node-'));

before(async () => {
  runner = new ScriptedRunnerDouble(['Hel', 'lo', ' wor', 'ld'], 60);
  const config = nodeConfigSchema.parse({
    NODE_PORT: '0',
    DATA_DIR: dir,
    DEMO_MODEL: 'true',
    ROUTER_PUBKEYS: routerPubkey,
    ROUTER_URLS: '',
    MAX_CONCURRENCY: '2',
    QUEUE_MAX: '2',
  });
  // The router key is allowed through ROUTER_PUBKEYS with a matching (unreachable) URL list.
  node = await startNode(
    { ...config, ROUTER_URLS: ['http://127.0.0.1:9'], ROUTER_PUBKEYS: [routerPubkey] },
    { runner },
  );
});

after(async () => {
  await node.close();
  rmSync(dir, { recursive: true, force: true });
});

test('a signed stream request streams deltas and ends with a signed metering record that matches', async () => {
  const payload = inferenceRequest();
  const response = await postInfer(node.url, signedRequest(node.pubkey, payload));
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/);
  // The keep-alive hint: without it the router's pool reuses sockets this node is closing.
  assert.match(response.headers.get('keep-alive') ?? '', /^timeout=\d+/);
  const events = await readEvents(response);
  const deltas = events.filter((e) => e.type === 'delta').map((e) => e.delta as string);
  assert.deepEqual(deltas, ['Hel', 'lo', ' wor', 'ld']);
  const done = events.at(-1)!;
  assert.equal(done.type, 'done');
  const verified = await verifyEnvelope(done.metering, { me: routerPubkey, kinds: [KIND.meteringRecord] });
  assert.equal(verified.ok, true);
  if (!verified.ok) return;
  assert.equal(verified.envelope.pubkey, node.pubkey);
  assert.equal(verified.payload.request_id, payload.request_id);
  assert.equal(verified.payload.output_sha256, outputSha256(deltas.join('')));
  assert.equal(verified.payload.prompt_sha256, promptSha256(payload.messages));
  assert.equal(verified.payload.tokens_out, 4);
  assert.equal(verified.payload.tokens_in, 7);
  assert.deepEqual(done.usage, { prompt_tokens: 7, completion_tokens: 4, total_tokens: 11 });
  // 7 x 1000/1k + 4 x 2000/1k = 15 msat
  assert.equal(verified.payload.cost_msat, 15);
});

test('a request with the router’s MAC is served like a signed one; its replay, a stranger’s MAC and a changed body are refused', async () => {
  const payload = inferenceRequest({ stream: false });
  const envelope = macRequest(node.pubkey, payload);
  const response = await postInfer(node.url, envelope);
  assert.equal(response.status, 200, await response.clone().text());
  const body = (await response.json()) as { text: string; metering: unknown; metering_mac?: string };
  assert.equal(body.text, 'Hello world');
  const verified = await verifyEnvelope(body.metering, { me: routerPubkey, kinds: [KIND.meteringRecord] });
  assert.ok(verified.ok && verified.payload.request_id === payload.request_id, 'the record is still signed');
  // Beside it, the node's channel MAC of the record (what a paid router checks instead).
  const routerChannel = new ChannelKeys(routerKey);
  const metering = body.metering as { id: string };
  assert.equal(routerChannel.attests(metering.id, node.pubkey, body.metering_mac ?? ''), true);
  assert.equal(routerChannel.attests(metering.id, node.pubkey, flipLast(body.metering_mac ?? '')), false);
  const streamed = await readEvents(await postInfer(node.url, macRequest(node.pubkey, inferenceRequest())));
  const done = streamed.at(-1) as { metering: { id: string }; metering_mac?: string };
  assert.equal(routerChannel.attests(done.metering.id, node.pubkey, done.metering_mac ?? ''), true);
  // A signed request gets no MAC: that router has no channel with the node.
  const signedDone = (
    await readEvents(await postInfer(node.url, signedRequest(node.pubkey, inferenceRequest())))
  ).at(-1)!;
  assert.equal(signedDone.type, 'done');
  assert.equal('metering_mac' in signedDone, false);
  const codeOf = async (sent: unknown) => {
    const answer = await postInfer(node.url, sent);
    return `${answer.status} ${((await answer.json()) as { error: { code: string } }).error.code}`;
  };
  assert.equal(await codeOf(envelope), '409 REPLAYED');
  assert.equal(
    await codeOf(macRequest(node.pubkey, inferenceRequest(), generateSecretKey())),
    '401 BAD_SIGNATURE',
  );
  const changed = macRequest(node.pubkey, inferenceRequest());
  assert.equal(
    await codeOf({ ...changed, content: changed.content.replace('Say hello', 'Say more') }),
    '401 BAD_ID',
  );
});

test('non-stream answers JSON with text, usage and metering', async () => {
  const response = await postInfer(node.url, signedRequest(node.pubkey, inferenceRequest({ stream: false })));
  assert.equal(response.status, 200);
  const body = (await response.json()) as {
    text: string;
    usage: { completion_tokens: number };
    metering: unknown;
  };
  assert.equal(body.text, 'Hello world');
  assert.equal(body.usage.completion_tokens, 4);
  assert.equal(
    (await verifyEnvelope(body.metering, { me: routerPubkey, kinds: [KIND.meteringRecord] })).ok,
    true,
  );
});

test('overload: with 2 slots and a queue of 2, the fifth simultaneous request gets 429 with Retry-After', async () => {
  const responses = await Promise.all(
    Array.from({ length: 5 }, () =>
      postInfer(node.url, signedRequest(node.pubkey, inferenceRequest({ stream: false }))),
    ),
  );
  const statuses = responses.map((r) => r.status).sort();
  assert.deepEqual(statuses, [200, 200, 200, 200, 429]);
  const refused = responses.find((r) => r.status === 429)!;
  assert.ok(Number(refused.headers.get('retry-after')) >= 1);
  assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'OVERLOADED');
  await Promise.all(responses.map((r) => r.text().catch(() => '')));
  assert.equal(node.admission.inFlight, 0);
  assert.equal((await fetch(`${node.url}/health`)).status, 200, 'still serving');
});

test('rejections carry stable reason codes', async () => {
  const other = generateSecretKey();
  const good = inferenceRequest();
  const replayed = signedRequest(node.pubkey, inferenceRequest({ stream: false }));
  assert.equal((await postInfer(node.url, replayed)).status, 200);
  const cases: [string, unknown, number, string][] = [
    ['garbage', '{not json', 400, 'BAD_JSON'],
    ['unsigned', { ...signedRequest(node.pubkey, good), sig: undefined }, 400, 'BAD_SHAPE'],
    ['wrong audience', signedRequest(routerPubkey, inferenceRequest()), 401, 'WRONG_AUDIENCE'],
    ['replayed', replayed, 409, 'REPLAYED'],
    [
      'expired',
      signedRequest(node.pubkey, inferenceRequest(), routerKey, {
        nowS: Math.floor(Date.now() / 1000) - 30,
        expiresInS: 10,
      }),
      401,
      'EXPIRED',
    ],
    [
      'unknown model',
      signedRequest(node.pubkey, inferenceRequest({ model: 'nope' })),
      404,
      'MODEL_NOT_FOUND',
    ],
    ['router not allowed', signedRequest(node.pubkey, inferenceRequest(), other), 403, 'ROUTER_NOT_ALLOWED'],
    [
      'oversize',
      signedRequest(
        node.pubkey,
        inferenceRequest({
          messages: [
            { role: 'user', content: 'x'.repeat(190_000) },
            { role: 'user', content: 'y'.repeat(190_000) },
            { role: 'user', content: 'z'.repeat(190_000) },
          ],
        }),
      ),
      413,
      'BODY_TOO_LARGE',
    ],
    [
      'other kind',
      createEnvelope(
        KIND.nodeHeartbeat,
        { free_slots: 1, queue_depth: 0, models_loaded: [], ready: true },
        { audience: node.pubkey },
        routerKey,
      ),
      400,
      'UNKNOWN_KIND',
    ],
  ];
  for (const [name, body, status, code] of cases) {
    const response = await postInfer(node.url, body);
    assert.equal(response.status, status, name);
    assert.equal(((await response.json()) as { error: { code: string } }).error.code, code, name);
  }
});

test('a client abort mid-stream frees the slot', async () => {
  const abort = new AbortController();
  const response = await postInfer(node.url, signedRequest(node.pubkey, inferenceRequest()), abort.signal);
  const reader = response.body!.getReader();
  await reader.read(); // first delta arrived
  assert.equal(node.admission.inFlight, 1);
  abort.abort();
  for (let i = 0; i < 500 && node.admission.inFlight > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(node.admission.inFlight, 0);
  assert.equal(runner.active, 0, 'the generation stopped');
  const next = await postInfer(node.url, signedRequest(node.pubkey, inferenceRequest({ stream: false })));
  assert.equal(next.status, 200);
});

test('/ready, /v1/info and /metrics', async () => {
  assert.equal((await fetch(`${node.url}/ready`)).status, 200);
  const info = (await (await fetch(`${node.url}/v1/info`)).json()) as {
    pubkey: string;
    models: { id: string }[];
  };
  assert.equal(info.pubkey, node.pubkey);
  assert.deepEqual(
    info.models.map((m) => m.id),
    ['double-model'],
  );
  const metrics = await (await fetch(`${node.url}/metrics`)).text();
  assert.match(metrics, /fedai_node_requests_total\{outcome="ok",service="node"\} \d+/);
  assert.match(metrics, /fedai_node_errors_total\{code="OVERLOADED",service="node"\} 1/);
  assert.match(metrics, /fedai_node_ttft_seconds_bucket/);
});

/** The same hex string with its last digit changed. */
function flipLast(hex: string): string {
  return hex.slice(0, -1) + (hex.endsWith('0') ? '1' : '0');
}
