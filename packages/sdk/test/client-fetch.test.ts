// The SDK over fetch: streams are read with the one shared SSE reader (byte-safe: a character cut
// across chunks, CRLF, `data:` without a space), answers are parsed with zod, and every call is
// bounded by its deadline, the caller's signal and close(). The router here is a fetch stub.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  costMsat,
  createEnvelope,
  generateSecretKey,
  KIND,
  type MeteringRecord,
  outputSha256,
  promptSha256,
  publicKeyOf,
} from '@fed-ai/protocol';
import { type ChatResult, FedAiClient, type FedAiSdkError, readSseData } from '../src/index';

const encoder = new TextEncoder();

/** Cuts text into byte chunks at the given offsets (possibly inside a character). */
function cut(text: string, offsets: number[]): Uint8Array[] {
  const bytes = encoder.encode(text);
  const points = [0, ...offsets, bytes.length];
  return points.slice(1).map((end, i) => bytes.slice(points[i], end));
}

async function* iterate(chunks: (Uint8Array | string)[]) {
  for (const chunk of chunks) yield chunk;
}

async function collect(source: AsyncIterable<string>): Promise<string[]> {
  const out: string[] = [];
  for await (const item of source) out.push(item);
  return out;
}

function streamOf(chunks: Uint8Array[], hold = false): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>({
    start(controller) {
      for (const chunk of chunks) controller.enqueue(chunk);
      if (!hold) controller.close();
    },
  });
}

test('readSseData: a character split across chunks, CRLF endings and `data:` without a space all parse', async () => {
  const text = 'data: é⚡\r\n\r\ndata:no-space\r\n\r\ndata: two\ndata: lines\n\n: comment\rdata: cr\r\r';
  const bytes = encoder.encode(text);
  // Every cut point, including each one inside "é" (2 bytes) and "⚡" (3 bytes).
  for (let at = 1; at < bytes.length; at += 1) {
    const events = await collect(readSseData(iterate(cut(text, [at]))));
    assert.deepEqual(events, ['é⚡', 'no-space', 'two\nlines', 'cr'], `cut at byte ${at}`);
  }
  // One byte per chunk.
  const bytewise = [...bytes].map((b) => Uint8Array.of(b));
  assert.deepEqual(await collect(readSseData(iterate(bytewise))), ['é⚡', 'no-space', 'two\nlines', 'cr']);
});

test('readSseData: an event over the bound ends the read with SseError', async () => {
  await assert.rejects(
    collect(readSseData(iterate([`data: ${'x'.repeat(500)}`]), { maxEventBytes: 100 })),
    (error: Error) => error.name === 'SseError' && /too large/.test(error.message),
  );
});

// --- a stub router ----------------------------------------------------------------------------

const nodeKey = generateSecretKey();
const node = publicKeyOf(nodeKey);
const routerKey = generateSecretKey();
const router = publicKeyOf(routerKey);
const messages = [{ role: 'user' as const, content: 'Grüß dich' }];
const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };

function receiptFor(text: string, audience = router) {
  const record: MeteringRecord = {
    request_id: 'rq-dispatch-0001',
    router,
    model: 'm',
    prompt_sha256: promptSha256(messages),
    output_sha256: outputSha256(text),
    tokens_in: 9,
    tokens_out: 3,
    ttft_ms: 1,
    wall_ms: 2,
    price,
    cost_msat: costMsat(9, 3, price),
    finish_reason: 'stop',
    count_source: 'tokenizer',
  };
  return { record, envelope: createEnvelope(KIND.meteringRecord, record, { audience }, nodeKey) };
}

type Handler = (url: string, init: RequestInit) => Response | Promise<Response>;

function stubFetch(handler: Handler) {
  const calls: string[] = [];
  const fetch = async (url: string, init: RequestInit) => {
    calls.push(`${init.method} ${new URL(url).pathname}`);
    return handler(url, init);
  };
  return { calls, fetch };
}

test('native stream over fetch: deltas cut inside characters, CRLF, router-signed answer, node receipt', async () => {
  let client: FedAiClient | undefined;
  const { calls, fetch } = stubFetch(async (url, init) => {
    if (url.endsWith('/v1/router')) return Response.json({ pubkey: router, name: 'r', version: '1' });
    const request = JSON.parse(String(init.body)) as { pubkey: string; content: string };
    const { request_id: requestId } = JSON.parse(request.content) as { request_id: string };
    const text = 'Grüße ⚡';
    const { envelope: receipt } = receiptFor(text);
    const answer = createEnvelope(
      KIND.inferenceResponse,
      {
        request_id: requestId,
        model: 'm',
        node,
        text,
        finish_reason: 'stop',
        usage: { prompt_tokens: 9, completion_tokens: 3, total_tokens: 12 },
        cost_msat: costMsat(9, 3, price),
        receipt: JSON.stringify(receipt),
      },
      { audience: request.pubkey, refs: [requestId] },
      routerKey,
    );
    const sse =
      'data: {"type":"delta","index":0,"delta":"Grüß"}\r\n\r\n' +
      'data:{"type":"delta","index":1,"delta":"e ⚡"}\r\n\r\n' +
      `data: ${JSON.stringify({ type: 'done', response: answer })}\r\n\r\n`;
    const bytes = encoder.encode(sse);
    const inU = bytes.indexOf(0xbc); // second byte of "ü"
    const inBolt = bytes.indexOf(0x9a); // last byte of "⚡"
    return new Response(streamOf(cut(sse, [inU, inBolt, inBolt + 1])), { status: 200 });
  });
  client = new FedAiClient({ routerUrl: 'http://router.test/', secretKey: generateSecretKey(), fetch });
  const deltas: string[] = [];
  let result: ChatResult | undefined;
  for await (const event of client.chatStream({ model: 'm', messages })) {
    if (event.type === 'delta') deltas.push(event.text);
    else result = event.result;
  }
  assert.deepEqual(deltas, ['Grüß', 'e ⚡']);
  assert.equal(result?.text, 'Grüße ⚡');
  assert.equal(result?.node, node);
  assert.equal(result?.dispatchId, 'rq-dispatch-0001');
  assert.equal(result?.costMsat, costMsat(9, 3, price));
  assert.deepEqual(calls, ['GET /v1/router', 'POST /infer/stream']);
  await client.close();
});

