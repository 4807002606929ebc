// Issue 14 "Must show": the money scenarios against each backend's stand-in (LNbits: the devnet
// Lightning service; LND and CLN: their doubles), through settlement's books (in process, over a
// real PostgreSQL) and, for the crash, settlement itself as a child process. Per backend: a top-up
// credited exactly once when the invoice settles; a refund; a payment that succeeds, fails, times
// out, meets "already paid", and is in flight at a restart; and a SIGKILL of settlement between
// sending a payment and recording it, then a restart: paid exactly once, the ledger verifies.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { type Db, migrate, openDb, serviceNodeArgs, startPostgres } from '@fed-ai/kit';
import { availableMsat, Ledger, verifyLedger } from '@fed-ai/ledger';
import { type LightningBackend, sha256Hex } from '@fed-ai/lightning';
import {
  createNip98Header,
  FedAiError,
  generateSecretKey,
  publicKeyOf,
  secretKeyHex,
} from '@fed-ai/protocol';
import { ACCOUNTS, BOOKS_MIGRATIONS, Books } from '../src/books';
import { reconcile } from '../src/reconcile';
import { type BackendName, type Rig, startRig, unroutableInvoice } from './backend-scenarios-rig';
import { payoutScenarios } from './payout-scenarios';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'fedai-backend-scenarios-'));
const BACKENDS: BackendName[] = ['lnbits', 'lnd', 'cln'];
const routerKey = generateSecretKey();
let pg: Awaited<ReturnType<typeof startPostgres>>;
const children = new Set<ChildProcess>();

interface Ctx {
  rig: Rig;
  db: Db;
  ledger: Ledger;
  books: Books;
  adapters: (LightningBackend & { destroy?(): Promise<void> })[];
}
const ctx = new Map<BackendName, Ctx>();
const dbUrl = (name: string) => pg.url.replace(/\/postgres$/, `/${name}`);

before(async () => {
  pg = await startPostgres();
  const admin = await openDb({ url: pg.url });
  for (const name of ['devnet', ...BACKENDS.flatMap((b) => [`books_${b}`, `child_${b}`])])
    await admin.query(`CREATE DATABASE ${name}`);
  await admin.close();
  await Promise.all(
    BACKENDS.map(async (name) => {
      const rig = await startRig(name, { dir, databaseUrl: dbUrl('devnet') });
      const db = await openDb({ url: dbUrl(`books_${name}`) });
      const ledger = await Ledger.open(db);
      await migrate(db, 'settlement-books', BOOKS_MIGRATIONS);
      const adapter = rig.adapter();
      const books = new Books(db, ledger, adapter, { routerFeeBps: 500 });
      await books.init();
      ctx.set(name, { rig, db, ledger, books, adapters: [adapter] });
    }),
  );
});

const payoutRuns = BACKENDS.map((name) => payoutScenarios(name, () => ctx.get(name)!));

after(async () => {
  for (const run of payoutRuns) await run.close();
  for (const child of children) child.kill('SIGKILL');
  for (const c of ctx.values()) {
    for (const adapter of c.adapters) await adapter.destroy?.();
    await c.db.close();
    await c.rig.close();
  }
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
});

let seq = 0;
async function tab(c: Ctx, payer: string): Promise<{ available: number; held: number }> {
  const [account] = await c.ledger.lookupAccounts([ACCOUNTS.tab(payer)]);
  return { available: account ? availableMsat(account) : 0, held: account?.debitsPending ?? 0 };
}
/** A tab funded by an invoice paid from outside and credited by settlement's watcher. */
async function funded(c: Ctx, msat: number): Promise<string> {
  const payer = `${c.rig.name}-payer-${++seq}`;
  const invoice = await c.books.openTopup(payer, msat);
  await c.rig.payFromOutside(invoice);
  await c.books.creditSettledTopups();
  assert.equal((await tab(c, payer)).available, msat);
  return payer;
}
const verified = async (db: Db) => assert.deepEqual((await verifyLedger(db)).problems, []);
const rejectsWith = (code: string) => (error: unknown) => {
  assert.ok(error instanceof FedAiError, String(error));
  assert.equal(error.code, code, error.message);
  return true;
};

