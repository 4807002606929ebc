// The offloading side against a lying peer: a real HTTP server on 127.0.0.1 stands in for the
// peer router's offload route (a test double speaking our own protocol) and answers each attempt
// with one forgery. `offloadOnce` must refuse every one before anyone pays or answers, and say
// whether the next bid may still be tried (only before the first token).
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { after, before, test } from 'node:test';
import {
  type Bid,
  costMsat,
  createEnvelope,
  generateSecretKey,
  initCrypto,
  KIND,
  type MeteringRecord,
  outputSha256,
  promptSha256,
  publicKeyOf,
} from '@fed-ai/protocol';
import { OffloadError, offloadOnce } from '../src/federation/offload-client';

const me = generateSecretKey();
const mePub = publicKeyOf(me);
const peer = generateSecretKey();
const peerPub = publicKeyOf(peer);
const node = generateSecretKey();
const nodePub = publicKeyOf(node);
const stranger = generateSecretKey();
const messages = [{ role: 'user' as const, content: 'hello peer' }];
const TEXT = 'Hi there!';
const JOB = 'rq-offload-client-0001';
const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };

type Scenario = (job: string) => { status?: number; events: unknown[] };
let scenario: Scenario;
let server: Server;
let url = '';

function record(overrides: Partial<MeteringRecord> = {}): MeteringRecord {
  const base: MeteringRecord = {
    request_id: 'rq-peer-own-id-0001',
    router: peerPub,
    model: 'm',
    prompt_sha256: promptSha256(messages),
    output_sha256: outputSha256(TEXT),
    tokens_in: 20,
    tokens_out: 3,
    ttft_ms: 1,
    wall_ms: 2,
    price,
    cost_msat: costMsat(20, 3, price),
    finish_reason: 'stop',
    count_source: 'upstream_usage',
  };
  const merged = { ...base, ...overrides };
  if (!('cost_msat' in overrides))
    merged.cost_msat = costMsat(merged.tokens_in, merged.tokens_out, merged.price);
  return merged;
}

function result(
  job: string,
  options: {
    rec?: MeteringRecord;
    signer?: Uint8Array;
    nodeKey?: Uint8Array;
    meteringTo?: string;
    cost?: number;
    to?: string;
  } = {},
) {
  const rec = options.rec ?? record();
  const metering = createEnvelope(
    KIND.meteringRecord,
    rec,
    { audience: options.meteringTo ?? peerPub },
    options.nodeKey ?? node,
  );
  return createEnvelope(
    KIND.offloadResult,
    {
      job_id: job,
      model: rec.model,
      node: nodePub,
      cost_msat: options.cost ?? rec.cost_msat,
      finish_reason: rec.finish_reason,
      metering: JSON.stringify(metering),
    },
    { audience: options.to ?? mePub, expiresInS: 0 },
    options.signer ?? peer,
  );
}

const deltas = (text = TEXT) =>
  ['Hi', ' there', '!'].join('') === text
    ? ['Hi', ' there', '!'].map((delta, index) => ({ type: 'delta', index, delta }))
    : [{ type: 'delta', index: 0, delta: text }];

const bid: Bid = {
  rfb_id: 'rfb-offload-client-01',
  bid_id: 'bid-offload-client-01',
  price,
  max_cost_msat: costMsat(1000, 8, price),
  max_tokens: 8,
  context_window: 4096,
  free_slots: 1,
  ttft_ms_estimate: 10,
  tokens_per_s_estimate: 100,
  endpoint: '',
  expires_at: Math.floor(Date.now() / 1000) + 60,
};

