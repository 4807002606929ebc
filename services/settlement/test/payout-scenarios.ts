// Node payouts against each backend's stand-in (backend-scenarios.test.ts calls these with its
// rigs, so they share its PostgreSQL): a node's earnings from really node-signed charges are paid
// to its Lightning address (a LUD-16 server double whose wallet is the rig's payee) once, netted of
// the routing fee, with a settlement-signed statement the node checks against its own records; a
// failed payout gives everything back and uncovers the charges; a payout in flight at a restart is
// finished by the lookup, paid once.

import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import type { Db } from '@fed-ai/kit';
import { availableMsat, Ledger, verifyLedger } from '@fed-ai/ledger';
import { encodeInvoice, type LightningBackend } from '@fed-ai/lightning';
import {
  checkPayoutStatement,
  type Envelope,
  generateSecretKey,
  KIND,
  type MeteringRecord,
  type PayoutStatement,
  publicKeyOf,
  verifyEnvelope,
} from '@fed-ai/protocol';
import { type LnurlDouble, startLnurlDouble } from '../../../packages/lightning/test/lnurl-double';
import { ACCOUNTS, Books } from '../src/books';
import { readOverview } from '../src/overview';
import { Payouts } from '../src/payouts';
import type { BackendName, Rig } from './backend-scenarios-rig';
import { PAYOUT_ROUTER_FEE_BPS, testPayoutOptions } from './payout-fixtures';
import { signedMetering } from './signed-metering';

export interface PayoutCtx {
  rig: Rig;
  db: Db;
  ledger: Ledger;
  books: Books;
  adapters: (LightningBackend & { destroy?(): Promise<void> })[];
}

const ROUTER_FEE_BPS = PAYOUT_ROUTER_FEE_BPS;
const price = { input_msat_per_1k: 10_000, output_msat_per_1k: 20_000 };
const routerKey = generateSecretKey();
const router = publicKeyOf(routerKey);

const payoutOptions = (clock: { aheadS: number }) => testPayoutOptions(routerKey, () => clock.aheadS);

/** How the node's wallet answers the next invoice request. */
type WalletMode = 'pay' | 'fail' | 'hold';

