// Attacks on `POST /v1/federation/offload` of one real router (free mode, a signing node double,
// federation on over a real relay, peers by allowlist). Real bids are obtained the way a peer gets
// them: an RFB signed by the peer key on the relay, the router's bid read back from it. Each attack
// gets its documented status and reason code, and no error body leaks a stack or an internal
// address; one valid job streams deltas and a signed kind-28121 result that verifies, and
// offloadOnce (the offloading side) accepts a served job end to end.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { readSseData, relaySocketClass } from '@fed-ai/kit';
import {
  type Bid,
  createEnvelope,
  type Envelope,
  encryptOffloadPayload,
  generateSecretKey,
  KIND,
  publicKeyOf,
  REASONS,
  type Rfb,
  verifyEnvelope,
} from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import type { Event } from 'nostr-tools';
import { SimplePool, useWebSocketImplementation } from 'nostr-tools/pool';
import pino from 'pino';
import { routerConfigSchema } from '../src/config';
import { offloadOnce } from '../src/federation/offload-client';
import { type RunningRouter, startRouter } from '../src/router';
import { SigningNodeDouble } from './signing-node-double';

useWebSocketImplementation(relaySocketClass(1024 * 1024));

const MODEL = 'double-model';
const peerKey = generateSecretKey();
const peer = publicKeyOf(peerKey);
const otherPeerKey = generateSecretKey();
const otherPeer = publicKeyOf(otherPeerKey);
const strangerKey = generateSecretKey();

let dir: string;
let relay: RunningRelay;
let router: RunningRouter;
let offloadUrl: string;
const node = new SigningNodeDouble();
const pool = new SimplePool();
let bidSub: { close(): void } | undefined;
/** Bids addressed to our peers, by the RFB event they answer. */
const bidsByRfbEvent = new Map<string, Bid>();

async function until<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 10_000,
) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fedai-offload-attacks-'));
  relay = await startRelay({
    port: 0,
    logger: pino({ level: 'silent' }) as unknown as NonNullable<Parameters<typeof startRelay>[0]>['logger'],
  });
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: dir,
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      PROBE_INTERVAL_S: '0',
      FEDERATION_RELAYS: relay.url,
      FEDERATION_PEER_MODE: 'allowlist',
      FEDERATION_ALLOWLIST: [peer, otherPeer].join(','),
    }),
  );
  offloadUrl = `${router.url}/v1/federation/offload`;
  await node.start();
  assert.equal((await node.register(router.url, router.pubkey)).status, 200);
  bidSub = pool.subscribeMany(
    [relay.url],
    { kinds: [KIND.bid], authors: [router.pubkey], '#p': [peer, otherPeer] },
    {
      onevent: (event) => {
        const ref = event.tags.find((t) => t[0] === 'e')?.[1];
        if (ref) bidsByRfbEvent.set(ref, JSON.parse(event.content) as Bid);
      },
    },
  );
  await until('router on the relay', async () => {
    const body = (await (await fetch(`${router.url}/v1/federation/peers`)).json()) as { relays: string[] };
    return body.relays.length > 0;
  });
});

after(async () => {
  bidSub?.close();
  pool.destroy();
  await router?.close();
  await node.stop();
  await relay?.close();
  rmSync(dir, { recursive: true, force: true });
});

let rfbCounter = 0;

/**
 * A real bid from the router for an RFB signed by `key`. RFBs are ephemeral on the relay, so one
 * published before the router's subscription is open is lost: ask again (bounded) until a bid comes.
 */
async function getBid(key: Uint8Array, over: Partial<Rfb> = {}): Promise<{ rfb: Rfb; bid: Bid }> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const rfb: Rfb = {
      rfb_id: `rfb-attack-${rfbCounter++}`,
      model: MODEL,
      prompt_tokens: 50,
      messages: 1,
      max_tokens: 8,
      deadline_ms: 2000,
      ...over,
    };
    const event = createEnvelope(KIND.rfb, rfb, { expiresInS: 30 }, key);
    await Promise.any(pool.publish([relay.url], event as Event));
    const deadline = Date.now() + 1000;
    while (Date.now() < deadline) {
      const bid = bidsByRfbEvent.get(event.id);
      if (bid) return { rfb, bid };
      await new Promise((r) => setTimeout(r, 20));
    }
  }
  throw new Error('no bid from the router');
}

const params = (over: Record<string, unknown> = {}) => ({
  model: MODEL,
  messages: [{ role: 'user', content: 'hi there' }],
  max_tokens: 8,
  ...over,
});

let jobCounter = 0;

