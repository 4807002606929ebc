// PGlite's statements run prepared (pglite-prepared.ts, issue 15): the same rows, counts, types
// and errors as PGlite's own query(); a schema change retires them (a cached `SELECT *` never
// hides a new column); a failed statement or transaction leaves the next ones working; statements
// outside a transaction never run inside another caller's open one; past the cap, statements run
// unprepared. Every check runs on a real PGlite database in a folder.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { PGlite } from '@electric-sql/pglite';
import { type Db, openDb } from '../src/index';
import { PreparedStatements } from '../src/pglite-prepared';

let dir: string;
let db: Db;
/** A bare PGlite beside it: what PGlite's own query() answers, and the cap's test. */
let bare: PGlite;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'fedai-prepared-'));
  db = await openDb({ dataDir: join(dir, 'db') });
  bare = await PGlite.create();
  await db.query(`CREATE TABLE things (
    id TEXT PRIMARY KEY, n BIGINT NOT NULL, doc JSONB, tags TEXT[], at TIMESTAMPTZ NOT NULL DEFAULT now())`);
});

after(async () => {
  await bare.close();
  await db.close();
  rmSync(dir, { recursive: true, force: true });
});

test('rows, counts and types are what query() gives: BIGINT as number, JSONB, arrays, NULL', async () => {
  const insert =
    'INSERT INTO things (id, n, doc, tags) SELECT * FROM unnest($1::text[], $2::bigint[]) AS v (id, n), LATERAL (SELECT $3::jsonb, $4::text[]) AS c';
  for (let i = 0; i < 3; i++) {
    const inserted = await db.query(insert, [
      [`a${i}`, `b${i}`],
      [2 ** 40 + i, i],
      { k: [1, 'x"\\'] },
      ['t,1', 'q"', null],
    ]);
    assert.equal(inserted.rowCount, 2);
  }
  await bare.exec(`CREATE TABLE things (
    id TEXT PRIMARY KEY, n BIGINT NOT NULL, doc JSONB, tags TEXT[], at TIMESTAMPTZ NOT NULL DEFAULT now())`);
  await bare.query(insert, [['a0', 'b0'], [2 ** 40, 0], { k: [1, 'x"\\'] }, ['t,1', 'q"', null]]);
  const plain = await bare.query('SELECT id, n::text AS n, doc, tags FROM things ORDER BY id');
  const prepared = await db.query(
    "SELECT id, n::text AS n, doc, tags FROM things WHERE id IN ('a0', 'b0') ORDER BY id",
  );
  assert.deepEqual(prepared.rows, plain.rows);
  const one = await db.query<{ n: number; doc: unknown; tags: (string | null)[]; missing: null }>(
    'SELECT n, doc, tags, NULL AS missing FROM things WHERE id = $1',
    ['a2'],
  );
  assert.deepEqual(one.rows, [
    { n: 2 ** 40 + 2, doc: { k: [1, 'x"\\'] }, tags: ['t,1', 'q"', null], missing: null },
  ]);
  assert.equal(typeof one.rows[0]?.n, 'number', 'BIGINT through the service parser');
  const none = await db.query('SELECT id FROM things WHERE id = $1', [null]);
  assert.deepEqual(none.rows, []);
  const updated = await db.query('UPDATE things SET n = n + $2 WHERE id LIKE $1', ['a%', 1]);
  assert.equal(updated.rowCount, 3);
});

test('an error is PostgreSQL’s own; the failed transaction rolls back and the next ones work', async () => {
  const insert = 'INSERT INTO things (id, n) VALUES ($1, $2)';
  await db.query(insert, ['dup', 1]);
  await assert.rejects(db.query(insert, ['dup', 2]), (error: { code?: string }) => error.code === '23505');
  await assert.rejects(
    db.transaction(async (tx) => {
      await tx.query(insert, ['in-tx', 1]);
      await tx.query(insert, ['dup', 3]);
    }),
    (error: { code?: string }) => error.code === '23505',
  );
  const left = await db.query<{ id: string; n: number }>('SELECT id, n FROM things WHERE id IN ($1, $2)', [
    'dup',
    'in-tx',
  ]);
  assert.deepEqual(left.rows, [{ id: 'dup', n: 1 }], 'the transaction left nothing behind');
  // A bad value (not a BIGINT) fails at bind, a bad statement at parse; neither breaks the next.
  await assert.rejects(
    db.query(insert, ['x', 'not a number']),
    (error: { code?: string }) => error.code === '22P02',
  );
  for (let i = 0; i < 2; i++)
    await assert.rejects(
      db.query('SELEC id FROM things'),
      (error: { code?: string }) => error.code === '42601',
    );
  assert.equal((await db.query(insert, ['after', 5])).rowCount, 1);
});

test('a statement first prepared in a transaction that rolled back still runs', async () => {
  const sql = 'SELECT count(*)::int AS n FROM things WHERE n >= $1';
  await assert.rejects(
    db.transaction(async (tx) => {
      await tx.query(sql, [0]);
      throw new Error('roll back');
    }),
    /roll back/,
  );
  const counted = await db.query<{ n: number }>(sql, [0]);
  assert.ok((counted.rows[0]?.n ?? 0) > 0);
});

