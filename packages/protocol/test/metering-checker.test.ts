// The one metering-record checker: one case per field, each refused with its own code, plus the
// prompt-token bound the reservation rests on.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  type ChatMessage,
  checkMeteringRecord,
  costMsat,
  DEFAULT_PROMPT_OVERHEAD,
  type MeteringExpectations,
  type MeteringRecord,
  outputSha256,
  promptOverheadOf,
  promptSha256,
  promptTokensBound,
  textTokensBound,
} from '../src/index';

const NODE = 'a'.repeat(64);
const ROUTER = 'b'.repeat(64);
const messages: ChatMessage[] = [{ role: 'user', content: 'hello there' }];
const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };

const record = (over: Partial<MeteringRecord> = {}): MeteringRecord => {
  const base: MeteringRecord = {
    request_id: 'rq-1234567890',
    router: ROUTER,
    model: 'm',
    prompt_sha256: promptSha256(messages),
    output_sha256: outputSha256('out'),
    tokens_in: 10,
    tokens_out: 5,
    ttft_ms: 1,
    wall_ms: 2,
    price,
    cost_msat: costMsat(10, 5, price),
    finish_reason: 'stop',
    count_source: 'tokenizer',
  };
  return { ...base, ...over };
};

const expect: MeteringExpectations = {
  signer: NODE,
  requestId: 'rq-1234567890',
  router: ROUTER,
  model: 'm',
  messages,
  outputText: 'out',
  price,
  maxTokensOut: 5,
  maxTokensIn: 10,
  finishReason: 'stop',
  reservedMsat: costMsat(10, 5, price),
};

test('an honest record passes every check, at the exact bounds', () => {
  assert.deepEqual(checkMeteringRecord(record(), NODE, expect), { ok: true });
});

test('one case per field: each failure names its own code and only that code', () => {
  const cases: [string, MeteringRecord, string, string][] = [
    ['signer', record(), 'c'.repeat(64), 'METERING_SIGNER'],
    ['request id', record({ request_id: 'rq-other-000000' }), NODE, 'METERING_REQUEST_ID'],
    ['router', record({ router: 'c'.repeat(64) }), NODE, 'METERING_ROUTER'],
    ['model', record({ model: 'other' }), NODE, 'METERING_MODEL'],
    [
      'prompt hash',
      record({ prompt_sha256: promptSha256([{ role: 'user', content: 'x' }]) }),
      NODE,
      'METERING_PROMPT_HASH',
    ],
    ['output hash', record({ output_sha256: outputSha256('other') }), NODE, 'METERING_OUTPUT_HASH'],
    [
      'input price',
      record({
        price: { ...price, input_msat_per_1k: 999 },
        cost_msat: costMsat(10, 5, { ...price, input_msat_per_1k: 999 }),
      }),
      NODE,
      'METERING_PRICE',
    ],
    [
      'output price',
      record({
        price: { ...price, output_msat_per_1k: 1999 },
        cost_msat: costMsat(10, 5, { ...price, output_msat_per_1k: 1999 }),
      }),
      NODE,
      'METERING_PRICE',
    ],
    ['cost one msat high', record({ cost_msat: costMsat(10, 5, price) + 1 }), NODE, 'METERING_COST'],
    ['cost one msat low', record({ cost_msat: costMsat(10, 5, price) - 1 }), NODE, 'METERING_COST'],
    ['finish reason', record({ finish_reason: 'length' }), NODE, 'METERING_FINISH_REASON'],
  ];
  // Reservation headroom so that a one-msat-high cost is only a cost problem.
  const roomy = { ...expect, reservedMsat: 1_000_000 };
  for (const [what, r, signer, code] of cases) {
    assert.deepEqual(checkMeteringRecord(r, signer, roomy), { ok: false, problems: [code] }, what);
  }
});