test('OpenAI route over fetch: the receipt header is read when the body has none; bad answers are BAD_SHAPE', async () => {
  const text = 'Grüße';
  const { envelope } = receiptFor(text);
  let mode: 'good' | 'not-json' | 'wrong-type' = 'good';
  const { fetch } = stubFetch(() => {
    if (mode === 'not-json') return new Response('<html>', { status: 200 });
    if (mode === 'wrong-type')
      return Response.json({ id: 'c', model: 'm', choices: [{ message: { content: 5 } }] });
    return new Response(
      JSON.stringify({
        id: 'c',
        model: 'm',
        choices: [{ message: { content: text }, finish_reason: 'stop' }],
      }),
      {
        status: 200,
        headers: {
          'content-type': 'application/json',
          'x-fedai-receipt': Buffer.from(JSON.stringify(envelope)).toString('base64url'),
        },
      },
    );
  });
  const client = new FedAiClient({ routerUrl: 'http://router.test', apiKey: 'k', fetch, maxAttempts: 1 });
  const result = await client.chat({ model: 'm', messages });
  assert.equal(result.text, text);
  assert.equal(result.receipt.id, envelope.id);
  assert.equal(result.node, node);
  assert.equal(result.usage.total_tokens, 12, 'usage from the receipt when the body has none');
  for (const broken of ['not-json', 'wrong-type'] as const) {
    mode = broken;
    await assert.rejects(client.chat({ model: 'm', messages }), (e: FedAiSdkError) => e.code === 'BAD_SHAPE');
  }
});

test('errors over fetch: reason code and Retry-After from Headers; no retry after output', async () => {
  let calls = 0;
  const { fetch } = stubFetch(() => {
    calls += 1;
    return new Response(JSON.stringify({ error: { code: 'INSUFFICIENT_BALANCE', message: 'pay' } }), {
      status: 402,
      headers: { 'retry-after': '3' },
    });
  });
  const client = new FedAiClient({ routerUrl: 'http://router.test', apiKey: 'k', fetch, maxAttempts: 3 });
  await assert.rejects(client.chat({ model: 'm', messages }), (e: FedAiSdkError) => {
    assert.equal(e.code, 'INSUFFICIENT_BALANCE');
    assert.equal(e.status, 402);
    assert.equal(e.retryAfterMs, 3000);
    return true;
  });
  assert.equal(calls, 1, 'a 402 is not retried');
});

test('a stalled stream ends with NETWORK after timeoutMs; the caller signal and close() end it with CANCELLED', async () => {
  const opened: ReadableStream<Uint8Array>[] = [];
  const { fetch } = stubFetch((_url, init) => {
    // Sends one delta, then nothing: the stream stays open until aborted.
    // As fetch does, an abort errors the body.
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(encoder.encode('data: {"choices":[{"delta":{"content":"a"}}]}\n\n'));
        init.signal?.addEventListener('abort', () => controller.error(init.signal?.reason), { once: true });
      },
    });
    opened.push(body);
    return new Response(body, { status: 200 });
  });
  const read = async (client: FedAiClient, signal?: AbortSignal, afterFirst?: () => void) => {
    const seen: string[] = [];
    try {
      for await (const event of client.chatStream({ model: 'm', messages, ...(signal ? { signal } : {}) })) {
        if (event.type === 'delta') seen.push(event.text);
        afterFirst?.();
      }
      return { seen, error: undefined };
    } catch (error) {
      return { seen, error: error as FedAiSdkError };
    }
  };

  const timed = new FedAiClient({ routerUrl: 'http://router.test', apiKey: 'k', fetch, timeoutMs: 50 });
  const timedOut = await read(timed);
  assert.deepEqual(timedOut.seen, ['a']);
  assert.equal(timedOut.error?.code, 'NETWORK');
  assert.match(timedOut.error?.message ?? '', /within 50 ms/);

  const controller = new AbortController();
  const patient = new FedAiClient({ routerUrl: 'http://router.test', apiKey: 'k', fetch, timeoutMs: 60_000 });
  const aborted = await read(patient, controller.signal, () => controller.abort());
  assert.equal(aborted.error?.code, 'CANCELLED');

  const closed = await read(patient, undefined, () => void patient.close());
  assert.equal(closed.error?.code, 'CANCELLED');
  assert.equal(opened.length, 3, 'no retry once output was delivered');
});