function job(
  key: Uint8Array,
  rfbId: string,
  bidId: string,
  request: unknown = params(),
  options: { audience?: string; encryptTo?: string } = {},
): Envelope {
  return createEnvelope(
    KIND.offloadJob,
    {
      job_id: `job-attack-${jobCounter++}`,
      bid_id: bidId,
      rfb_id: rfbId,
      chunks: encryptOffloadPayload(JSON.stringify(request), key, options.encryptTo ?? router.pubkey),
    },
    { audience: options.audience ?? router.pubkey },
    key,
  );
}

async function post(body: string | undefined, contentType = 'application/json') {
  const response = await fetch(offloadUrl, {
    method: 'POST',
    headers: body === undefined ? {} : { 'content-type': contentType },
    ...(body === undefined ? {} : { body }),
  });
  return { status: response.status, text: await response.text() };
}

/** The documented status and code, and nothing internal in the body. */
function assertRefused(answer: { status: number; text: string }, code: keyof typeof REASONS, what: string) {
  assert.equal(answer.status, REASONS[code].status, `${what}: ${answer.text}`);
  const body = JSON.parse(answer.text) as { error?: { code?: string } };
  assert.equal(body.error?.code, code, `${what}: ${answer.text}`);
  assertNoLeak(answer.text, what);
}

function assertNoLeak(text: string, what: string) {
  for (const leak of [/\bat .+:\d+:\d+/, /node_modules/, /\/work\//, /127\.0\.0\.1/, /localhost/, /Error:/]) {
    assert.doesNotMatch(text, leak, `${what} leaks ${leak}`);
  }
  assert.ok(!text.includes(new URL(node.url).host), `${what} leaks the node address`);
}

/** Reads a served job's stream: deltas in order, then the result event. */
async function readStream(response: Response) {
  assert.equal(response.status, 200);
  assert.match(response.headers.get('content-type') ?? '', /text\/event-stream/);
  const deltas: string[] = [];
  let result: unknown;
  for await (const data of readSseData(response.body as AsyncIterable<Uint8Array>)) {
    const event = JSON.parse(data) as { type: string; index?: number; delta?: string; result?: unknown };
    if (event.type === 'delta') {
      assert.equal(event.index, deltas.length);
      deltas.push(event.delta ?? '');
    } else if (event.type === 'done') result = event.result;
    else assert.fail(`unexpected event ${data}`);
  }
  return { deltas, result };
}

test('offload: a valid job streams deltas and a signed result; its replay is refused, its bid is used', async () => {
  const { rfb, bid } = await getBid(peerKey);
  assert.equal(bid.rfb_id, rfb.rfb_id);
  assert.equal(bid.endpoint, offloadUrl);
  const served = job(peerKey, rfb.rfb_id, bid.bid_id);
  const response = await fetch(offloadUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(served),
  });
  const { deltas, result } = await readStream(response);
  assert.equal(deltas.join(''), node.tokens.join(''));
  const verified = await verifyEnvelope(result, { me: peer, kinds: [KIND.offloadResult] });
  assert.ok(verified.ok, JSON.stringify(verified));
  assert.equal(verified.envelope.pubkey, router.pubkey);
  const receipt = verified.payload;
  assert.equal(receipt.job_id, JSON.parse(served.content).job_id);
  assert.equal(receipt.node, node.pubkey);
  assert.equal(receipt.model, MODEL);
  const metering = await verifyEnvelope(JSON.parse(receipt.metering), {
    me: router.pubkey,
    kinds: [KIND.meteringRecord],
  });
  assert.ok(metering.ok);
  assert.equal(metering.envelope.pubkey, node.pubkey);
  assert.equal(metering.payload.cost_msat, receipt.cost_msat);
  assert.ok(receipt.cost_msat <= bid.max_cost_msat);

  // The same envelope again.
  assertRefused(await post(JSON.stringify(served)), 'REPLAYED', 'replayed job');
  // A new job on the same bid: one job per bid.
  assertRefused(await post(JSON.stringify(job(peerKey, rfb.rfb_id, bid.bid_id))), 'BID_MISMATCH', 'used bid');
});

test('offload: offloadOnce (the offloading side) verifies a served job end to end', async () => {
  const { rfb, bid } = await getBid(peerKey);
  const texts: string[] = [];
  const served = await offloadOnce(
    { secretKey: peerKey, pubkey: peer },
    {
      jobId: `job-once-${jobCounter++}`,
      rfbId: rfb.rfb_id,
      peer: router.pubkey,
      bid,
      params: params() as Parameters<typeof offloadOnce>[1]['params'],
      signal: new AbortController().signal,
      onDelta: (t) => {
        texts.push(t);
      },
      timeouts: { firstTokenMs: 10_000, totalMs: 20_000 },
    },
  );
  assert.equal(served.text, node.tokens.join(''));
  assert.equal(texts.join(''), served.text);
  assert.equal(served.node, node.pubkey);
  assert.equal(served.result.pubkey, router.pubkey);
});