before(async () => {
  await initCrypto();
  server = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      const job = (JSON.parse(JSON.parse(body).content) as { job_id: string }).job_id;
      const answer = scenario(job);
      if (answer.status && answer.status !== 200) {
        res.writeHead(answer.status, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: { code: 'OVERLOADED', message: 'busy' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (const e of answer.events) res.write(`data: ${JSON.stringify(e)}\n\n`);
      res.end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as { port: number }).port}/v1/federation/offload`;
  bid.endpoint = url;
});

after(() => new Promise<void>((r) => server.close(() => r())));

const attempt = () =>
  offloadOnce(
    { secretKey: me, pubkey: mePub },
    {
      jobId: JOB,
      rfbId: bid.rfb_id,
      peer: peerPub,
      bid,
      params: { model: 'm', messages, max_tokens: 8 },
      signal: new AbortController().signal,
      timeouts: { firstTokenMs: 5_000, totalMs: 10_000 },
    },
  );

test('an honest peer: deltas and a result whose metering verifies', async () => {
  scenario = (job) => ({ events: [...deltas(), { type: 'done', result: result(job) }] });
  const served = await attempt();
  assert.equal(served.text, TEXT);
  assert.equal(served.record.cost_msat, costMsat(20, 3, price));
  assert.equal(served.node, nodePub);
});

test('every forgery is refused after the tokens (no fallback) and nothing is returned to pay on', async () => {
  const forgeries: [string, Scenario][] = [
    [
      'result signed by another key',
      (job) => ({ events: [...deltas(), { type: 'done', result: result(job, { signer: stranger }) }] }),
    ],
    [
      'result for another job',
      () => ({ events: [...deltas(), { type: 'done', result: result('rq-some-other-job-01') }] }),
    ],
    [
      'result addressed to another router',
      (job) => ({
        events: [...deltas(), { type: 'done', result: result(job, { to: publicKeyOf(stranger) }) }],
      }),
    ],
    [
      'metering signed by another key than the named node',
      (job) => ({ events: [...deltas(), { type: 'done', result: result(job, { nodeKey: stranger }) }] }),
    ],
    [
      'metering addressed to another router',
      (job) => ({
        events: [...deltas(), { type: 'done', result: result(job, { meteringTo: publicKeyOf(stranger) }) }],
      }),
    ],
    [
      'metering for another router',
      (job) => ({
        events: [
          ...deltas(),
          { type: 'done', result: result(job, { rec: record({ router: publicKeyOf(stranger) }) }) },
        ],
      }),
    ],
    [
      'another prompt',
      (job) => ({
        events: [
          ...deltas(),
          { type: 'done', result: result(job, { rec: record({ prompt_sha256: outputSha256('other') }) }) },
        ],
      }),
    ],
    [
      'text that is not what was streamed',
      (job) => ({ events: [...deltas('Hi there?'), { type: 'done', result: result(job) }] }),
    ],
    [
      'cost that is not price x tokens',
      (job) => ({
        events: [...deltas(), { type: 'done', result: result(job, { rec: record({ cost_msat: 1 }) }) }],
      }),
    ],
    [
      'receipt cost unlike the metered cost',
      (job) => ({ events: [...deltas(), { type: 'done', result: result(job, { cost: 1 }) }] }),
    ],
    [
      'metered price over the bid',
      (job) => ({
        events: [
          ...deltas(),
          {
            type: 'done',
            result: result(job, {
              rec: record({ price: { input_msat_per_1k: 1001, output_msat_per_1k: 2000 } }),
            }),
          },
        ],
      }),
    ],
    [
      'more output tokens than the bid',
      (job) => ({
        events: [...deltas(), { type: 'done', result: result(job, { rec: record({ tokens_out: 9 }) }) }],
      }),
    ],
    [
      'cost over the bid bound',
      (job) => ({
        events: [...deltas(), { type: 'done', result: result(job, { rec: record({ tokens_in: 2000 }) }) }],
      }),
    ],
    [
      'a skipped delta',
      (job) => ({
        events: [
          { type: 'delta', index: 1, delta: TEXT },
          { type: 'done', result: result(job) },
        ],
      }),
    ],
    ['no result at all', () => ({ events: deltas() })],
  ];
  for (const [name, forged] of forgeries) {
    scenario = forged;
    await assert.rejects(
      attempt(),
      (error: unknown) => {
        assert.ok(error instanceof OffloadError, name);
        assert.equal(error.code, 'PEER_FAILED', name);
        return true;
      },
      name,
    );
  }
});

test('a refusal or an empty stream before the first token may go to the next bid', async () => {
  scenario = () => ({ status: 429, events: [] });
  await assert.rejects(
    attempt(),
    (e: unknown) => e instanceof OffloadError && e.beforeFirstToken && e.code === 'OVERLOADED',
  );
  scenario = () => ({ events: [] });
  await assert.rejects(attempt(), (e: unknown) => e instanceof OffloadError && e.beforeFirstToken);
  scenario = () => ({ events: [...deltas()] });
  await assert.rejects(attempt(), (e: unknown) => e instanceof OffloadError && !e.beforeFirstToken);
});
