// verifyReceipt checks the signature first, then every field through the protocol's one checker
// (checkMeteringRecord): one case per field the SDK can check, each refused with the checker's code.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type ChatMessage,
  checkMeteringRecord,
  costMsat,
  createEnvelope,
  generateSecretKey,
  KIND,
  type MeteringProblem,
  type MeteringRecord,
  outputSha256,
  promptSha256,
  publicKeyOf,
} from '@fed-ai/protocol';
import { type ReceiptCheck, verifyReceipt } from '../src/index';

const nodeKey = generateSecretKey();
const node = publicKeyOf(nodeKey);
const routerKey = generateSecretKey();
const router = publicKeyOf(routerKey);
const messages: ChatMessage[] = [{ role: 'user', content: 'Bonjour ⚡' }];
const text = 'Salut !';
const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };

function record(overrides: Partial<MeteringRecord> = {}): MeteringRecord {
  return {
    request_id: 'rq-receipt-0001',
    router,
    model: 'model-a',
    prompt_sha256: promptSha256(messages),
    output_sha256: outputSha256(text),
    tokens_in: 12,
    tokens_out: 7,
    ttft_ms: 3,
    wall_ms: 9,
    price,
    cost_msat: costMsat(12, 7, price),
    finish_reason: 'stop',
    count_source: 'tokenizer',
    ...overrides,
  };
}

const sign = (r: MeteringRecord, key = nodeKey) =>
  createEnvelope(KIND.meteringRecord, r, { audience: router, nowS: 1_700_000_000 }, key);

const everything: ReceiptCheck = {
  node,
  router,
  requestId: 'rq-receipt-0001',
  model: 'model-a',
  price,
  text,
  messages,
};

test('a receipt that matches everything the SDK knows is accepted, with its node and dispatch id', async () => {
  const verdict = await verifyReceipt(sign(record()), everything);
  assert.equal(verdict.ok, true);
  assert.equal(verdict.ok && verdict.node, node);
  assert.equal(verdict.ok && verdict.dispatchId, 'rq-receipt-0001');
  assert.equal(verdict.ok && verdict.record.cost_msat, costMsat(12, 7, price));
});

test('each field the SDK can check is refused with the checker code', async () => {
  const other = publicKeyOf(generateSecretKey());
  const cases: {
    field: string;
    receipt: ReturnType<typeof sign>;
    check: ReceiptCheck;
    code: MeteringProblem;
  }[] = [
    {
      field: 'signer',
      receipt: sign(record()),
      check: { ...everything, node: other },
      code: 'METERING_SIGNER',
    },
    {
      field: 'signer (signed by another key)',
      receipt: sign(record(), generateSecretKey()),
      check: everything,
      code: 'METERING_SIGNER',
    },
    {
      field: 'request id',
      receipt: sign(record()),
      check: { ...everything, requestId: 'rq-receipt-0002' },
      code: 'METERING_REQUEST_ID',
    },
    {
      field: 'router',
      receipt: sign(record({ router: other })),
      check: everything,
      code: 'METERING_ROUTER',
    },
    {
      field: 'model',
      receipt: sign(record()),
      check: { ...everything, model: 'model-b' },
      code: 'METERING_MODEL',
    },
    {
      field: 'prompt hash',
      receipt: sign(record()),
      check: { ...everything, messages: [{ role: 'user', content: 'Bonjour ⚡.' }] },
      code: 'METERING_PROMPT_HASH',
    },
    {
      field: 'output hash',
      receipt: sign(record()),
      check: { ...everything, text: 'Salut!' },
      code: 'METERING_OUTPUT_HASH',
    },
    {
      field: 'price',
      receipt: sign(record()),
      check: { ...everything, price: { ...price, output_msat_per_1k: 1999 } },
      code: 'METERING_PRICE',
    },
    {
      field: 'cost',
      receipt: sign(record({ cost_msat: costMsat(12, 7, price) + 1 })),
      check: everything,
      code: 'METERING_COST',
    },
  ];
  for (const { field, receipt, check, code } of cases) {
    const verdict = await verifyReceipt(receipt, check);
    assert.deepEqual(verdict, { ok: false, reason: code, problems: [code] }, field);
    // The same verdict the protocol's checker gives (the SDK has no checks of its own).
    const direct = checkMeteringRecord(JSON.parse(receipt.content), receipt.pubkey, {
      signer: check.node,
      requestId: check.requestId,
      router: check.router,
      model: check.model,
      price: check.price,
      outputText: check.text,
      messages: check.messages,
    });
    assert.deepEqual(direct, { ok: false, problems: [code] }, `${field} (checker)`);
  }
});

test('the signature is checked before any field; several bad fields are all reported', async () => {
  const receipt = sign(record());
  const forged = { ...receipt, sig: receipt.sig.replace(/^./, (c) => (c === '0' ? '1' : '0')) };
  // Wrong fields too, but the signature fails first.
  assert.deepEqual(await verifyReceipt(forged, { ...everything, model: 'model-b' }), {
    ok: false,
    reason: 'BAD_SIGNATURE',
  });
  assert.deepEqual(await verifyReceipt(JSON.stringify(receipt).slice(1), everything), {
    ok: false,
    reason: 'BAD_JSON',
  });
  assert.deepEqual(await verifyReceipt(sign(record()), { ...everything, model: 'model-b', text: 'x' }), {
    ok: false,
    reason: 'METERING_MODEL',
    problems: ['METERING_MODEL', 'METERING_OUTPUT_HASH'],
  });
  // Addressed to another router: the audience check refuses it before the record is read.
  assert.deepEqual(await verifyReceipt(receipt, { router: node }), { ok: false, reason: 'WRONG_AUDIENCE' });
});