test('token bounds and the reservation: one over fails, at the bound passes', () => {
  const over = (tokensIn: number, tokensOut: number) => {
    const r = record({
      tokens_in: tokensIn,
      tokens_out: tokensOut,
      cost_msat: costMsat(tokensIn, tokensOut, price),
    });
    return checkMeteringRecord(r, NODE, { ...expect, reservedMsat: undefined });
  };
  assert.deepEqual(over(11, 5), { ok: false, problems: ['METERING_TOKENS_IN'] });
  assert.deepEqual(over(10, 6), { ok: false, problems: ['METERING_TOKENS_OUT'] });
  const cheap = record({ tokens_in: 1, tokens_out: 1, cost_msat: costMsat(1, 1, price) });
  assert.deepEqual(checkMeteringRecord(cheap, NODE, { ...expect, reservedMsat: cheap.cost_msat }), {
    ok: true,
  });
  assert.deepEqual(checkMeteringRecord(cheap, NODE, { ...expect, reservedMsat: cheap.cost_msat - 1 }), {
    ok: false,
    problems: ['METERING_OVER_RESERVED'],
  });
});

test('expectations left out are not checked; cost is always checked', () => {
  const r = record({ request_id: 'rq-anything-00000', router: 'c'.repeat(64), model: 'x' });
  assert.deepEqual(checkMeteringRecord(r, 'd'.repeat(64), {}), { ok: true });
  assert.deepEqual(checkMeteringRecord(record({ cost_msat: 1 }), NODE, {}), {
    ok: false,
    problems: ['METERING_COST'],
  });
});

test('the prompt hash covers role, content and name', () => {
  const base = promptSha256([{ role: 'user', content: 'x' }]);
  assert.notEqual(promptSha256([{ role: 'user', content: 'x', name: 'n' }]), base);
  assert.notEqual(promptSha256([{ role: 'system', content: 'x' }]), base);
  assert.notEqual(promptSha256([{ role: 'user', content: 'y' }]), base);
  assert.equal(promptSha256([{ role: 'user', content: 'x' }]), base);
});

test('prompt bound: bytes, spaces as "▁", NFKC expansion and the dummy prefix are all counted', () => {
  assert.equal(textTokensBound(''), 0);
  assert.equal(textTokensBound('a'), 1 + 3);
  assert.equal(textTokensBound('a b'), 3 + 2 + 3, 'a space can become 3 byte tokens');
  assert.equal(textTokensBound('é'), 2 + 3);
  assert.equal(textTokensBound('漢'), 3 + 3);
  // U+FDFA expands under NFKC to 18 characters (33 bytes, 3 spaces).
  assert.equal(textTokensBound('\uFDFA'), 33 + 2 * 3 + 3);
  const overhead = { per_message_tokens: 7, fixed_tokens: 11 };
  assert.equal(
    promptTokensBound([{ role: 'user', content: 'ab', name: 'n' }], overhead),
    11 + (2 + 3) + (1 + 3) + 7,
  );
  assert.equal(
    promptTokensBound(messages),
    DEFAULT_PROMPT_OVERHEAD.fixed_tokens +
      textTokensBound('hello there') +
      DEFAULT_PROMPT_OVERHEAD.per_message_tokens,
  );
  assert.deepEqual(promptOverheadOf({}), DEFAULT_PROMPT_OVERHEAD);
  assert.deepEqual(promptOverheadOf({ prompt_overhead: overhead }), overhead);
});

test('property: the bound covers one token per UTF-8 byte of the text and of its NFKC form, and grows with the prompt', () => {
  const enc = new TextEncoder();
  fc.assert(
    fc.property(fc.string({ unit: 'grapheme', maxLength: 60 }), fc.string({ maxLength: 30 }), (a, b) => {
      assert.ok(textTokensBound(a) >= enc.encode(a).length);
      assert.ok(textTokensBound(a) >= enc.encode(a.normalize('NFKC')).length);
      const one = promptTokensBound([{ role: 'user', content: a }]);
      const two = promptTokensBound([
        { role: 'user', content: a },
        { role: 'user', content: b },
      ]);
      assert.ok(two > one);
    }),
    { seed: 7, numRuns: 500 },
  );
});
