// capture_offload over /v1/ops: a request a peer router served is charged the peer's cost,
// recomputed from the node-signed record inside the peer's signed receipt, plus this network's
// offload fee (floor). The peer's part goes to the offloading router's own account
// (`tab:svc:<router>`), the fee to `fees:router`; a second capture charges nothing more; every
// inconsistent receipt is BAD_METERING (400) and moves no money; the ledger verifies after each.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, afterEach, before, test } from 'node:test';
import { availableMsat, verifyLedger } from '@fed-ai/ledger';
import {
  costMsat,
  createEnvelope,
  createNip98Header,
  generateSecretKey,
  KIND,
  offloadFeeMsat,
  outputSha256,
  promptSha256,
  publicKeyOf,
} from '@fed-ai/protocol';
import { settlementConfigSchema } from '../src/config';
import { type RunningSettlement, startSettlement } from '../src/settlement';

const FEE_BPS = 500;
const dir = mkdtempSync(join(tmpdir(), 'fedai-capture-offload-'));
const routerKey = generateSecretKey();
const router = publicKeyOf(routerKey);
const peerKey = generateSecretKey();
const peer = publicKeyOf(peerKey);
const nodeKey = generateSecretKey();
const nodePub = publicKeyOf(nodeKey);
const PRICE = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
const PAYER = 'client-offload-1';
let settlement: RunningSettlement;

before(async () => {
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: dir,
      SETTLEMENT_ROUTER_PUBKEYS: router,
      FAUCET: 'true',
      OFFLOAD_FEE_BPS: String(FEE_BPS),
    }),
  );
  // Fund the client's tab: a top-up invoice paid by the faucet (as the router).
  const topup = await settlement.books.openTopup(PAYER, 1_000_000);
  const url = `${settlement.url}/v1/faucet/pay`;
  const body = JSON.stringify({ bolt11: topup.bolt11 });
  const paid = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(url, 'POST', body, routerKey),
    },
    body,
  });
  assert.equal(paid.status, 200, await paid.text());
});

