import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  costMsat,
  createEnvelope,
  generateSecretKey,
  KIND,
  outputSha256,
  promptSha256,
  publicKeyOf,
} from '@fed-ai/protocol';
import { FedAiSdkError, isRetryable, parseReceipt, readSse, verifyReceipt } from '../src/index';

async function* chunks(parts: string[]) {
  for (const part of parts) yield new TextEncoder().encode(part);
}

test('readSse yields events as their blank line arrives, across chunk boundaries, skipping comments', async () => {
  const out: string[] = [];
  for await (const data of readSse(
    chunks(['data: {"a"', ':1}\n\n: comment\n', 'data: two\r\n\r\ndata: [DONE]\n\n']),
    1024,
  )) {
    out.push(data);
  }
  assert.deepEqual(out, ['{"a":1}', 'two', '[DONE]']);
  await assert.rejects(async () => {
    for await (const _ of readSse(chunks(['data: '.padEnd(2000, 'x')]), 100)) {
      // consume
    }
  }, /too large/);
});

test('verifyReceipt checks signature, output and prompt hashes, and cost; as of signing time', async () => {
  const nodeKey = generateSecretKey();
  const router = publicKeyOf(generateSecretKey());
  const messages = [{ role: 'user' as const, content: 'hi' }];
  const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
  const receipt = createEnvelope(
    KIND.meteringRecord,
    {
      request_id: 'req-abcdefgh',
      router,
      model: 'm',
      prompt_sha256: promptSha256(messages),
      output_sha256: outputSha256('hello'),
      tokens_in: 10,
      tokens_out: 5,
      ttft_ms: 1,
      wall_ms: 2,
      price,
      cost_msat: costMsat(10, 5, price),
      finish_reason: 'stop',
      count_source: 'tokenizer',
    },
    { audience: router, nowS: 1_000_000 }, // long ago: still valid evidence
    nodeKey,
  );
  const good = await verifyReceipt(receipt, { node: publicKeyOf(nodeKey), router, text: 'hello', messages });
  assert.equal(good.ok, true);
  assert.deepEqual(await verifyReceipt(receipt, { text: 'hellO' }), {
    ok: false,
    reason: 'METERING_OUTPUT_HASH',
    problems: ['METERING_OUTPUT_HASH'],
  });
  assert.deepEqual(await verifyReceipt(receipt, { messages: [{ role: 'user', content: 'x' }] }), {
    ok: false,
    reason: 'METERING_PROMPT_HASH',
    problems: ['METERING_PROMPT_HASH'],
  });
  assert.deepEqual(await verifyReceipt(receipt, { node: router }), {
    ok: false,
    reason: 'METERING_SIGNER',
    problems: ['METERING_SIGNER'],
  });
  const tampered = { ...receipt, content: receipt.content.replace('"tokens_out":5', '"tokens_out":4') };
  assert.deepEqual(await verifyReceipt(tampered), { ok: false, reason: 'BAD_ID' });
  const header = Buffer.from(JSON.stringify(receipt)).toString('base64url');
  assert.equal(parseReceipt(header).id, receipt.id);
});

test('errors: both error shapes parse to a reason code; retryable codes are classified', () => {
  const fedai = FedAiSdkError.fromResponse(
    429,
    JSON.stringify({ error: { code: 'OVERLOADED', message: 'busy', hint: 'wait' } }),
    { 'retry-after': '2' },
  );
  assert.equal(fedai.code, 'OVERLOADED');
  assert.equal(fedai.retryAfterMs, 2000);
  assert.equal(isRetryable(fedai), true);
  const openai = FedAiSdkError.fromResponse(
    402,
    JSON.stringify({ error: { message: 'pay', type: 'insufficient_quota', code: 'INSUFFICIENT_BALANCE' } }),
    {},
  );
  assert.equal(openai.code, 'INSUFFICIENT_BALANCE');
  assert.equal(isRetryable(openai), false);
  assert.equal(FedAiSdkError.fromResponse(500, 'not json', {}).code, 'UNKNOWN');
});
