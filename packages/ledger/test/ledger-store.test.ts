// The ledger on embedded PGlite and on a real PostgreSQL server: same suite on both.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { type Db, openDb, startPostgres } from '@fed-ai/kit';
import {
  ACCOUNT_FLAGS,
  availableMsat,
  Ledger,
  LedgerInvariantError,
  TRANSFERS_BY_ID,
  type TransferInput,
  verifyLedger,
} from '../src/index';

let pg: Awaited<ReturnType<typeof startPostgres>>;
before(async () => {
  pg = await startPostgres();
});
after(async () => {
  await pg.stop();
});

const backends: [string, () => Promise<Db>][] = [
  ['pglite', () => openDb({})],
  ['postgres', () => openDb({ url: pg.url, maxConnections: 20 })],
];

for (const [name, open] of backends) {
  describe(`ledger on ${name}`, () => {
    let db: Db;
    let ledger: Ledger;
    let clock = 1_000;
    before(async () => {
      db = await open();
      ledger = await Ledger.open(db, () => clock);
    });
    after(async () => {
      await db.close();
    });

    test('create, post part of a pending, void, expire; verify passes', async () => {
      await ledger.createAccounts([
        { id: 'a:asset' },
        { id: 'a:tab', flags: ACCOUNT_FLAGS.debitsMustNotExceedCredits },
        { id: 'a:escrow' },
        { id: 'a:node' },
      ]);
      await ledger.createAccounts([{ id: 'a:tab', flags: 0 }]); // idempotent, flags unchanged
      const codes = async (batch: TransferInput[]) =>
        (await ledger.createTransfers(batch)).map((r) => r.code);
      assert.deepEqual(
        await codes([
          {
            id: 'a-fund',
            kind: 'single',
            debitAccountId: 'a:asset',
            creditAccountId: 'a:tab',
            amountMsat: 1000,
          },
        ]),
        ['OK'],
      );
      assert.deepEqual(
        await codes([
          {
            id: 'a-res',
            kind: 'pending',
            debitAccountId: 'a:tab',
            creditAccountId: 'a:escrow',
            amountMsat: 600,
            timeoutS: 30,
          },
        ]),
        ['OK'],
      );
      assert.deepEqual(
        await codes([
          {
            id: 'a-res2',
            kind: 'pending',
            debitAccountId: 'a:tab',
            creditAccountId: 'a:escrow',
            amountMsat: 500,
            timeoutS: 30,
          },
        ]),
        ['EXCEEDS_CREDITS'],
      );
      assert.deepEqual(
        await codes([
          {
            id: 'a-post',
            kind: 'post',
            debitAccountId: 'a:tab',
            creditAccountId: 'a:escrow',
            amountMsat: 250,
            pendingId: 'a-res',
            linked: true,
          },
          {
            id: 'a-pay',
            kind: 'single',
            debitAccountId: 'a:escrow',
            creditAccountId: 'a:node',
            amountMsat: 250,
          },
        ]),
        ['OK', 'OK'],
      );
      const [tab] = await ledger.lookupAccounts(['a:tab']);
      assert.equal(availableMsat(tab!), 750);
      assert.equal(tab!.flags, ACCOUNT_FLAGS.debitsMustNotExceedCredits);
      // Idempotent retries.
      assert.deepEqual(
        await codes([
          {
            id: 'a-fund',
            kind: 'single',
            debitAccountId: 'a:asset',
            creditAccountId: 'a:tab',
            amountMsat: 1000,
          },
        ]),
        ['EXISTS'],
      );
      assert.deepEqual(
        await codes([
          {
            id: 'a-fund',
            kind: 'single',
            debitAccountId: 'a:asset',
            creditAccountId: 'a:tab',
            amountMsat: 999,
          },
        ]),
        ['EXISTS_WITH_DIFFERENT_FIELDS'],
      );
      assert.deepEqual(
        await codes([
          {
            id: 'a-post',
            kind: 'post',
            debitAccountId: 'a:tab',
            creditAccountId: 'a:escrow',
            amountMsat: 250,
            pendingId: 'a-res',
          },
        ]),
        ['EXISTS'],
      );
      // A pending that times out is expired by the sweeper and releases its hold.
      assert.deepEqual(
        await codes([
          {
            id: 'a-res3',
            kind: 'pending',
            debitAccountId: 'a:tab',
            creditAccountId: 'a:escrow',
            amountMsat: 700,
            timeoutS: 5,
          },
        ]),
        ['OK'],
      );
      clock += 10;
      const staleReport = await verifyLedger(db, clock);
      assert.ok(staleReport.problems.some((p) => p.code === 'PENDING_OUTLIVED_TIMEOUT'));
      assert.equal(await ledger.expirePending(), 1);
      assert.equal(await ledger.expirePending(), 0);
      const [after] = await ledger.lookupAccounts(['a:tab']);
      assert.equal(availableMsat(after!), 750);
      const report = await verifyLedger(db, clock);
      assert.deepEqual(report.problems, []);
      assert.equal(report.ok, true);
    });

    test('a pending made and posted in the same batch is stored posted; balances and verify agree', async () => {
      await ledger.createAccounts([
        { id: 'sb:asset' },
        { id: 'sb:tab', flags: ACCOUNT_FLAGS.debitsMustNotExceedCredits },
        { id: 'sb:escrow' },
      ]);
      const results = await ledger.createTransfers([
        {
          id: 'sb-fund',
          kind: 'single',
          debitAccountId: 'sb:asset',
          creditAccountId: 'sb:tab',
          amountMsat: 500,
        },
        {
          id: 'sb-res',
          kind: 'pending',
          debitAccountId: 'sb:tab',
          creditAccountId: 'sb:escrow',
          amountMsat: 200,
          timeoutS: 60,
        },
        {
          id: 'sb-post',
          kind: 'post',
          pendingId: 'sb-res',
          debitAccountId: 'sb:tab',
          creditAccountId: 'sb:escrow',
          amountMsat: 120,
        },
        {
          id: 'sb-res2',
          kind: 'pending',
          debitAccountId: 'sb:tab',
          creditAccountId: 'sb:escrow',
          amountMsat: 50,
          timeoutS: 60,
        },
        {
          id: 'sb-void',
          kind: 'void',
          pendingId: 'sb-res2',
          debitAccountId: 'sb:tab',
          creditAccountId: 'sb:escrow',
          amountMsat: 0,
        },
      ]);
      assert.deepEqual(
        results.map((r) => r.code),
        ['OK', 'OK', 'OK', 'OK', 'OK'],
      );
      const stored = new Map((await ledger.lookupTransfers(['sb-res', 'sb-res2'])).map((t) => [t.id, t]));
      assert.equal(stored.get('sb-res')?.resolution, 'posted');
      assert.equal(stored.get('sb-res2')?.resolution, 'voided');
      const [tab] = await ledger.lookupAccounts(['sb:tab']);
      assert.equal(availableMsat(tab!), 380);
      assert.equal(tab!.debitsPending, 0);
      assert.deepEqual((await verifyLedger(db, clock)).problems, []);
    });

    test('verify on live books: a transfer committed while it reads is not reported as unbalanced', async () => {
      await ledger.createAccounts([{ id: 'lv:asset' }, { id: 'lv:tab' }]);
      const before = await verifyLedger(db, clock);
      // A service keeps writing while an operator runs `fedai ledger verify`: a transfer commits
      // after verify's first statement answers, before any later one.
      let committed = false;
      const live = {
        query: async <Row>(sql: string, params?: unknown[]) => {
          const result = await db.query<Row>(sql, params);
          if (!committed) {
            committed = true;
            const transfer = {
              id: 'lv-fund',
              kind: 'single',
              debitAccountId: 'lv:asset',
              creditAccountId: 'lv:tab',
              amountMsat: 777,
            } as const;
            assert.deepEqual(
              (await ledger.createTransfers([transfer])).map((r) => r.code),
              ['OK'],
            );
          }
          return result;
        },
      };
      const report = await verifyLedger(live, clock);
      assert.equal(committed, true);
      assert.deepEqual(report.problems, []);
      assert.equal(
        report.postedTotalMsat,
        before.postedTotalMsat,
        'one snapshot: the new transfer is not in it',
      );
      assert.equal(report.transfers, before.transfers);
      assert.equal((await verifyLedger(db, clock)).postedTotalMsat, before.postedTotalMsat + 777);
    });

    test('a throw inside the transaction leaves nothing behind', async () => {
      await ledger.createAccounts([{ id: 'b:x' }, { id: 'b:y' }]);
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query(`UPDATE ledger_accounts SET credits_posted = credits_posted + 5 WHERE id = 'b:y'`);
          throw new Error('crash between writes');
        }),
      );
      const [y] = await ledger.lookupAccounts(['b:y']);
      assert.equal(y!.creditsPosted, 0);
      assert.equal((await verifyLedger(db, clock)).ok, true);
    });

    test('invariants are asserted inside the transaction: a corrupt account rolls the batch back', async () => {
      await ledger.createAccounts([
        { id: 'e:asset' },
        { id: 'e:tab', flags: ACCOUNT_FLAGS.debitsMustNotExceedCredits },
        { id: 'e:escrow' },
      ]);
      await ledger.createTransfers([
        {
          id: 'e-fund',
          kind: 'single',
          debitAccountId: 'e:asset',
          creditAccountId: 'e:tab',
          amountMsat: 100,
        },
        {
          id: 'e-hold',
          kind: 'pending',
          debitAccountId: 'e:tab',
          creditAccountId: 'e:escrow',
          amountMsat: 30,
          timeoutS: 600,
        },
      ]);
      const [clean] = await ledger.lookupAccounts(['e:tab']);
      const rows = async () =>
        (
          await db.query<{ n: number }>(
            `SELECT COUNT(*)::bigint AS n FROM ledger_transfers WHERE id LIKE 'e-%'`,
          )
        ).rows[0]!.n;
      const transfersBefore = await rows();

      // 1. A flag no longer holds (debits 150 > credits): a credit the rules allow is still refused.
      await db.query(`UPDATE ledger_accounts SET debits_posted = 150 WHERE id = 'e:tab'`);
      const credit = ledger.createTransfers([
        { id: 'e-more', kind: 'single', debitAccountId: 'e:asset', creditAccountId: 'e:tab', amountMsat: 10 },
      ]);
      await assert.rejects(credit, (error: unknown) => {
        assert.ok(error instanceof LedgerInvariantError);
        assert.deepEqual(
          error.problems.map((p) => p.code),
          ['FLAG_VIOLATED'],
        );
        return true;
      });
      const [afterFlag] = await ledger.lookupAccounts(['e:tab']);
      assert.equal(afterFlag!.creditsPosted, 100, 'the credit rolled back');
      assert.equal(await rows(), transfersBefore, 'no transfer row was written');

      // 2. The hold's pending balance was wiped: voiding it would go negative, so it rolls back.
      await db.query(`UPDATE ledger_accounts SET debits_posted = 0, debits_pending = 0 WHERE id = 'e:tab'`);
      const voided = ledger.createTransfers([
        {
          id: 'e-void',
          kind: 'void',
          pendingId: 'e-hold',
          debitAccountId: 'e:tab',
          creditAccountId: 'e:escrow',
          amountMsat: 0,
        },
      ]);
      await assert.rejects(voided, (error: unknown) => {
        assert.ok(error instanceof LedgerInvariantError);
        assert.ok(error.problems.some((p) => p.code === 'NEGATIVE_BALANCE' && p.accountId === 'e:tab'));
        return true;
      });
      const [hold] = await ledger.lookupTransfers(['e-hold']);
      assert.equal(hold!.resolution, null, 'the hold is still open');
      const [escrow] = await ledger.lookupAccounts(['e:escrow']);
      assert.equal(escrow!.creditsPending, 30, 'the other account of the batch rolled back too');
      assert.equal(await rows(), transfersBefore);

      // Repair the row; the books verify again and the void now goes through.
      await db.query(`UPDATE ledger_accounts SET debits_posted = $2, debits_pending = $3 WHERE id = $1`, [
        'e:tab',
        clean!.debitsPosted,
        clean!.debitsPending,
      ]);
      assert.deepEqual((await verifyLedger(db, clock)).problems, []);
      assert.deepEqual(
        (
          await ledger.createTransfers([
            {
              id: 'e-void',
              kind: 'void',
              pendingId: 'e-hold',
              debitAccountId: 'e:tab',
              creditAccountId: 'e:escrow',
              amountMsat: 0,
            },
          ])
        ).map((r) => r.code),
        ['OK'],
      );
      assert.deepEqual((await verifyLedger(db, clock)).problems, []);
    });

    test('expiry writes what the rules decide and refuses a corrupt account too', async () => {
      await ledger.createAccounts([
        { id: 'f:asset' },
        { id: 'f:tab', flags: ACCOUNT_FLAGS.debitsMustNotExceedCredits },
        { id: 'f:escrow' },
      ]);
      await ledger.createTransfers([
        { id: 'f-fund', kind: 'single', debitAccountId: 'f:asset', creditAccountId: 'f:tab', amountMsat: 50 },
        {
          id: 'f-hold',
          kind: 'pending',
          debitAccountId: 'f:tab',
          creditAccountId: 'f:escrow',
          amountMsat: 20,
          timeoutS: 1,
        },
      ]);
      clock += 2;
      await db.query(`UPDATE ledger_accounts SET credits_pending = 0 WHERE id = 'f:escrow'`);
      await assert.rejects(ledger.expirePending(), LedgerInvariantError);
      const [stillOpen] = await ledger.lookupTransfers(['f-hold']);
      assert.equal(stillOpen!.resolution, null);
      await db.query(`UPDATE ledger_accounts SET credits_pending = 20 WHERE id = 'f:escrow'`);
      assert.equal(await ledger.expirePending(), 1);
      const [tab] = await ledger.lookupAccounts(['f:tab']);
      assert.equal(tab!.debitsPending, 0);
      assert.equal(availableMsat(tab!), 50);
      assert.deepEqual((await verifyLedger(db, clock)).problems, []);
    });

    test('concurrency: a tab holding exactly N reservations gets 10N concurrent ones; exactly N succeed', async () => {
      const n = 8;
      const price = 37;
      await ledger.createAccounts([
        { id: 'c:asset' },
        { id: 'c:tab', flags: ACCOUNT_FLAGS.debitsMustNotExceedCredits },
        { id: 'c:escrow' },
      ]);
      await ledger.createTransfers([
        {
          id: 'c-fund',
          kind: 'single',
          debitAccountId: 'c:asset',
          creditAccountId: 'c:tab',
          amountMsat: n * price,
        },
      ]);
      const results = await Promise.all(
        Array.from({ length: 10 * n }, (_, i) =>
          ledger.createTransfers([
            {
              id: `c-res-${i}`,
              kind: 'pending',
              debitAccountId: 'c:tab',
              creditAccountId: 'c:escrow',
              amountMsat: price,
              timeoutS: 60,
            },
          ]),
        ),
      );
      const ok = results.filter((r) => r[0]!.code === 'OK').length;
      assert.equal(ok, n);
      assert.equal(results.filter((r) => r[0]!.code === 'EXCEEDS_CREDITS').length, 9 * n);
      const [tab] = await ledger.lookupAccounts(['c:tab']);
      assert.equal(availableMsat(tab!), 0);
      assert.equal((await verifyLedger(db, clock)).ok, true);
    });

    test('concurrency: the same transfer id from many writers is applied once', async () => {
      await ledger.createAccounts([{ id: 'd:a' }, { id: 'd:b' }]);
      const results = await Promise.all(
        Array.from({ length: 10 }, () =>
          ledger.createTransfers([
            { id: 'd-once', kind: 'single', debitAccountId: 'd:a', creditAccountId: 'd:b', amountMsat: 7 },
          ]),
        ),
      );
      assert.equal(results.filter((r) => r[0]!.code === 'OK').length, 1);
      assert.equal(results.filter((r) => r[0]!.code === 'EXISTS').length, 9);
      const [b] = await ledger.lookupAccounts(['d:b']);
      assert.equal(b!.creditsPosted, 7);
    });

    test('transfer lookups probe the primary key, not the whole table (5,000 transfers)', async () => {
      await ledger.createAccounts([
        { id: 'plan-a', flags: 0 },
        { id: 'plan-b', flags: 0 },
      ]);
      for (let b = 0; b < 10; b++)
        await ledger.createTransfers(
          Array.from({ length: 500 }, (_, i) => ({
            id: `plan-${b}-${i}`,
            kind: 'single' as const,
            debitAccountId: 'plan-a',
            creditAccountId: 'plan-b',
            amountMsat: 1,
          })),
        );
      // A capture batch's size: ~70 ids, a few of them there.
      const ids = Array.from({ length: 70 }, (_, i) => (i < 5 ? `plan-3-${i}` : `absent-${i}`));
      const plan = (await db.query<Record<string, string>>(`EXPLAIN ${TRANSFERS_BY_ID}`, [ids])).rows
        .map((row) => Object.values(row)[0])
        .join('\n');
      assert.match(plan, /Index Scan using ledger_transfers_pkey/);
      assert.doesNotMatch(plan, /Seq Scan on ledger_transfers/);
      const found = await ledger.lookupTransfers([...ids, 'plan-3-0']);
      assert.deepEqual(found.map((t) => t.id).sort(), [
        'plan-3-0',
        'plan-3-1',
        'plan-3-2',
        'plan-3-3',
        'plan-3-4',
      ]);
      assert.deepEqual((await verifyLedger(db, clock)).problems, []);
    });
  });
}
