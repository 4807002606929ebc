// Disputes end to end on a real settlement (PGlite, HTTP, NIP-98): charges made through reserve and
// capture on node-signed records, cases opened by the router for its client and by the node,
// verdicts that move money exactly once, and `ledger verify` after every scenario.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { generateSecretKey, KIND, verifyEnvelope } from '@fed-ai/protocol';
import { ACCOUNTS } from '../src/books';
import { DISPUTE_IDS, Disputes } from '../src/disputes';
import {
  assertLedgerVerifies,
  balanceOf,
  type DisputeRig,
  makeCharge,
  openBody,
  responseFor,
  signedCall,
  startDisputeRig,
} from './dispute-helpers';

let rig: DisputeRig;

before(async () => {
  rig = await startDisputeRig();
});

after(async () => {
  await rig.close();
});

const earnings = () => balanceOf(rig, ACCOUNTS.earnings(rig.node));
const fees = () => balanceOf(rig, ACCOUNTS.routerFees);

test('a forged response (text not what was metered) refunds the whole charge, from both parts, once', async () => {
  const charge = await makeCharge(rig);
  const tab = ACCOUNTS.tab(charge.payer);
  const [tabBefore, earnBefore, feesBefore] = [await balanceOf(rig, tab), await earnings(), await fees()];
  const body = openBody(charge, {
    response: responseFor(rig, charge, { text: 'not what was metered' }),
    payer: charge.payer,
  });
  const opened = await signedCall(rig, 'POST', '/v1/disputes', rig.routerKey, body);
  assert.equal(opened.status, 200, JSON.stringify(opened.body));
  assert.equal(opened.body.verdict, 'refund_full');
  assert.equal(opened.body.rule, 'OUTPUT_MISMATCH');
  assert.equal(opened.body.refund_msat, 500);
  assert.equal(opened.body.node_refund_msat, 450); // the original split at 1000 bps: 450 + 50
  assert.equal(opened.body.router_refund_msat, 50);
  assert.equal(opened.body.state, 'closed');
  assert.deepEqual(
    (opened.body.events as { from: string | null; to: string }[]).map((e) => [e.from, e.to]),
    [
      [null, 'opened'],
      ['opened', 'evidence'],
      ['evidence', 'decided'],
      ['decided', 'closed'],
    ],
  );
  assert.equal(await balanceOf(rig, tab), tabBefore + 500);
  assert.equal(await earnings(), earnBefore - 450);
  assert.equal(await fees(), feesBefore - 50);

  // The verdict is signed by settlement, for the claimant.
  const envelope = opened.body.verdict_envelope as { created_at: number; pubkey: string };
  const verified = await verifyEnvelope(envelope, {
    me: rig.router,
    kinds: [KIND.disputeVerdict],
    nowS: envelope.created_at,
  });
  assert.ok(verified.ok, JSON.stringify(verified));
  assert.equal(verified.envelope.pubkey, rig.settlement.pubkey);
  assert.equal(verified.payload.refund_msat, 500);
  assert.equal(verified.payload.charge_op_id, charge.opId);
  assert.equal(verified.payload.refund_refused, false);

  // Opening again (a new signature, same case) answers the same case and moves nothing.
  const again = await signedCall(rig, 'POST', '/v1/disputes', rig.routerKey, body);
  assert.equal(again.status, 200);
  assert.equal(again.body.case_id, opened.body.case_id);
  assert.equal((again.body.events as unknown[]).length, 4);
  assert.equal(await balanceOf(rig, tab), tabBefore + 500);

  // Deciding again, directly and even from a state reset to `evidence` (a decision replayed after
  // its ledger batch committed): the deterministic transfer ids move the money only once.
  const db = rig.settlement.ledger.db;
  const disputes = new Disputes(db, rig.settlement.ledger, generateSecretKey(), { windowS: 86_400 });
  const stored = await disputes.decide(String(opened.body.case_id));
  assert.equal(stored.refund_msat, 500);
  assert.deepEqual(stored.verdict_envelope, opened.body.verdict_envelope);
  await db.query(`UPDATE disputes SET state = 'evidence' WHERE case_id = $1`, [opened.body.case_id]);
  const replayed = await disputes.decide(String(opened.body.case_id));
  assert.equal(replayed.refund_msat, 500);
  assert.equal(await balanceOf(rig, tab), tabBefore + 500);
  assert.equal(await earnings(), earnBefore - 450);
  const transfers = await rig.settlement.ledger.lookupTransfers([
    DISPUTE_IDS.node(String(opened.body.case_id)),
    DISPUTE_IDS.fee(String(opened.body.case_id)),
  ]);
  assert.deepEqual(
    transfers.map((t) => t.amountMsat),
    [450, 50],
  );

  // GET shows it to the router (for that payer) and to the node.
  const shown = await signedCall(
    rig,
    'GET',
    `/v1/disputes/${opened.body.case_id}?payer=${encodeURIComponent(charge.payer)}`,
    rig.routerKey,
  );
  assert.equal(shown.status, 200);
  assert.equal(shown.body.refund_msat, 500);
  assert.equal(
    (await signedCall(rig, 'GET', `/v1/disputes/${opened.body.case_id}`, rig.nodeKey)).status,
    200,
  );
  assert.equal(
    (await signedCall(rig, 'GET', `/v1/disputes/${opened.body.case_id}?payer=someone-else`, rig.routerKey))
      .status,
    404,
  );
  await assertLedgerVerifies(rig);
});