test('offload: malformed and misaddressed envelopes get their envelope reason', async () => {
  // No body at all reads as the JSON null: not an event.
  assertRefused(await post(undefined), 'BAD_SHAPE', 'no body');
  assertRefused(await post(''), 'BAD_JSON', 'empty JSON body');
  assertRefused(await post('{"kind": 28120, '), 'BAD_JSON', 'bad JSON');
  assertRefused(await post('[1,2,3]'), 'BAD_SHAPE', 'not an event');
  assertRefused(await post('{"x":1}', 'application/octet-stream'), 'UNSUPPORTED_MEDIA_TYPE', 'not JSON');

  const rfbEvent = createEnvelope(
    KIND.rfb,
    { rfb_id: 'rfb-kind-1', model: MODEL, prompt_tokens: 1, messages: 1, max_tokens: 1, deadline_ms: 100 },
    { audience: router.pubkey },
    peerKey,
  );
  assertRefused(await post(JSON.stringify(rfbEvent)), 'UNKNOWN_KIND', 'wrong kind');
  assertRefused(
    await post(JSON.stringify(job(peerKey, 'rfb-xxxxxx', 'bid-xxxxxx', params(), { audience: otherPeer }))),
    'WRONG_AUDIENCE',
    'wrong audience',
  );
  const genuine = job(peerKey, 'rfb-xxxxxx', 'bid-xxxxxx');
  const flip = genuine.sig[0] === 'a' ? 'b' : 'a';
  assertRefused(
    await post(JSON.stringify({ ...genuine, sig: flip + genuine.sig.slice(1) })),
    'BAD_SIGNATURE',
    'forged signature',
  );
  assertRefused(
    await post(JSON.stringify({ ...genuine, content: genuine.content.replace('bid-xxxxxx', 'bid-yyyyyy') })),
    'BAD_ID',
    'content changed after signing',
  );
  // Signed by a key that is no peer of this router (valid bid ids do not matter).
  assertRefused(
    await post(JSON.stringify(job(strangerKey, 'rfb-xxxxxx', 'bid-xxxxxx'))),
    'FORBIDDEN',
    'non-allowlisted key',
  );
  // Over the body limit (6 MB): refused before it is parsed.
  assertRefused(
    await post(JSON.stringify({ ...genuine, content: 'x'.repeat(7 * 1024 * 1024) })),
    'BODY_TOO_LARGE',
    'oversized body',
  );
});

test('offload: bids — unknown, another peer’s, another RFB — are refused BID_MISMATCH', async () => {
  assertRefused(
    await post(JSON.stringify(job(peerKey, 'rfb-none', 'bid-none'))),
    'BID_MISMATCH',
    'unknown bid',
  );
  const { rfb, bid } = await getBid(peerKey);
  // Another allowlisted peer cannot claim a bid made to this one (and the claim does not use it up).
  assertRefused(
    await post(JSON.stringify(job(otherPeerKey, rfb.rfb_id, bid.bid_id))),
    'BID_MISMATCH',
    "another peer's bid",
  );
  // The bid's own peer, naming another RFB.
  assertRefused(
    await post(JSON.stringify(job(peerKey, 'rfb-another', bid.bid_id))),
    'BID_MISMATCH',
    'another RFB',
  );
});

test('offload: jobs larger than their bid are BID_MISMATCH; chunks for another key BAD_PAYLOAD', async () => {
  const cases: { what: string; request: unknown; code: keyof typeof REASONS; encryptTo?: string }[] = [
    { what: 'another model', request: params({ model: 'other-model' }), code: 'BID_MISMATCH' },
    {
      what: 'a prompt larger than the RFB said',
      request: params({ messages: [{ role: 'user', content: 'word '.repeat(200) }] }),
      code: 'BID_MISMATCH',
    },
    {
      what: 'more messages than the RFB said',
      request: params({
        messages: [
          { role: 'user', content: 'a' },
          { role: 'user', content: 'b' },
        ],
      }),
      code: 'BID_MISMATCH',
    },
    { what: 'max_tokens over the bid', request: params({ max_tokens: 9 }), code: 'BID_MISMATCH' },
    { what: 'chunks for another key', request: params(), code: 'BAD_PAYLOAD', encryptTo: otherPeer },
    { what: 'not an inference request', request: { hello: 'world' }, code: 'BAD_PAYLOAD' },
  ];
  const before = node.requests;
  for (const c of cases) {
    const { rfb, bid } = await getBid(peerKey);
    assert.equal(bid.max_tokens, 8);
    const body = JSON.stringify(
      job(peerKey, rfb.rfb_id, bid.bid_id, c.request, c.encryptTo ? { encryptTo: c.encryptTo } : {}),
    );
    assertRefused(await post(body), c.code, c.what);
  }
  assert.equal(node.requests, before, 'no refused job reached a node');
});
