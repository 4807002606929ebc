// LocalReplayStore: replay protection in memory with a restart epoch. The property that matters:
// an id accepted once is never accepted again, not after a restart, not when it was dated in the
// future, not when memory is full.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { type Db, LocalReplayStore, migrate, openDb, openReplayStore, REPLAY_MIGRATIONS } from '../src/index';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

async function freshDb(): Promise<{ db: Db; dir: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-replay-'));
  dirs.push(dir);
  const db = await openDb({ dataDir: dir });
  await migrate(db, 'replay-test', REPLAY_MIGRATIONS);
  return { db, dir };
}

/** A clock the test moves; `open()` waits on it, so a background tick moves it while it waits. */
function clock(startS: number) {
  const c = { nowS: startS, ticking: null as NodeJS.Timeout | null };
  return {
    now: () => c.nowS,
    set: (s: number) => {
      c.nowS = s;
    },
    /** Moves stepS seconds every 20 ms until stopped (what waiting for the epoch sees). */
    tick: (stepS = 1) => {
      c.ticking = setInterval(() => {
        c.nowS += stepS;
      }, 20);
    },
    stop: () => {
      if (c.ticking) clearInterval(c.ticking);
    },
  };
}

const WINDOW = 121;

test('an id is accepted once: sequentially, concurrently, and in the durable path', async () => {
  const { db } = await freshDb();
  const t = clock(1_000_000);
  const store = new LocalReplayStore(db, { nowS: t.now });
  await store.open(); // a fresh database: no epoch, so this returns with the clock frozen
  assert.equal(await store.checkAndRecord('a', 1_000_000 + WINDOW, 1_000_000), true);
  assert.equal(await store.checkAndRecord('a', 1_000_000 + WINDOW, 1_000_000), false);
  const racing = await Promise.all(
    Array.from({ length: 20 }, () => store.checkAndRecord('b', 1_000_000 + WINDOW, 999_990)),
  );
  assert.equal(racing.filter(Boolean).length, 1);
  // Future-dated and undated ids go through the database.
  const future = await Promise.all(
    Array.from({ length: 10 }, () => store.checkAndRecord('f', 1_000_200, 1_000_030)),
  );
  assert.equal(future.filter(Boolean).length, 1);
  assert.equal(await store.checkAndRecord('faucet:x', 2_000_000), true);
  assert.equal(await store.checkAndRecord('faucet:x', 2_000_000), false);
  const rows = await db.query<{ id: string }>('SELECT id FROM replay_ids ORDER BY id');
  assert.deepEqual(
    rows.rows.map((r) => r.id),
    ['f', 'faucet:x'],
    'only what memory cannot vouch for is written',
  );
  store.close();
  await db.close();
});

test('after a restart: what the last process saw is refused, what is new is accepted', async () => {
  const { db, dir } = await freshDb();
  const t = clock(1_000_000);
  const first = new LocalReplayStore(db, { nowS: t.now });
  await first.open();
  assert.equal(await first.checkAndRecord('seen-now', 1_000_000 + WINDOW, 1_000_000), true);
  assert.equal(await first.checkAndRecord('seen-earlier', 1_000_000 + WINDOW, 999_950), true);
  assert.equal(await first.checkAndRecord('future', 1_000_000 + 200, 1_000_050), true);
  first.close(); // a crash: nothing more is written
  await db.close();

  const db2 = await openDb({ dataDir: dir });
  const second = new LocalReplayStore(db2, { nowS: t.now });
  t.tick();
  await second.open(); // waits past the epoch (the start second)
  t.stop();
  const nowS = t.now();
  assert.ok(nowS > 1_000_000, 'open waited for the next second');
  assert.equal(await second.checkAndRecord('seen-now', 1_000_000 + WINDOW, 1_000_000), false);
  assert.equal(await second.checkAndRecord('seen-earlier', 1_000_000 + WINDOW, 999_950), false);
  assert.equal(
    await second.checkAndRecord('never-seen-old', 1_000_000 + WINDOW, 999_999),
    false,
    'before the epoch: refused',
  );
  t.set(1_000_060);
  assert.equal(
    await second.checkAndRecord('future', 1_000_000 + 200, 1_000_050),
    false,
    'a future id, now due, is still refused',
  );
  assert.equal(await second.checkAndRecord('new', 1_000_060 + WINDOW, 1_000_060), true);
  second.close();
  await db2.close();
});

test('a clock stepped back across a restart: the epoch follows the last recorded clock', async () => {
  const { db, dir } = await freshDb();
  const t = clock(1_000_000);
  const first = new LocalReplayStore(db, { nowS: t.now, highWaterEveryMs: 10 });
  await first.open();
  t.set(1_000_500);
  await new Promise((done) => setTimeout(done, 50)); // the running clock is written
  assert.equal(await first.checkAndRecord('late', 1_000_500 + WINDOW, 1_000_500), true);
  first.close();
  await db.close();

  const db2 = await openDb({ dataDir: dir });
  t.set(1_000_100); // the machine's clock went back 400 s
  const second = new LocalReplayStore(db2, { nowS: t.now });
  t.tick(20);
  await second.open();
  t.stop();
  assert.ok(t.now() > 1_000_500, 'open waited until the clock passed the recorded one');
  assert.equal(await second.checkAndRecord('late', 1_000_500 + WINDOW, 1_000_500), false);
  second.close();
  await db2.close();
});

test('memory full: every id goes through the database and replays are still refused', async () => {
  const { db } = await freshDb();
  const t = clock(1_000_000);
  const store = new LocalReplayStore(db, { nowS: t.now, maxEntries: 4 });
  await store.open();
  for (const id of ['m1', 'm2', 'm3', 'm4'])
    assert.equal(await store.checkAndRecord(id, 1_000_000 + WINDOW, 1_000_000), true);
  assert.equal(
    await store.checkAndRecord('d1', 1_000_000 + WINDOW, 1_000_000),
    true,
    'past the cap: durable',
  );
  assert.equal(await store.checkAndRecord('d1', 1_000_000 + WINDOW, 1_000_000), false);
  assert.equal(
    await store.checkAndRecord('m2', 1_000_000 + WINDOW, 1_000_000),
    false,
    'memory still refuses its own',
  );
  t.set(1_000_000 + WINDOW + 1); // everything in memory expired: it empties, but the mode stays durable
  assert.equal(await store.checkAndRecord('d2', 1_000_122 + WINDOW, 1_000_122), true);
  const rows = await db.query<{ id: string }>("SELECT id FROM replay_ids WHERE id = 'd2'");
  assert.equal(
    rows.rows.length,
    1,
    'd2 (dated now, memory no longer full) was written: the durable mode stays',
  );
  store.close();
  await db.close();
});

test('openReplayStore: local for PGlite (and refuses before open), shared for PostgreSQL is DbReplayStore', async () => {
  const { db } = await freshDb();
  const unopened = new LocalReplayStore(db);
  await assert.rejects(unopened.checkAndRecord('x', 10, 1), /not open/);
  const store = await openReplayStore(db);
  assert.ok(store instanceof LocalReplayStore);
  store.close();
  await db.close();
});