test('the node failed mid-stream: only the delivered tokens are paid', async () => {
  const charge = await makeCharge(rig);
  const tab = ACCOUNTS.tab(charge.payer);
  const before = await balanceOf(rig, tab);
  const response = responseFor(rig, charge, {
    usage: { prompt_tokens: 100, completion_tokens: 50, total_tokens: 150 },
  });
  const opened = await signedCall(
    rig,
    'POST',
    '/v1/disputes',
    rig.routerKey,
    openBody(charge, { response, payer: charge.payer }),
  );
  assert.equal(opened.status, 200, JSON.stringify(opened.body));
  assert.deepEqual(
    [opened.body.verdict, opened.body.rule, opened.body.refund_msat],
    ['refund_partial', 'PARTIAL_DELIVERY', 300],
  );
  assert.equal(Number(opened.body.node_refund_msat) + Number(opened.body.router_refund_msat), 300);
  assert.equal(await balanceOf(rig, tab), before + 300);
  await assertLedgerVerifies(rig);
});

test('the node disputes its own charge: with matching evidence the charge stands and nothing moves', async () => {
  const charge = await makeCharge(rig);
  const tab = ACCOUNTS.tab(charge.payer);
  const before = await balanceOf(rig, tab);
  const opened = await signedCall(
    rig,
    'POST',
    '/v1/disputes',
    rig.nodeKey,
    openBody(charge, { response: responseFor(rig, charge) }),
  );
  assert.equal(opened.status, 200, JSON.stringify(opened.body));
  assert.deepEqual(
    [opened.body.role, opened.body.verdict, opened.body.rule],
    ['node', 'charge_stands', 'NO_FAULT'],
  );
  assert.equal(opened.body.refund_msat, 0);
  assert.equal(opened.body.state, 'closed');
  assert.equal(await balanceOf(rig, tab), before);
  // A second case on the same charge (the payer's) refunds at most once in total.
  const forged = responseFor(rig, charge, { text: 'forged' });
  const first = await signedCall(
    rig,
    'POST',
    '/v1/disputes',
    rig.routerKey,
    openBody(charge, { response: forged, payer: charge.payer }),
  );
  assert.equal(first.body.refund_msat, 500);
  const nodeCase = await signedCall(
    rig,
    'POST',
    '/v1/disputes',
    rig.nodeKey,
    openBody(charge, { response: forged }),
  );
  assert.equal(nodeCase.body.case_id, opened.body.case_id); // the node's case was decided already
  assert.equal(await balanceOf(rig, tab), before + 500);
  await assertLedgerVerifies(rig);
});

