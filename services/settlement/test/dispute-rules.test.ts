// The dispute rules (dispute-rules.ts) as a table: one row per rule, with a charge built on a
// really node-signed record and really signed evidence, and the verdict and refund expected.
// Property tests: a refund never exceeds what is left of the charge, its split never exceeds
// either part, and the same input always gives the same decision.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  costMsat,
  createEnvelope,
  type Envelope,
  generateSecretKey,
  type InferenceResponse,
  KIND,
  type MeteringRecord,
  outputSha256,
  type Price,
  promptSha256,
  publicKeyOf,
  splitCharge,
} from '@fed-ai/protocol';
import fc from 'fast-check';
import { type DisputedCharge, type DisputeEvidence, decideDispute, refundSplit } from '../src/dispute-rules';

const nodeKey = generateSecretKey();
const routerKey = generateSecretKey();
const strangerKey = generateSecretKey();
const node = publicKeyOf(nodeKey);
const router = publicKeyOf(routerKey);
const client = publicKeyOf(generateSecretKey());
const T = 1_750_000_000;
const WINDOW_S = 86_400;
const FEE_BPS = 1000;
const TEXT = 'the answer the node generated';

interface Scenario {
  requestId?: string;
  tokensIn?: number;
  tokensOut?: number;
  price?: Price;
  text?: string;
}