export function payoutScenarios(name: BackendName, get: () => PayoutCtx): { close(): Promise<void> } {
  // Payouts' clock runs ahead of the database's by 2 s: a charge made this second is "old enough"
  // for a hold-back of 0 (created_at has sub-second precision).
  const clock = { aheadS: 2 };
  let lnurl: LnurlDouble | undefined;
  let payouts: Payouts | undefined;
  let walletMode: WalletMode = 'pay';
  const invoices: string[] = [];
  const records = new Map<string, { node: string; record: MeteringRecord }>();
  let seq = 0;

  async function setUp(): Promise<{ c: PayoutCtx; lnurl: LnurlDouble; payouts: Payouts }> {
    const c = get();
    lnurl ??= await startLnurlDouble({
      mint: async (amountMsat, descriptionHash) => {
        // LNbits (the devnet) refuses an invoice it did not issue ("no route"); the doubles fail a
        // routable one by script.
        const invoice =
          walletMode === 'fail' && name === 'lnbits'
            ? encodeInvoice({
                amountMsat,
                description: '',
                descriptionHash,
                expirySeconds: 3600,
                nodeSecretKeyHex: randomBytes(32).toString('hex'),
              })
            : await c.rig.foreignInvoice(amountMsat, descriptionHash);
        if (walletMode === 'fail') c.rig.failNext(invoice.paymentHash);
        if (walletMode === 'hold') c.rig.hold(invoice.paymentHash);
        invoices.push(invoice.paymentHash);
        return invoice.bolt11;
      },
    });
    payouts ??= new Payouts(c.db, c.ledger, c.books, payoutOptions(clock));
    return { c, lnurl, payouts };
  }

  /** A node with `count` charges of 100 in / 200 out tokens (5,000 msat each, 4,750 to the node). */
  async function nodeWithCharges(c: PayoutCtx, count: number): Promise<{ key: Uint8Array; node: string }> {
    const key = generateSecretKey();
    const node = publicKeyOf(key);
    const payer = `${name}-payout-payer-${++seq}`;
    const invoice = await c.books.openTopup(payer, count * 5000);
    await c.rig.payFromOutside(invoice);
    await c.books.creditSettledTopups();
    for (let i = 0; i < count; i++) await charge(c, key, payer);
    return { key, node };
  }

  async function charge(c: PayoutCtx, key: Uint8Array, payer: string): Promise<void> {
    const opId = `req-payout-${name}-${process.pid}-${++seq}`;
    await c.books.reserve(opId, payer, 5000, 600);
    const { record, metering } = signedMetering({
      opId,
      router,
      nodeKey: key,
      tokensIn: 100,
      tokensOut: 200,
      price,
    });
    records.set(metering.id, { node: publicKeyOf(key), record });
    assert.equal((await c.books.capture(opId, publicKeyOf(key), metering, router)).chargedMsat, 5000);
  }

  const earnings = async (c: PayoutCtx, node: string) => {
    const [account] = await c.ledger.lookupAccounts([ACCOUNTS.earnings(node)]);
    return { available: account ? availableMsat(account) : 0, held: account?.debitsPending ?? 0 };
  };
  const verified = async (db: Db) => assert.deepEqual((await verifyLedger(db)).problems, []);
  const uncovered = async (c: PayoutCtx, node: string) =>
    Number(
      (
        await c.db.query<{ n: string }>(
          'SELECT COUNT(*) AS n FROM charges WHERE node = $1 AND payout_id IS NULL',
          [node],
        )
      ).rows[0]?.n,
    );

  /** The node's own check: the envelope verifies, then every line against the records it signed. */
  async function nodeChecks(envelope: Envelope | null, node: string): Promise<PayoutStatement> {
    assert.ok(envelope, 'a paid payout has a statement');
    // A statement is checked whenever the node likes: no freshness window.
    const checked = await verifyEnvelope(JSON.stringify(envelope), {
      me: node,
      kinds: [KIND.payoutStatement],
      windowS: Number.MAX_SAFE_INTEGER,
    });
    assert.ok(checked.ok, JSON.stringify(checked));
    assert.equal(envelope.pubkey, router, 'signed by settlement');
    const statement = JSON.parse(envelope.content) as PayoutStatement;
    const mine = new Map(
      [...records].filter(([, r]) => r.node === node).map(([id, r]) => [id, r.record] as const),
    );
    assert.deepEqual(checkPayoutStatement(statement, node, mine), []);
    return statement;
  }

  test(`${name}: a node's earnings are paid to its Lightning address once, netted, with a statement it checks`, async () => {
    const { c, lnurl, payouts } = await setUp();
    const { node } = await nodeWithCharges(c, 4);
    assert.deepEqual(await earnings(c, node), { available: 19_000, held: 0 });
    await payouts.setDestination(node, { kind: 'lightning_address', address: lnurl.address('alice') });
    walletMode = 'pay';
    const outcome = await payouts.payOut(node);
    assert.equal(outcome.state, 'succeeded', JSON.stringify(outcome));
    // hold 19,000; fee budget max(1,000, 1 %) = 1,000; whole sats of the rest: 18,000.
    assert.equal(lnurl.asked.at(-1), 18_000);
    const hash = invoices.at(-1)!;
    assert.equal(c.rig.sends(hash), 1);
    const [listed] = await payouts.list(node);
    assert.equal(listed?.state, 'succeeded');
    const statement = await nodeChecks(listed!.statement, node);
    assert.equal(statement.charges.length, 4);
    assert.equal(statement.gross_msat, 19_000);
    assert.equal(statement.amount_msat, 18_000);
    assert.equal(statement.payment_hash, hash);
    assert.deepEqual(statement.destination, { kind: 'lightning_address', address: lnurl.address('alice') });
    const left = await earnings(c, node);
    assert.equal(left.held, 0);
    assert.equal(left.available, 19_000 - 18_000 - statement.fee_msat, 'the fee came out of the earnings');
    assert.equal(left.available, statement.returned_msat, 'what is left is the unspent fee budget');
    assert.equal(await uncovered(c, node), 0);
    // The operator's overview lists it with what was paid and the routing fee it cost.
    const shown = (await readOverview(c.db, Math.floor(Date.now() / 1000), 100)).payouts.recent.find(
      (p) => p.node === node,
    );
    assert.deepEqual(
      { ...shown, created_at_s: undefined },
      {
        payout_id: listed!.payout_id,
        node,
        state: 'succeeded',
        amount_msat: 18_000,
        fee_msat: statement.fee_msat,
        created_at_s: undefined,
      },
    );

    const again = await payouts.payOut(node);
    assert.equal(again.state, 'skipped');
    assert.equal(c.rig.sends(hash), 1, 'never paid twice');
    assert.equal((await payouts.list(node)).length, 1);
    await verified(c.db);
  });

  test(`${name}: a failed payout gives the hold back and uncovers its charges; the next one pays them`, async () => {
    const { c, lnurl, payouts } = await setUp();
    const { node } = await nodeWithCharges(c, 3);
    await payouts.setDestination(node, { kind: 'lightning_address', address: lnurl.address('bob') });
    walletMode = 'fail';
    const failed = await payouts.payOut(node);
    assert.equal(failed.state, 'failed', JSON.stringify(failed));
    assert.deepEqual(await earnings(c, node), { available: 14_250, held: 0 });
    assert.equal(await uncovered(c, node), 3);
    assert.equal((await payouts.list(node))[0]?.statement, null, 'no statement for a failure');
    walletMode = 'pay';
    const paid = await payouts.payOut(node);
    assert.equal(paid.state, 'succeeded', JSON.stringify(paid));
    const states = (await payouts.list(node)).map((p) => p.state).sort();
    assert.deepEqual(states, ['failed', 'succeeded']);
    const paidRow = (await payouts.list(node)).find((p) => p.state === 'succeeded');
    const statement = await nodeChecks(paidRow!.statement, node);
    assert.equal(statement.charges.length, 3, 'the failed payout’s charges are in the paid one');
    assert.equal(await uncovered(c, node), 0);
    await verified(c.db);
  });

  test(`${name}: a payout in flight at a restart is finished by lookup, paid once; none starts meanwhile`, async () => {
    const { c, lnurl, payouts } = await setUp();
    const { node, key } = await nodeWithCharges(c, 3);
    await payouts.setDestination(node, { kind: 'lightning_address', address: lnurl.address('carol') });
    walletMode = 'hold';
    const minted = invoices.length;
    const first = payouts.payOut(node);
    const hash = await (async () => {
      for (let i = 0; i < 400 && (invoices.length === minted || c.rig.sends(invoices.at(-1)!) === 0); i++)
        await new Promise((r) => setTimeout(r, 25));
      return invoices.at(-1)!;
    })();
    assert.equal(c.rig.sends(hash), 1, 'sent, its answer held back');
    // LND and CLN: the adapter's wait ends with the outcome unknown (LNbits: the devnet paid at
    // once, only its answer is held, so that call waits).
    if (name !== 'lnbits') assert.equal((await first).state, 'pending');
    walletMode = 'pay';
    // The restart: new books and payouts over the same database, a new adapter, nothing in memory.
    const adapter = c.rig.adapter();
    c.adapters.push(adapter);
    const books = new Books(c.db, await Ledger.open(c.db), adapter, { routerFeeBps: ROUTER_FEE_BPS });
    const restarted = new Payouts(c.db, c.ledger, books, payoutOptions(clock));
    const payer = `${name}-payout-late-${++seq}`;
    const topup = await books.openTopup(payer, 5000);
    await c.rig.payFromOutside(topup);
    await books.creditSettledTopups();
    await charge(c, key, payer); // earned meanwhile: not in the open payout
    const meanwhile = await restarted.payOut(node);
    assert.deepEqual(meanwhile, { node, state: 'skipped', reason: 'PAYOUT_IN_FLIGHT' });
    c.rig.finish(hash, 'succeed');
    await books.resolvePendingPayments();
    await first;
    const [listed] = await restarted.list(node);
    assert.equal(listed?.state, 'succeeded');
    const statement = await nodeChecks(listed!.statement, node);
    assert.equal(statement.charges.length, 3);
    assert.equal(c.rig.sends(hash), 1, 'one payment at the backend');
    assert.equal(await uncovered(c, node), 1, 'the later charge waits for the next payout');
    await verified(c.db);
  });

  if (name === 'lnd')
    test('lnd: charges younger than the hold-back or under an open dispute wait; the threshold holds', async () => {
      const { c, lnurl } = await setUp();
      const young = new Payouts(c.db, c.ledger, c.books, {
        ...payoutOptions(clock),
        holdBackS: 60,
        thresholdMsat: 9000,
      });
      const { node } = await nodeWithCharges(c, 3);
      await young.setDestination(node, { kind: 'lightning_address', address: lnurl.address('dave') });
      walletMode = 'pay';
      assert.deepEqual(await young.payOut(node), { node, state: 'skipped', reason: 'NOTHING_PAYABLE' });
      const [disputed] = (
        await c.db.query<{ op_id: string }>('SELECT op_id FROM charges WHERE node = $1 ORDER BY op_id', [
          node,
        ])
      ).rows;
      await c.db.query(
        `INSERT INTO disputes (case_id, charge_op_id, role, party, claimant, state, evidence, opened_at_s)
         VALUES ($1, $2, 'payer', 'p', 'p', 'opened', '{}', $3)`,
        [`dsp_${'0'.repeat(32)}`, disputed!.op_id, Math.floor(Date.now() / 1000)],
      );
      clock.aheadS += 61;
      try {
        const paid = await young.payOut(node);
        assert.equal(paid.state, 'succeeded', JSON.stringify(paid));
        const statement = await nodeChecks((await young.list(node))[0]!.statement, node);
        assert.deepEqual(
          statement.charges.map((ch) => ch.op_id).includes(disputed!.op_id),
          false,
          'the disputed charge is not paid out',
        );
        assert.equal(statement.gross_msat, 9500);
        assert.equal(await uncovered(c, node), 1);
        // What is left (the disputed 4,750 + the unspent fee budget) is under the threshold.
        assert.equal((await young.payOut(node)).state, 'skipped');
      } finally {
        clock.aheadS -= 61;
      }
      await verified(c.db);
    });

  return {
    close: async () => {
      await lnurl?.close();
    },
  };
}