for (const name of BACKENDS) {
  const c = () => ctx.get(name)!;

  test(`${name}: a top-up is credited exactly once when its invoice settles`, async () => {
    const payer = `${name}-topup`;
    const invoice = await c().books.openTopup(payer, 5000);
    assert.equal(await c().books.creditSettledTopups(), 0, 'nothing before it is paid');
    await c().rig.payFromOutside(invoice);
    assert.equal(await c().books.creditSettledTopups(), 1);
    assert.equal(await c().books.creditSettledTopups(), 0, 'a second sweep credits nothing');
    const report = await reconcile(c().books, c().ledger, c().adapters[0]!);
    assert.deepEqual(report.topups.credited, [], 'reconciliation finds nothing to add');
    assert.deepEqual(await tab(c(), payer), { available: 5000, held: 0 });
    const [credit] = await c().ledger.lookupTransfers([`topup:${invoice.paymentHash}`]);
    assert.equal(credit?.debitAccountId, ACCOUNTS.lightning, 'the money came over Lightning');
    await verified(c().db);
  });

  test(`${name}: a refund pays once; a second refund of the invoice is refused`, async () => {
    const payer = await funded(c(), 10_000);
    const target = await c().rig.foreignInvoice(4000);
    const refund = await c().books.refund(payer, target.bolt11);
    assert.equal(refund.state, 'succeeded');
    assert.deepEqual(await tab(c(), payer), { available: 6000, held: 0 });
    const row = await c().books.paymentRow(target.paymentHash);
    assert.equal(row?.state, 'succeeded');
    assert.equal(sha256Hex(row!.preimage!), target.paymentHash, 'the preimage is the proof');
    await assert.rejects(c().books.refund(payer, target.bolt11), rejectsWith('IDEMPOTENCY_CONFLICT'));
    assert.equal(c().rig.sends(target.paymentHash), 1);
    assert.equal((await tab(c(), payer)).available, 6000);
    await verified(c().db);
  });

  test(`${name}: an account payment succeeds; asking again answers the same payment`, async () => {
    const payer = await funded(c(), 9000);
    const target = await c().rig.foreignInvoice(3000);
    const paid = await c().books.accountPay(payer, target.bolt11);
    assert.equal(paid.state, 'succeeded');
    const again = await c().books.accountPay(payer, target.bolt11);
    assert.equal(again.state, 'succeeded');
    assert.equal(again.preimage, paid.preimage);
    assert.equal(c().rig.sends(target.paymentHash), 1, 'sent once');
    assert.deepEqual(await tab(c(), payer), { available: 6000, held: 0 });
    await verified(c().db);
  });

  test(`${name}: a failed payment gives the hold back`, async () => {
    const payer = await funded(c(), 5000);
    // LNbits (the devnet) refuses an invoice it did not issue ("no route"); the doubles fail a
    // routable one by script.
    const target = name === 'lnbits' ? unroutableInvoice(3000) : await c().rig.foreignInvoice(3000);
    c().rig.failNext(target.paymentHash);
    await assert.rejects(c().books.refund(payer, target.bolt11), rejectsWith('SETTLEMENT_UNAVAILABLE'));
    const row = await c().books.paymentRow(target.paymentHash);
    assert.equal(row?.state, 'failed');
    assert.ok(
      row?.failure_code === 'NO_ROUTE' || row?.failure_code === 'INVOICE_NOT_FOUND',
      row?.failure_code ?? '',
    );
    assert.deepEqual(await tab(c(), payer), { available: 5000, held: 0 });
    await verified(c().db);
  });

  test(`${name}: "already paid" by someone else is refused definitely; nothing is taken`, async () => {
    const payer = await funded(c(), 5000);
    const target = await c().rig.foreignInvoice(2000);
    await c().rig.paidElsewhere(target);
    await assert.rejects(c().books.refund(payer, target.bolt11), rejectsWith('ALREADY_PAID'));
    assert.equal((await c().books.paymentRow(target.paymentHash))?.failure_code, 'ALREADY_PAID');
    assert.equal(c().rig.sends(target.paymentHash), 0, 'nothing was sent');
    assert.deepEqual(await tab(c(), payer), { available: 5000, held: 0 });
    await verified(c().db);
  });

  test(`${name}: a payment past the pay timeout is not released blindly`, async () => {
    const payer = await funded(c(), 8000);
    const target = await c().rig.foreignInvoice(3000);
    c().rig.hold(target.paymentHash);
    const refund = await c().books.refund(payer, target.bolt11);
    if (name === 'lnbits') {
      // The devnet paid at once; only the answer was late: the lookup after the timeout finds it.
      assert.equal(refund.state, 'succeeded');
      c().rig.finish(target.paymentHash, 'succeed');
      assert.deepEqual(await tab(c(), payer), { available: 5000, held: 0 });
    } else {
      assert.equal(refund.state, 'pending', 'the outcome is unknown: the hold stays');
      assert.deepEqual(await tab(c(), payer), { available: 5000, held: 3000 });
      c().rig.finish(target.paymentHash, 'fail');
      assert.equal(await c().books.resolvePendingPayments(), 1);
      assert.equal((await c().books.paymentRow(target.paymentHash))?.state, 'failed');
      assert.deepEqual(await tab(c(), payer), { available: 8000, held: 0 }, 'the failure gave it back');
    }
    assert.equal(c().rig.sends(target.paymentHash), 1);
    await verified(c().db);
  });

  test(`${name}: a payment in flight at a restart is resolved by lookup, paid once`, async () => {
    const payer = await funded(c(), 8000);
    const target = await c().rig.foreignInvoice(3000);
    c().rig.hold(target.paymentHash);
    const sent = new Promise<void>((done) => c().rig.onSent(target.paymentHash, done));
    const first = c().books.refund(payer, target.bolt11);
    await sent;
    if (name !== 'lnbits') assert.equal((await first).state, 'pending');
    // The restart: new books over the same database, a new adapter, nothing in flight in memory.
    const adapter = c().rig.adapter();
    c().adapters.push(adapter);
    const restarted = new Books(c().db, await Ledger.open(c().db), adapter, { routerFeeBps: 500 });
    if (name === 'lnbits') {
      assert.equal(await restarted.resolvePendingPayments(), 1, 'the devnet already paid it');
      c().rig.finish(target.paymentHash, 'succeed');
      assert.equal((await first).state, 'succeeded', 'the old call agrees');
    } else {
      assert.equal(
        await restarted.resolvePendingPayments(),
        0,
        'still in flight: neither voided nor sent again',
      );
      assert.equal((await restarted.paymentRow(target.paymentHash))?.state, 'pending');
      c().rig.finish(target.paymentHash, 'succeed');
      assert.equal(await restarted.resolvePendingPayments(), 1);
    }
    assert.equal((await restarted.paymentRow(target.paymentHash))?.state, 'succeeded');
    assert.equal(c().rig.sends(target.paymentHash), 1, 'one payment at the backend');
    assert.deepEqual(await tab(c(), payer), { available: 5000, held: 0 });
    await verified(c().db);
  });
}