function signedRecord(s: Scenario = {}): { record: MeteringRecord; envelope: Envelope } {
  const price = s.price ?? { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
  const tokensIn = s.tokensIn ?? 100;
  const tokensOut = s.tokensOut ?? 200;
  const record: MeteringRecord = {
    request_id: s.requestId ?? 'req-dispute-1',
    router,
    model: 'double-model',
    prompt_sha256: promptSha256([{ role: 'user', content: 'hi' }]),
    output_sha256: outputSha256(s.text ?? TEXT),
    tokens_in: tokensIn,
    tokens_out: tokensOut,
    ttft_ms: 5,
    wall_ms: 50,
    price,
    cost_msat: costMsat(tokensIn, tokensOut, price),
    finish_reason: 'stop',
    count_source: 'tokenizer',
  };
  return {
    record,
    envelope: createEnvelope(KIND.meteringRecord, record, { audience: router, nowS: T }, nodeKey),
  };
}

function chargeOf(
  signed: { record: MeteringRecord; envelope: Envelope },
  over: Partial<DisputedCharge> = {},
): DisputedCharge {
  const amount = over.amount_msat ?? signed.record.cost_msat;
  const { nodeMsat, routerMsat } = splitCharge(amount, FEE_BPS);
  return {
    op_id: signed.record.request_id,
    account: 'tab:alice',
    node,
    amount_msat: amount,
    node_msat: nodeMsat,
    router_msat: routerMsat,
    metering: signed.envelope,
    created_at_s: T,
    refunded_msat: 0,
    siblings: [],
    ...over,
  };
}

function responseOf(
  signed: { record: MeteringRecord; envelope: Envelope },
  over: Partial<InferenceResponse> = {},
  key = routerKey,
): Envelope {
  const r = signed.record;
  const payload: InferenceResponse = {
    request_id: r.request_id,
    model: r.model,
    node,
    text: TEXT,
    finish_reason: r.finish_reason,
    usage: {
      prompt_tokens: r.tokens_in,
      completion_tokens: r.tokens_out,
      total_tokens: r.tokens_in + r.tokens_out,
    },
    cost_msat: r.cost_msat,
    receipt: JSON.stringify(signed.envelope),
    ...over,
  };
  return createEnvelope(KIND.inferenceResponse, payload, { audience: client, nowS: T + 1 }, key);
}

const base = signedRecord();
const other = signedRecord({ requestId: 'req-dispute-2' });
// cost = ceil((100 x 1000 + 200 x 2000) / 1000) = 500 msat; 50 of 200 tokens delivered cost 200.
assert.equal(base.record.cost_msat, 500);

const tampered = (envelope: Envelope, content: string): Envelope => ({ ...envelope, content });

interface Row {
  name: string;
  charge: DisputedCharge;
  evidence: DisputeEvidence;
  nowS?: number;
  verdict: string;
  rule: string;
  refund: number;
}

const ROWS: Row[] = [
  {
    name: 'a stored charge that is not a node-signed metering record (an offload result)',
    charge: chargeOf(base, { metering: { ...base.envelope, kind: KIND.offloadResult } }),
    evidence: { receipt: base.envelope },
    verdict: 'rejected',
    rule: 'UNSUPPORTED_CHARGE',
    refund: 0,
  },
  {
    name: 'a receipt whose signature does not verify',
    charge: chargeOf(base),
    evidence: {
      receipt: tampered(base.envelope, base.envelope.content.replace('"tokens_out":200', '"tokens_out":20')),
    },
    verdict: 'rejected',
    rule: 'BAD_EVIDENCE',
    refund: 0,
  },
  {
    name: 'a receipt of another request (validly signed, another envelope)',
    charge: chargeOf(base),
    evidence: { receipt: other.envelope },
    verdict: 'rejected',
    rule: 'EVIDENCE_MISMATCH',
    refund: 0,
  },
  {
    name: 'a forged response (text changed after the router signed)',
    charge: chargeOf(base),
    evidence: {
      receipt: base.envelope,
      response: (() => {
        const r = responseOf(base);
        return tampered(r, r.content.replace(TEXT, 'something else'));
      })(),
    },
    verdict: 'rejected',
    rule: 'BAD_EVIDENCE',
    refund: 0,
  },
  {
    name: 'a response signed by someone other than the router the record names',
    charge: chargeOf(base),
    evidence: { receipt: base.envelope, response: responseOf(base, { text: 'forged' }, strangerKey) },
    verdict: 'rejected',
    rule: 'EVIDENCE_MISMATCH',
    refund: 0,
  },
  {
    name: 'a response for another request',
    charge: chargeOf(base),
    evidence: { receipt: base.envelope, response: responseOf(base, { request_id: 'req-dispute-9' }) },
    verdict: 'rejected',
    rule: 'EVIDENCE_MISMATCH',
    refund: 0,
  },
  {
    name: 'a response carrying another receipt',
    charge: chargeOf(base),
    evidence: {
      receipt: base.envelope,
      response: responseOf(base, { receipt: JSON.stringify(other.envelope) }),
    },
    verdict: 'rejected',
    rule: 'EVIDENCE_MISMATCH',
    refund: 0,
  },
  {
    name: 'a case opened after the window',
    charge: chargeOf(base),
    evidence: { receipt: base.envelope, response: responseOf(base, { text: 'forged' }) },
    nowS: T + WINDOW_S + 1,
    verdict: 'rejected',
    rule: 'DISPUTE_WINDOW_CLOSED',
    refund: 0,
  },
  {
    name: 'the router delivered text that is not what the node metered',
    charge: chargeOf(base),
    evidence: { receipt: base.envelope, response: responseOf(base, { text: 'not what was metered' }) },
    verdict: 'refund_full',
    rule: 'OUTPUT_MISMATCH',
    refund: 500,
  },
  {
    name: 'the same signed record was charged before under another op id',
    charge: chargeOf(base, { siblings: [{ op_id: 'req-earlier-1', created_at_s: T - 10 }] }),
    evidence: { receipt: base.envelope },
    verdict: 'refund_full',
    rule: 'DUPLICATE_CHARGE',
    refund: 500,
  },
  {
    name: 'the node failed mid-stream: 50 of 200 tokens delivered',
    charge: chargeOf(base),
    evidence: {
      receipt: base.envelope,
      response: responseOf(base, { usage: { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 } }),
    },
    verdict: 'refund_partial',
    rule: 'PARTIAL_DELIVERY',
    refund: 300,
  },
  {
    name: 'charged more than the record costs',
    charge: chargeOf(base, { amount_msat: 700 }),
    evidence: { receipt: base.envelope },
    verdict: 'refund_partial',
    rule: 'OVERCHARGED',
    refund: 200,
  },
  {
    name: 'another case already refunded the whole charge',
    charge: chargeOf(base, { refunded_msat: 500 }),
    evidence: { receipt: base.envelope, response: responseOf(base, { text: 'forged' }) },
    verdict: 'charge_stands',
    rule: 'ALREADY_REFUNDED',
    refund: 0,
  },
  {
    name: 'another case refunded part: only the rest comes back',
    charge: chargeOf(base, { refunded_msat: 400 }),
    evidence: { receipt: base.envelope, response: responseOf(base, { text: 'forged' }) },
    verdict: 'refund_partial',
    rule: 'OUTPUT_MISMATCH',
    refund: 100,
  },
  {
    name: 'this charge is the first of the same record: it stands',
    charge: chargeOf(base, { siblings: [{ op_id: 'req-later-1', created_at_s: T + 10 }] }),
    evidence: { receipt: base.envelope },
    verdict: 'charge_stands',
    rule: 'NO_FAULT',
    refund: 0,
  },
  {
    name: 'a matching response: no fault',
    charge: chargeOf(base),
    evidence: { receipt: base.envelope, response: responseOf(base) },
    verdict: 'charge_stands',
    rule: 'NO_FAULT',
    refund: 0,
  },
];

for (const row of ROWS)
  test(`dispute rule: ${row.name} -> ${row.verdict} ${row.rule} ${row.refund}`, async () => {
    const decided = await decideDispute(row.charge, row.evidence, {
      nowS: row.nowS ?? T + 60,
      windowS: WINDOW_S,
    });
    assert.deepEqual(
      { verdict: decided.verdict, rule: decided.rule, refund: decided.refund_msat },
      { verdict: row.verdict, rule: row.rule, refund: row.refund },
      decided.detail,
    );
    assert.ok(decided.detail.length > 0 && decided.detail.length <= 512);
  });

test('every rule code has a row in the table', async () => {
  const { DISPUTE_RULES } = await import('../src/dispute-rules');
  const covered = new Set(ROWS.map((r) => r.rule));
  assert.deepEqual(
    DISPUTE_RULES.filter((rule) => !covered.has(rule)),
    [],
  );
});

test('hostile evidence (non-objects, huge nesting, wrong kinds) is rejected, never thrown', async () => {
  let deep: unknown = 'x';
  for (let i = 0; i < 5000; i++) deep = [deep];
  for (const receipt of [
    null,
    42,
    'text',
    [],
    {},
    deep,
    { ...base.envelope, kind: KIND.inferenceResponse },
  ]) {
    const decided = await decideDispute(chargeOf(base), { receipt }, { nowS: T + 60, windowS: WINDOW_S });
    assert.equal(decided.verdict, 'rejected');
    assert.equal(decided.refund_msat, 0);
  }
});

test('refundSplit: a full refund is exactly the original split; parts never exceed the charge parts', () => {
  const charge = chargeOf(base);
  assert.deepEqual(refundSplit(500, charge), { nodeMsat: charge.node_msat, routerMsat: charge.router_msat });
  assert.throws(() => refundSplit(501, charge), RangeError);
  assert.throws(() => refundSplit(-1, charge), RangeError);
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: 10 ** 12 }),
      fc.integer({ min: 0, max: 10_000 }),
      fc.double({ min: 0, max: 1, noNaN: true }),
      (amount, bps, share) => {
        const { nodeMsat, routerMsat } = splitCharge(amount, bps);
        const refund = Math.floor(amount * share);
        const split = refundSplit(refund, { amount_msat: amount, router_msat: routerMsat });
        assert.equal(split.nodeMsat + split.routerMsat, refund);
        assert.ok(split.nodeMsat >= 0 && split.nodeMsat <= nodeMsat, `node ${split.nodeMsat} > ${nodeMsat}`);
        assert.ok(split.routerMsat >= 0 && split.routerMsat <= routerMsat);
      },
    ),
    { numRuns: 2000 },
  );
});