test('a schema change retires prepared statements: SELECT * sees the new column', async () => {
  const sql = 'SELECT * FROM things WHERE id = $1';
  for (let i = 0; i < 7; i++) await db.query(sql, ['a1']); // past the custom plans: a generic plan is cached
  await db.query('ALTER TABLE things ADD COLUMN extra TEXT');
  const row = (await db.query<Record<string, unknown>>(sql, ['a1'])).rows[0];
  assert.ok(row && 'extra' in row, 'the new column is there');
  await db.transaction(async (tx) => {
    await tx.query(sql, ['a1']);
    await tx.query('ALTER TABLE things DROP COLUMN extra');
    const again = (await tx.query<Record<string, unknown>>(sql, ['a1'])).rows[0];
    assert.ok(again && !('extra' in again), 'and the dropped one is gone, in the same transaction');
  });
});

test('a schema change while a statement is first prepared or still in use does not break it', async () => {
  await db.transaction(async (tx) => {
    // Not awaited one by one: the first use of a statement and a statement that retires them all.
    const [first, , again] = await Promise.all([
      tx.query<{ v: number }>('SELECT $1::int + 100 AS v', [1]),
      tx.query('SET LOCAL statement_timeout = 0'),
      tx.query<{ v: number }>('SELECT $1::int + 100 AS v', [2]),
    ]);
    assert.equal(first.rows[0]?.v, 101);
    assert.equal(again.rows[0]?.v, 102);
  });
  // A statement parsed while a schema change waited for the lock is not kept past it.
  await db.query('CREATE TABLE late (id TEXT PRIMARY KEY)');
  await db.query("INSERT INTO late (id) VALUES ('x')");
  const star = 'SELECT * FROM late WHERE id = $1';
  await db.transaction(async (tx) => {
    await Promise.all([tx.query(star, ['x']), tx.query('ALTER TABLE late ADD COLUMN extra TEXT')]);
  });
  const row = (await db.query<Record<string, unknown>>(star, ['x'])).rows[0];
  assert.ok(row && 'extra' in row, JSON.stringify(row));
  const used = db.query<{ n: number }>('SELECT count(*)::int AS n FROM things WHERE n >= $1', [0]);
  const retired = db.query('SET statement_timeout = 0');
  const after = db.query<{ n: number }>('SELECT count(*)::int AS n FROM things WHERE n >= $1', [0]);
  const [u, , a] = await Promise.all([used, retired, after]);
  assert.equal(u.rows[0]?.n, a.rows[0]?.n);
});

test('outside a transaction, a statement waits for an open one instead of running inside it', async () => {
  let release!: () => void;
  const held = new Promise<void>((resolve) => {
    release = resolve;
  });
  const open = db.transaction(async (tx) => {
    await tx.query('INSERT INTO things (id, n) VALUES ($1, $2)', ['rolled-back', 1]);
    await held;
    throw new Error('roll back');
  });
  await new Promise((resolve) => setImmediate(resolve));
  const outside = db.query('INSERT INTO things (id, n) VALUES ($1, $2)', ['outside', 1]);
  release();
  await assert.rejects(open, /roll back/);
  await outside;
  const ids = (
    await db.query<{ id: string }>('SELECT id FROM things WHERE id IN ($1, $2) ORDER BY id', [
      'outside',
      'rolled-back',
    ])
  ).rows.map((r) => r.id);
  assert.deepEqual(ids, ['outside'], 'the outside insert was not rolled back with the transaction');
});

test('concurrent statements and transactions each get their own rows', async () => {
  const work = Array.from({ length: 40 }, (_, i) =>
    i % 2 === 0
      ? db.query<{ v: number }>('SELECT $1::int AS v', [i]).then((r) => r.rows[0]?.v)
      : db.transaction(async (tx) => {
          await tx.query('INSERT INTO things (id, n) VALUES ($1, $2)', [`c${i}`, i]);
          return (await tx.query<{ n: number }>('SELECT n FROM things WHERE id = $1', [`c${i}`])).rows[0]?.n;
        }),
  );
  assert.deepEqual(
    await Promise.all(work),
    Array.from({ length: 40 }, (_, i) => i),
  );
});

test('past the cap, statements run unnamed and still answer; the prepared ones stay', async () => {
  const cap = 8;
  const prepared = new PreparedStatements(bare, cap);
  const preparedNow = async () =>
    (
      await bare.query<{ n: number }>(
        "SELECT count(*)::int AS n FROM pg_prepared_statements WHERE name LIKE 'fedai_%'",
      )
    ).rows[0]?.n;
  const before = await preparedNow();
  const run = (i: number) => prepared.alone<{ v: number }>(`SELECT $1::int + ${i} AS v`, [1]);
  for (let i = 0; i < cap + 5; i++) assert.equal((await run(i)).rows[0]?.v, 1 + i);
  assert.equal(await preparedNow(), (before ?? 0) + cap, 'only the first ones were prepared');
  assert.equal((await run(0)).rows[0]?.v, 1, 'a prepared one is still used');
  assert.equal((await run(cap + 1)).rows[0]?.v, cap + 2, 'one past the cap still answers');
  assert.equal(await preparedNow(), (before ?? 0) + cap);
});
