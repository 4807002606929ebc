// The record of reservations held ahead, on real databases: a previous process's slots are
// released (except those the outbox settles), a live replica's are left alone until it stops
// beating, and forgotten slots are never released.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type Db, openDb, startPostgres } from '@fed-ai/kit';
import { pino } from 'pino';
import { HeldReservations, migrateHeld } from '../src/held-reservations';
import { migrateOutbox, SettlementOutbox } from '../src/settlement-outbox';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function migrated(db: Db): Promise<Db> {
  await migrateOutbox(db);
  await migrateHeld(db);
  return db;
}

const silent = pino({ level: 'silent' });

/** The outbox is the table one unless a test gives its own (PGlite's journal). */
function held(
  db: Db,
  released: string[],
  now?: () => number,
  outbox = new SettlementOutbox({ db, logger: silent, send: async () => 'done' }),
): HeldReservations {
  return new HeldReservations({
    db,
    release: async (opId) => {
      released.push(opId);
    },
    outboxHolds: (ids) => outbox.holding(ids),
    ...(now ? { now } : {}),
  });
}

test('PGlite: the next process releases the last one slots, skips those in the outbox and those forgotten', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-held-unit-'));
  dirs.push(dir);
  const db = await migrated(await openDb({ dataDir: dir }));
  try {
    const before = held(db, []);
    await before.start();
    await before.record(['rq-a', 'rq-b', 'rq-c', 'rq-d']);
    // rq-b was taken and its capture is in the outbox; rq-c was released (forgotten).
    // PGlite's outbox is the journal file beside the database (as router.ts opens it).
    const journalPath = join(dir, 'settlement-outbox.journal');
    const outbox = new SettlementOutbox({ db, logger: silent, send: async () => 'done', journalPath });
    await outbox.open();
    await outbox.add('rq-b', 'capture', { op: 'capture', op_id: 'rq-b' });
    before.forget('rq-c');
    await before.close(); // writes what was forgotten; the process then dies without releasing
    await outbox.stop();

    const released: string[] = [];
    const reopened = new SettlementOutbox({ db, logger: silent, send: async () => 'done', journalPath });
    await reopened.open();
    const next = held(db, released, undefined, reopened);
    await next.start();
    assert.deepEqual(released.sort(), ['rq-a', 'rq-d']);
    const rows = await db.query<{ op_id: string }>('SELECT op_id FROM held_reservations');
    assert.deepEqual(rows.rows, [], 'the dead process left no rows behind');
    const replicas = await db.query<{ replica_id: string }>('SELECT replica_id FROM router_replicas');
    assert.deepEqual(
      replicas.rows.map((r) => r.replica_id),
      [next.replicaId],
    );
    // Its own slots are never swept by itself.
    await next.record(['rq-mine']);
    assert.equal(await next.sweep(), 0);
    await next.close();
    await reopened.stop();
  } finally {
    await db.close();
  }
});

test('PostgreSQL: a live replica keeps its slots; once it stops beating another releases them', async () => {
  const postgres = await startPostgres();
  const db = await migrated(await openDb({ url: postgres.url, maxConnections: 4 }));
  try {
    let nowMs = 1_000_000;
    const clock = () => nowMs;
    const aReleased: string[] = [];
    const bReleased: string[] = [];
    const a = held(db, aReleased, clock);
    const b = held(db, bReleased, clock);
    await a.start();
    await a.record(['rq-1', 'rq-2']);
    await b.start();
    assert.equal(await b.sweep(), 0, 'a beats: its slots are its own');
    nowMs += 25_000; // within 6 beats of 5 s
    assert.equal(await b.sweep(), 0);
    nowMs += 10_000; // a stopped beating 35 s ago
    await b.record(['rq-b']);
    assert.equal(await b.sweep(), 2);
    assert.deepEqual(bReleased.sort(), ['rq-1', 'rq-2']);
    assert.deepEqual(aReleased, []);
    assert.equal(await b.sweep(), 0, 'released once');
    const rows = await db.query<{ op_id: string }>('SELECT op_id FROM held_reservations');
    assert.deepEqual(
      rows.rows.map((r) => r.op_id),
      ['rq-b'],
    );
    await a.close();
    await b.close();
  } finally {
    await db.close();
    await postgres.stop();
  }
});

test('a release that fails is reported and the sweep goes on', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-held-unit-'));
  dirs.push(dir);
  const db = await migrated(await openDb({ dataDir: dir }));
  try {
    const before = held(db, []);
    await before.start();
    await before.record(['rq-x', 'rq-y']);
    await before.close();
    const errors: unknown[] = [];
    const released: string[] = [];
    const next = new HeldReservations({
      db,
      release: async (opId) => {
        if (opId === 'rq-x') throw new Error('refused');
        released.push(opId);
      },
      outboxHolds: async () => new Set(),
      onError: (e) => errors.push(e),
    });
    await next.start();
    assert.deepEqual(released, ['rq-y']);
    assert.equal(errors.length, 1);
    await next.close();
  } finally {
    await db.close();
  }
});