// ---- settlement as a child process, SIGKILLed between the send and its record ----

function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

async function waitReady(url: string, log: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 600; i++) {
    if (child.exitCode !== null) break;
    try {
      if ((await fetch(`${url}/ready`, { signal: AbortSignal.timeout(500) })).ok) return;
    } catch {
      // starting
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`settlement at ${url} not ready:\n${readFileSync(log, 'utf8').slice(-1500)}`);
}

async function crashScenario(name: BackendName): Promise<void> {
  const { rig } = ctx.get(name)!;
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const log = join(dir, `settlement-${name}.err.log`);
  const env = {
    ...process.env,
    LOG_LEVEL: 'warn',
    SETTLEMENT_PORT: String(port),
    SETTLEMENT_KEY: secretKeyHex(generateSecretKey()),
    SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
    SWEEP_INTERVAL_MS: '200',
    RECONCILE_INTERVAL_S: '0',
    STARTUP_WAIT_S: '0',
    DATA_DIR: join(dir, `settlement-${name}`),
    DATABASE_URL: dbUrl(`child_${name}`),
    ...rig.env,
  };
  const start = async () => {
    const child = spawn(
      process.execPath,
      serviceNodeArgs(resolve(root, 'services/settlement/src/main.ts'), ['--import', 'tsx']),
      {
        cwd: root,
        env,
        stdio: ['ignore', 'ignore', openSync(log, 'a')],
      },
    );
    children.add(child);
    child.once('exit', () => children.delete(child));
    await waitReady(url, log, child);
    return child;
  };
  const signed = (method: 'GET' | 'POST', path: string, body?: string) =>
    fetch(`${url}${path}`, {
      method,
      headers: {
        'content-type': 'application/json',
        authorization: createNip98Header(`${url}${path}`, method, body, routerKey),
      },
      ...(body === undefined ? {} : { body }),
    });
  const tabMsat = async (payer: string) =>
    ((await (await signed('GET', `/v1/tabs/${payer}`)).json()) as { balance_msat: number }).balance_msat;

  let child = await start();
  const payer = `crash-${name}`;
  const topup = (await (
    await signed('POST', '/v1/topups', JSON.stringify({ payer, amount_msat: 10_000 }))
  ).json()) as { bolt11: string; payment_hash: string };
  await rig.payFromOutside({
    paymentHash: topup.payment_hash,
    bolt11: topup.bolt11,
    amountMsat: 10_000,
    description: '',
    createdAtS: 0,
    expiresAtS: 0,
    state: 'open',
  });
  for (let i = 0; i < 100 && (await tabMsat(payer)) !== 10_000; i++)
    await new Promise((r) => setTimeout(r, 100));
  assert.equal(await tabMsat(payer), 10_000, 'the top-up was credited by the watcher');

  // The payment reaches the backend; settlement dies before it hears (and records) the outcome.
  const target = await rig.foreignInvoice(4000);
  rig.hold(target.paymentHash);
  const exited = new Promise((done) => child.once('exit', done));
  rig.onSent(target.paymentHash, () => child.kill('SIGKILL'));
  const refund = await signed('POST', '/v1/refunds', JSON.stringify({ payer, bolt11: target.bolt11 })).then(
    (r) => r.status,
    () => 'no answer',
  );
  await exited;
  assert.equal(refund, 'no answer', 'killed before answering');
  assert.equal(rig.sends(target.paymentHash), 1);
  rig.finish(target.paymentHash, 'succeed'); // the node completes it while settlement is down

  child = await start(); // start-up resolves pending payments from the backend's answer
  const db = await openDb({ url: dbUrl(`child_${name}`) });
  try {
    const rows = await db.query<{ state: string; preimage: string | null }>(
      'SELECT state, preimage FROM payments WHERE payment_hash = $1',
      [target.paymentHash],
    );
    assert.equal(rows.rows.length, 1);
    assert.equal(rows.rows[0]?.state, 'succeeded', `${name}: resolved from a lookup`);
    assert.equal(sha256Hex(rows.rows[0]!.preimage!), target.paymentHash);
    assert.equal(rig.sends(target.paymentHash), 1, `${name}: paid exactly once`);
    assert.equal(await tabMsat(payer), 6000, 'the tab paid once');
    await verified(db);
  } finally {
    await db.close();
    const gone = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await gone;
  }
}

test('SIGKILL of settlement between sending a payment and recording it: paid exactly once, per backend', {
  timeout: 120_000,
}, async () => {
  const results = await Promise.allSettled(BACKENDS.map((name) => crashScenario(name)));
  for (const [i, result] of results.entries())
    if (result.status === 'rejected')
      throw new Error(`${BACKENDS[i]}: ${String(result.reason?.stack ?? result.reason)}`);
});
