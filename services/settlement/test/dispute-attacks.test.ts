// Attack list for settlement's dispute routes: no credentials under any spelling of the path,
// bad bodies, oversize evidence, replayed NIP-98, a stranger's signature (no replay row left),
// unknown charges and ids. Each answer is reason-coded and nothing moves.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generateSecretKey } from '@fed-ai/protocol';
import { pathVariants, rawRequest } from '../../router/test/raw-http';
import { ACCOUNTS } from '../src/books';
import {
  assertLedgerVerifies,
  balanceOf,
  type DisputeRig,
  type MadeCharge,
  makeCharge,
  openBody,
  signedCall,
  startDisputeRig,
} from './dispute-helpers';

let rig: DisputeRig;
let charge: MadeCharge;

before(async () => {
  rig = await startDisputeRig();
  charge = await makeCharge(rig);
});

after(async () => {
  await rig.close();
});

test('both dispute routes, under every spelling of their path, refuse a caller without credentials', async () => {
  let checked = 0;
  for (const route of [
    { method: 'POST', path: '/v1/disputes', body: openBody(charge, { payer: charge.payer }) },
    { method: 'GET', path: `/v1/disputes/dsp_${'a'.repeat(32)}` },
  ]) {
    for (const path of pathVariants(route.path)) {
      const answer = await rawRequest(rig.settlement.url, route.method, path, route.body);
      assert.ok(answer.status >= 400 && answer.status < 500, `${route.method} ${path}: ${answer.status}`);
      checked += 1;
    }
  }
  assert.ok(checked >= 2);
});

test('bad bodies are refused with a reason code once the signature holds', async () => {
  const bad: [string, string][] = [
    ['not JSON', '{"receipt":'],
    ['an array', '[]'],
    [
      'unknown fields',
      JSON.stringify({ receipt: JSON.stringify(charge.metering), payer: charge.payer, extra: 1 }),
    ],
    ['a receipt that is not an envelope', JSON.stringify({ receipt: '"text"', payer: charge.payer })],
    [
      'a receipt without a request id',
      JSON.stringify({ receipt: JSON.stringify({ content: '{}' }), payer: charge.payer }),
    ],
    ['a number for the receipt', JSON.stringify({ receipt: 5, payer: charge.payer })],
  ];
  for (const [what, body] of bad) {
    const answer = await signedCall(rig, 'POST', '/v1/disputes', rig.routerKey, body);
    assert.equal(answer.status, 400, `${what}: ${answer.status} ${JSON.stringify(answer.body)}`);
    assert.equal(answer.body.error?.code, 'INVALID_REQUEST', what);
  }
  const unknown = JSON.stringify({
    receipt: JSON.stringify({
      ...charge.metering,
      content: charge.metering.content.replace(charge.opId, 'req-nobody-0'),
    }),
    payer: charge.payer,
  });
  const missing = await signedCall(rig, 'POST', '/v1/disputes', rig.routerKey, unknown);
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error?.code, 'NOT_FOUND');
  const noPayer = await signedCall(rig, 'POST', '/v1/disputes', rig.routerKey, openBody(charge));
  assert.equal(noPayer.body.error?.code, 'INVALID_REQUEST');
  const badId = await signedCall(rig, 'GET', '/v1/disputes/not-an-id', rig.routerKey);
  assert.equal(badId.status, 400);
  const noCase = await signedCall(rig, 'GET', `/v1/disputes/dsp_${'b'.repeat(32)}`, rig.routerKey);
  assert.equal(noCase.status, 404);
});

test('oversize evidence is refused (413) and opens nothing', async () => {
  const body = JSON.stringify({
    receipt: JSON.stringify(charge.metering),
    response: 'x'.repeat(400 * 1024),
    payer: charge.payer,
  });
  const answer = await signedCall(rig, 'POST', '/v1/disputes', rig.routerKey, body);
  assert.ok(answer.status === 413 || answer.status === 400, `${answer.status}`);
  const rows = await rig.settlement.ledger.db.query('SELECT 1 FROM disputes WHERE charge_op_id = $1', [
    charge.opId,
  ]);
  assert.equal(rows.rows.length, 0);
});

test('a replayed NIP-98 header is refused and moves nothing more', async () => {
  const fresh = await makeCharge(rig);
  const tab = ACCOUNTS.tab(fresh.payer);
  const before = await balanceOf(rig, tab);
  const body = openBody(fresh, { payer: fresh.payer });
  const first = await signedCall(rig, 'POST', '/v1/disputes', rig.routerKey, body);
  assert.equal(first.status, 200);
  const replay = await signedCall(rig, 'POST', '/v1/disputes', rig.routerKey, body, first.header);
  assert.equal(replay.status, 409);
  assert.equal(replay.body.error?.code, 'REPLAYED');
  assert.equal(await balanceOf(rig, tab), before);
  await assertLedgerVerifies(rig);
});

test("a stranger's validly signed calls are refused and leave no replay rows", async () => {
  const count = async () =>
    Number(
      (await rig.settlement.ledger.db.query<{ n: string | number }>('SELECT count(*) AS n FROM replay_ids'))
        .rows[0]?.n,
    );
  const before = await count();
  const stranger = generateSecretKey();
  for (let i = 0; i < 3; i++) {
    const answer = await signedCall(rig, 'POST', '/v1/disputes', stranger, openBody(charge));
    assert.equal(answer.status, 403);
    const shown = await signedCall(rig, 'GET', `/v1/disputes/dsp_${'c'.repeat(32)}`, stranger);
    assert.equal(shown.status, 403);
  }
  assert.equal(await count(), before);
});

test('at most a bounded number of cases of one party stay open', async () => {
  // Cases close when decided; a stuck case (crash between open and decide) counts until it closes.
  const db = rig.settlement.ledger.db;
  const payer = 'payer-limit';
  const charges = [];
  for (let i = 0; i < 9; i++) charges.push(await makeCharge(rig, payer));
  for (const c of charges.slice(0, 8)) {
    const opened = await signedCall(rig, 'POST', '/v1/disputes', rig.routerKey, openBody(c, { payer }));
    assert.equal(opened.status, 200);
  }
  await db.query(`UPDATE disputes SET state = 'evidence' WHERE party = $1`, [payer]);
  const over = await signedCall(rig, 'POST', '/v1/disputes', rig.routerKey, openBody(charges[8]!, { payer }));
  assert.equal(over.status, 429);
  assert.equal(over.body.error?.code, 'DISPUTE_LIMIT_REACHED');
  await db.query(`UPDATE disputes SET state = 'closed' WHERE party = $1`, [payer]);
  await assertLedgerVerifies(rig);
});