test('property: a refund never exceeds what is left of the charge, and the same input decides the same', async () => {
  const price = fc.record({
    input_msat_per_1k: fc.integer({ min: 0, max: 100_000 }),
    output_msat_per_1k: fc.integer({ min: 0, max: 100_000 }),
  });
  await fc.assert(
    fc.asyncProperty(
      fc.integer({ min: 0, max: 100_000 }),
      fc.integer({ min: 0, max: 100_000 }),
      price,
      fc.integer({ min: 0, max: 100_000 }),
      fc.integer({ min: 0, max: 2_000_000 }),
      fc.integer({ min: 0, max: 2_000_000 }),
      fc.boolean(),
      fc.boolean(),
      async (tokensIn, tokensOut, p, delivered, extra, refunded, forged, duplicate) => {
        const signed = signedRecord({ tokensIn, tokensOut, price: p, requestId: 'req-property' });
        const amount = signed.record.cost_msat + (extra % 3 === 0 ? extra : 0);
        const charge = chargeOf(signed, {
          amount_msat: amount,
          refunded_msat: Math.min(refunded, amount),
          siblings: duplicate ? [{ op_id: 'req-aaaa-0', created_at_s: T - 1 }] : [],
        });
        const shown = Math.min(delivered, tokensOut);
        const evidence = {
          receipt: signed.envelope,
          response: responseOf(signed, {
            ...(forged ? { text: 'forged' } : {}),
            usage: { prompt_tokens: tokensIn, completion_tokens: shown, total_tokens: tokensIn + shown },
          }),
        };
        const first = await decideDispute(charge, evidence, { nowS: T + 60, windowS: WINDOW_S });
        const again = await decideDispute(charge, evidence, { nowS: T + 60, windowS: WINDOW_S });
        assert.deepEqual(again, first);
        assert.ok(first.refund_msat >= 0);
        assert.ok(first.refund_msat <= charge.amount_msat - charge.refunded_msat, JSON.stringify(first));
        assert.equal(
          first.refund_msat > 0,
          first.verdict === 'refund_full' || first.verdict === 'refund_partial',
        );
        if (first.verdict === 'refund_full') assert.equal(first.refund_msat, charge.amount_msat);
      },
    ),
    { numRuns: 60 },
  );
});