test('a non-party is refused FORBIDDEN: another node, or the router for another payer', async () => {
  const charge = await makeCharge(rig);
  const stranger = await signedCall(rig, 'POST', '/v1/disputes', generateSecretKey(), openBody(charge));
  assert.equal(stranger.status, 403);
  assert.equal(stranger.body.error?.code, 'FORBIDDEN');
  const otherPayer = await signedCall(
    rig,
    'POST',
    '/v1/disputes',
    rig.routerKey,
    openBody(charge, { payer: 'mallory' }),
  );
  assert.equal(otherPayer.status, 403);
  assert.equal(otherPayer.body.error?.code, 'FORBIDDEN');
  const rows = await rig.settlement.ledger.db.query('SELECT 1 FROM disputes WHERE charge_op_id = $1', [
    charge.opId,
  ]);
  assert.equal(rows.rows.length, 0);
  await assertLedgerVerifies(rig);
});

test('a charge outside the window, or already paid out, cannot be disputed (DISPUTE_WINDOW_CLOSED)', async () => {
  const db = rig.settlement.ledger.db;
  const old = await makeCharge(rig);
  await db.query(`UPDATE charges SET created_at = now() - interval '2 days' WHERE op_id = $1`, [old.opId]);
  const late = await signedCall(
    rig,
    'POST',
    '/v1/disputes',
    rig.routerKey,
    openBody(old, { payer: old.payer }),
  );
  assert.equal(late.status, 409);
  assert.equal(late.body.error?.code, 'DISPUTE_WINDOW_CLOSED');
  const paid = await makeCharge(rig);
  await db.query(`UPDATE charges SET payout_id = 'payout-test-1' WHERE op_id = $1`, [paid.opId]);
  const afterPayout = await signedCall(rig, 'POST', '/v1/disputes', rig.nodeKey, openBody(paid));
  assert.equal(afterPayout.status, 409);
  assert.equal(afterPayout.body.error?.code, 'DISPUTE_WINDOW_CLOSED');
  await assertLedgerVerifies(rig);
});

test('a refund the node earnings no longer cover is decided, refused, and says so', async () => {
  const charge = await makeCharge(rig);
  // Empty the node's earnings (as a payout would) straight through the ledger.
  const available = await earnings();
  const [drained] = await rig.settlement.ledger.createTransfers([
    {
      id: `test-drain:${charge.opId}`,
      kind: 'single',
      debitAccountId: ACCOUNTS.earnings(rig.node),
      creditAccountId: ACCOUNTS.faucet,
      amountMsat: available,
    },
  ]);
  assert.equal(drained?.code, 'OK');
  const tab = ACCOUNTS.tab(charge.payer);
  const before = await balanceOf(rig, tab);
  const forged = responseFor(rig, charge, { text: 'forged' });
  const opened = await signedCall(
    rig,
    'POST',
    '/v1/disputes',
    rig.routerKey,
    openBody(charge, { response: forged, payer: charge.payer }),
  );
  assert.equal(opened.status, 200, JSON.stringify(opened.body));
  assert.equal(opened.body.verdict, 'refund_full');
  assert.equal(opened.body.refund_msat, 0);
  assert.match(String(opened.body.detail), /refund refused/);
  assert.equal(
    (opened.body.verdict_envelope as { content: string }).content.includes('"refund_refused":true'),
    true,
  );
  assert.equal(await balanceOf(rig, tab), before);
  const [fee] = await rig.settlement.ledger.lookupTransfers([DISPUTE_IDS.fee(String(opened.body.case_id))]);
  assert.ok(!fee); // the linked batch moved nothing at all
  await assertLedgerVerifies(rig);
});