after(async () => {
  await settlement?.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(async () => {
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});

const op = (payload: Record<string, unknown>, signer = routerKey) =>
  fetch(`${settlement.url}/v1/ops`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(
      createEnvelope(
        KIND.settlementRequest,
        payload as never,
        { audience: settlement.pubkey, tags: [['nonce', String(Math.random())]] },
        signer,
      ),
    ),
  }).then(async (r) => ({
    status: r.status,
    body: (await r.json()) as { error?: { code: string; message: string }; charged_msat?: number },
  }));

const reserve = async (opId: string, amountMsat = 10_000) => {
  const answer = await op({
    op: 'reserve',
    op_id: opId,
    account: PAYER,
    amount_msat: amountMsat,
    timeout_s: 60,
  });
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
};

/** The node-signed metering record of the job at the peer (addressed to the peer). */
function metering(
  over: Record<string, unknown> = {},
  options: { signer?: Uint8Array; audience?: string } = {},
) {
  const payload = {
    request_id: 'rq-at-the-peer-1',
    router: peer,
    model: 'm',
    prompt_sha256: promptSha256([{ role: 'user', content: 'x' }]),
    output_sha256: outputSha256('y'),
    tokens_in: 1001,
    tokens_out: 500,
    ttft_ms: 1,
    wall_ms: 2,
    price: PRICE,
    cost_msat: costMsat(1001, 500, PRICE),
    finish_reason: 'stop',
    count_source: 'tokenizer',
    ...over,
  };
  return JSON.stringify(
    createEnvelope(
      KIND.meteringRecord,
      payload as never,
      { audience: options.audience ?? peer, expiresInS: 0 },
      options.signer ?? nodeKey,
    ),
  );
}

/** The peer's signed offload result (its receipt), addressed to the router. */
function result(
  opId: string,
  over: Record<string, unknown> = {},
  options: { signer?: Uint8Array; audience?: string } = {},
) {
  return JSON.stringify(
    createEnvelope(
      KIND.offloadResult,
      {
        job_id: opId,
        model: 'm',
        node: nodePub,
        cost_msat: costMsat(1001, 500, PRICE),
        finish_reason: 'stop',
        metering: metering(),
        ...over,
      } as never,
      { audience: options.audience ?? router, refs: [opId], expiresInS: 0 },
      options.signer ?? peerKey,
    ),
  );
}

const capture = (opId: string, receipt: string, peerKeyHex = peer) =>
  op({ op: 'capture_offload', op_id: opId, amount_msat: 1, peer: peerKeyHex, result: receipt });

async function balances() {
  // lookupAccounts returns the accounts that exist, not one slot per id: look each up by id.
  const found = await settlement.ledger.lookupAccounts([`tab:${PAYER}`, `tab:svc:${router}`, 'fees:router']);
  const byId = (id: string) => found.find((a) => a.id === id);
  const [tab, float, fees] = [byId(`tab:${PAYER}`), byId(`tab:svc:${router}`), byId('fees:router')];
  return {
    tab: tab ? availableMsat(tab) : 0,
    reserved: tab?.debitsPending ?? 0,
    float: float ? availableMsat(float) : 0,
    fees: fees?.creditsPosted ?? 0,
  };
}

test('offloadFeeMsat: floor of cost x bps / 10,000', () => {
  assert.equal(offloadFeeMsat(2001, 500), 100);
  assert.equal(offloadFeeMsat(19, 500), 0);
  assert.equal(offloadFeeMsat(20, 500), 1);
  assert.equal(offloadFeeMsat(0, 10_000), 0);
  assert.equal(offloadFeeMsat(12_345, 10_000), 12_345);
  assert.equal(offloadFeeMsat(12_345, 0), 0);
});

test('capture_offload: charged cost + floor(fee); the peer part to the router float, the fee to fees:router; idempotent', async () => {
  const cost = costMsat(1001, 500, PRICE);
  assert.equal(cost, 2001);
  const fee = Math.floor((cost * FEE_BPS) / 10_000);
  assert.equal(fee, 100, 'the fee rounds down');
  const start = await balances();
  await reserve('rq-offload-ok-1');
  assert.equal((await balances()).reserved, start.reserved + 10_000);
  const answer = await capture('rq-offload-ok-1', result('rq-offload-ok-1'));
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(answer.body.charged_msat, cost + fee);
  const end = await balances();
  assert.equal(
    end.tab,
    start.tab - cost - fee,
    'the client paid cost + fee; the rest of the hold is released',
  );
  assert.equal(end.reserved, start.reserved);
  assert.equal(end.float - start.float, cost, "the peer's part lands in the router's own account");
  assert.equal(end.fees - start.fees, fee);

  // The same capture again (a retry from the outbox): nothing more moves.
  const again = await capture('rq-offload-ok-1', result('rq-offload-ok-1'));
  assert.equal(again.status, 200, JSON.stringify(again.body));
  assert.deepEqual(await balances(), end);
  // Another valid receipt for the same op (a different cost): refused, and still nothing moves.
  const other = metering({ tokens_out: 100, cost_msat: costMsat(1001, 100, PRICE) });
  const conflicting = await capture(
    'rq-offload-ok-1',
    result('rq-offload-ok-1', { cost_msat: costMsat(1001, 100, PRICE), metering: other }),
  );
  assert.equal(conflicting.status, 409, JSON.stringify(conflicting.body));
  assert.equal(conflicting.body.error?.code, 'LEDGER_REJECTED');
  assert.deepEqual(await balances(), end);
  // A release after the capture is a no-op.
  assert.equal((await op({ op: 'release', op_id: 'rq-offload-ok-1' })).status, 200);
  assert.deepEqual(await balances(), end);
});

test('capture_offload: a zero-cost job releases the hold and charges nothing', async () => {
  const start = await balances();
  await reserve('rq-offload-zero-1');
  const zero = metering({ tokens_in: 0, tokens_out: 0, cost_msat: 0 });
  const answer = await capture(
    'rq-offload-zero-1',
    result('rq-offload-zero-1', { cost_msat: 0, metering: zero }),
  );
  assert.equal(answer.status, 200, JSON.stringify(answer.body));
  assert.equal(answer.body.charged_msat, 0);
  assert.deepEqual(await balances(), start);
});

test('capture_offload: every inconsistent receipt is BAD_METERING (400) and moves no money', async () => {
  const stranger = generateSecretKey();
  const bigCost = costMsat(1001, 5000, PRICE);
  const cases: { name: string; receipt: (opId: string) => string; reserve?: number; peer?: string }[] = [
    { name: 'signed by another key than the peer', receipt: (id) => result(id, {}, { signer: stranger }) },
    {
      name: 'the op names another peer than the signer',
      receipt: (id) => result(id),
      peer: publicKeyOf(stranger),
    },
    { name: 'a result for another op', receipt: () => result('rq-someone-else-1') },
    {
      name: 'a result addressed to another router',
      receipt: (id) => result(id, {}, { audience: publicKeyOf(stranger) }),
    },
    {
      name: 'metering cost is not price x tokens',
      receipt: (id) => result(id, { metering: metering({ cost_msat: 5 }), cost_msat: 5 }),
    },
    { name: 'result cost is not the metering cost', receipt: (id) => result(id, { cost_msat: 1 }) },
    {
      name: 'metering not addressed to the peer',
      receipt: (id) => result(id, { metering: metering({}, { audience: router }) }),
    },
    {
      name: 'metering for another router than the peer',
      receipt: (id) => result(id, { metering: metering({ router }) }),
    },
    {
      name: 'metering signed by another node than the result names',
      receipt: (id) => result(id, { metering: metering({}, { signer: stranger }) }),
    },
    {
      name: 'metering of another model than the result',
      receipt: (id) => result(id, { model: 'other-model' }),
    },
    { name: 'metering is not JSON', receipt: (id) => result(id, { metering: 'not json' }) },
    {
      name: 'cost + fee over the reservation (cost alone fits)',
      receipt: (id) =>
        result(id, {
          cost_msat: bigCost,
          metering: metering({ tokens_out: 5000, cost_msat: bigCost }),
        }),
      reserve: bigCost + offloadFeeMsat(bigCost, FEE_BPS) - 1,
    },
    { name: 'the result is not JSON', receipt: () => '{"kind": 28121' },
    { name: 'the result is no event', receipt: () => 'null' },
  ];
  let n = 0;
  for (const c of cases) {
    const opId = `rq-offload-bad-${n++}`;
    await reserve(opId, c.reserve ?? 10_000);
    const start = await balances();
    const answer = await capture(opId, c.receipt(opId), c.peer);
    assert.equal(answer.status, 400, `${c.name}: ${JSON.stringify(answer.body)}`);
    assert.equal(answer.body.error?.code, 'BAD_METERING', c.name);
    assert.deepEqual(await balances(), start, `${c.name}: no money moved`);
    assert.equal((await op({ op: 'release', op_id: opId })).status, 200);
    assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, [], c.name);
  }
});

test('capture_offload: no reservation is NOT_FOUND; another router key is FORBIDDEN', async () => {
  const none = await capture('rq-offload-none-1', result('rq-offload-none-1'));
  assert.equal(none.status, 404, JSON.stringify(none.body));
  assert.equal(none.body.error?.code, 'NOT_FOUND');
  await reserve('rq-offload-forbidden-1');
  const forbidden = await op(
    {
      op: 'capture_offload',
      op_id: 'rq-offload-forbidden-1',
      amount_msat: 1,
      peer,
      result: result('rq-offload-forbidden-1'),
    },
    generateSecretKey(),
  );
  assert.equal(forbidden.status, 403, JSON.stringify(forbidden.body));
  assert.equal(forbidden.body.error?.code, 'FORBIDDEN');
  assert.equal((await op({ op: 'release', op_id: 'rq-offload-forbidden-1' })).status, 200);
});
