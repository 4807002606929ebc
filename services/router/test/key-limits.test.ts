// Per-key limits: the pure decision, and the database shell with two pools (two replicas) racing on
// one real PostgreSQL.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { type Db, openDb, startPostgres } from '@fed-ai/kit';
import { migrateRouter } from '../src/db';
import {
  currentWindow,
  decideAdmission,
  SharedKeyLimiter,
  WINDOW_MS,
  windowStartOf,
} from '../src/key-limits';
import { LocalKeyLimiter } from '../src/key-limits-local';

const limits = { requests_per_min: 3, tokens_per_min: 100, max_parallel: 2 };
const T0 = 1_800_000_000_000; // a minute boundary

test('windows are fixed UTC minutes; a stored window ahead of this clock is kept', () => {
  assert.equal(windowStartOf(T0 + 59_999), T0);
  assert.equal(windowStartOf(T0 + WINDOW_MS), T0 + WINDOW_MS);
  const stored = { windowStartMs: T0, requests: 2, tokens: 5 };
  assert.deepEqual(currentWindow(stored, T0 + 10), stored);
  assert.deepEqual(currentWindow(stored, T0 + WINDOW_MS), {
    windowStartMs: T0 + WINDOW_MS,
    requests: 0,
    tokens: 0,
  });
  assert.deepEqual(currentWindow(stored, T0 - 5), stored, 'a slower clock counts into the newer window');
});

test('decideAdmission: parallel, then requests, then tokens, with Retry-After to the window end', () => {
  const req = (parallelInUse: number | null, estimatedTokens = 1) => ({ estimatedTokens, parallelInUse });
  const full = { windowStartMs: T0, requests: 3, tokens: 0 };
  assert.deepEqual(decideAdmission(null, limits, req(2), T0), {
    ok: false,
    retryAfterS: 1,
    detail: 'at most 2 parallel requests',
  });
  assert.deepEqual(decideAdmission(full, limits, req(0), T0 + 20_500), {
    ok: false,
    retryAfterS: 40,
    detail: 'at most 3 requests per minute',
  });
  const some = { windowStartMs: T0, requests: 1, tokens: 60 };
  const refused = decideAdmission(some, limits, req(0, 50), T0);
  assert.equal(refused.ok, false);
  assert.match(refused.ok ? '' : refused.detail, /100 tokens per minute/);
  const first = decideAdmission(null, limits, req(0, 5_000), T0);
  assert.deepEqual(
    first,
    { ok: true, use: { windowStartMs: T0, requests: 1, tokens: 0 } },
    'one large request runs',
  );
  assert.equal(decideAdmission(full, limits, req(0), T0 + WINDOW_MS).ok, true, 'a new minute');
  assert.equal(decideAdmission(null, limits, req(null), T0).ok, true, 'no slot asked: parallel not checked');
});

let pg: Awaited<ReturnType<typeof startPostgres>>;
const pools: Db[] = [];

before(async () => {
  pg = await startPostgres();
  for (let i = 0; i < 2; i++) pools.push(await openDb({ url: pg.url, maxConnections: 10 }));
  await migrateRouter(pools[0]!);
});

after(async () => {
  for (const p of pools) await p.close();
  await pg.stop();
});

test('two replicas on one PostgreSQL: 60 concurrent admissions for a limit of 7 per minute admit exactly 7', async () => {
  const nowMs = () => T0 + 1_000;
  const replicas = pools.map((db) => new SharedKeyLimiter(db, { slotLeaseMs: 30_000, now: nowMs }));
  const key = { id: 'rpm', requests_per_min: 7, tokens_per_min: 1_000_000, max_parallel: 1_000 };
  const results = await Promise.all(
    Array.from({ length: 60 }, (_, i) =>
      i % 3 === 0 ? replicas[i % 2]!.admitRequest(key) : replicas[i % 2]!.admit(key, 1),
    ),
  );
  assert.equal(results.filter((r) => r.ok).length, 7);
});

test('two replicas: max_parallel 3 holds under 40 concurrent admissions; released slots come back', async () => {
  const replicas = pools.map(
    (db) => new SharedKeyLimiter(db, { slotLeaseMs: 30_000, now: () => T0 + 2_000 }),
  );
  const key = { id: 'par', requests_per_min: 1_000, tokens_per_min: 1_000_000, max_parallel: 3 };
  const results = await Promise.all(Array.from({ length: 40 }, (_, i) => replicas[i % 2]!.admit(key, 1)));
  const admitted = results.filter((r) => r.ok);
  assert.equal(admitted.length, 3);
  for (const r of admitted) if (r.ok) r.release(10);
  let again = 0;
  for (let i = 0; i < 100 && again < 3; i++) if ((await replicas[i % 2]!.admit(key, 1)).ok) again += 1;
  assert.equal(again, 3, 'three released slots are taken again');
  const tokens = await pools[0]!.query<{ tokens: number }>(
    "SELECT tokens FROM key_windows WHERE key_id = 'par'",
  );
  assert.equal(tokens.rows[0]!.tokens, 30, 'tokens are counted when requests end');
});

test("a crashed replica's slots come back after the lease; maintenance bounds the tables", async () => {
  let nowMs = T0 + 3_000;
  const crashed = new SharedKeyLimiter(pools[0]!, { slotLeaseMs: 5_000, now: () => nowMs });
  const alive = new SharedKeyLimiter(pools[1]!, { slotLeaseMs: 5_000, now: () => nowMs });
  const key = { id: 'lease', requests_per_min: 1_000, tokens_per_min: 1_000_000, max_parallel: 1 };
  assert.equal((await crashed.admit(key, 1)).ok, true); // never released: its replica "dies"
  const held = await alive.admit(key, 1);
  assert.equal(held.ok, false);
  nowMs += 4_000;
  await alive.maintain(); // renews only its own slots: none
  assert.equal((await alive.admit(key, 1)).ok, false, 'within the lease the slot still counts');
  nowMs += 1_001;
  const back = await alive.admit(key, 1);
  assert.equal(back.ok, true, 'after the lease the slot is free');
  nowMs += 4_000;
  await alive.maintain(); // renews the slot it holds
  nowMs += 4_000;
  assert.equal((await crashed.admit(key, 1)).ok, false, 'a renewed slot outlives its first lease');
  nowMs += 3 * WINDOW_MS;
  await alive.maintain();
  if (back.ok) back.release(0);
  // The release is one write after the request; poll until it and a maintenance pass are done.
  let left = -1;
  for (let i = 0; i < 100 && left !== 0; i++) {
    await alive.maintain();
    const rows = await pools[0]!.query<{ n: number }>(
      "SELECT (SELECT COUNT(*) FROM key_slots WHERE key_id = 'lease')::int + (SELECT COUNT(*) FROM key_windows WHERE window_start_ms < $1)::int AS n",
      [windowStartOf(nowMs) - WINDOW_MS],
    );
    left = rows.rows[0]!.n;
  }
  assert.equal(left, 0, 'expired slots and old windows are deleted');
});

test('local limiter (PGlite, one process): exact requests per minute and parallel under concurrency', async () => {
  const db = await openDb({});
  await migrateRouter(db);
  let nowMs = T0 + 1_000;
  const limiter = new LocalKeyLimiter(db, { now: () => nowMs });
  limiter.start();
  const rpm = { id: 'rpm', requests_per_min: 7, tokens_per_min: 1_000_000, max_parallel: 1_000 };
  const results = await Promise.all(
    Array.from({ length: 60 }, (_, i) => (i % 3 === 0 ? limiter.admitRequest(rpm) : limiter.admit(rpm, 1))),
  );
  assert.equal(results.filter((r) => r.ok).length, 7);
  const par = { id: 'par', requests_per_min: 1_000, tokens_per_min: 1_000_000, max_parallel: 3 };
  const held = (await Promise.all(Array.from({ length: 40 }, () => limiter.admit(par, 1)))).filter(
    (r) => r.ok,
  );
  assert.equal(held.length, 3);
  for (const r of held) if (r.ok) r.release(10);
  for (const r of held) if (r.ok) r.release(10); // a second release is a no-op
  const again = (await Promise.all(Array.from({ length: 10 }, () => limiter.admit(par, 1)))).filter(
    (r) => r.ok,
  );
  assert.equal(again.length, 3, 'released slots come back, and only those');
  const tok = { id: 'tok', requests_per_min: 1_000, tokens_per_min: 100, max_parallel: 10 };
  const big = await limiter.admit(tok, 90);
  if (big.ok) big.release(90);
  assert.equal((await limiter.admit(tok, 50)).ok, false, 'tokens per minute');
  // A restart (a new limiter on the same database) keeps the minute's counts once they are flushed.
  await limiter.flush();
  limiter.stop();
  const restarted = new LocalKeyLimiter(db, { now: () => nowMs });
  restarted.start();
  assert.equal((await restarted.admitRequest(rpm)).ok, false, 'the 7 requests of this minute still count');
  nowMs += WINDOW_MS;
  assert.equal((await restarted.admitRequest(rpm)).ok, true, 'a new minute');
  nowMs += 2 * WINDOW_MS;
  await restarted.flush();
  const rows = await db.query<{ n: number }>(
    'SELECT COUNT(*)::int AS n FROM key_windows WHERE window_start_ms <= $1',
    [T0 + WINDOW_MS],
  );
  assert.equal(rows.rows[0]!.n, 0, 'windows two minutes old are deleted');
  restarted.stop();
  await db.close();
});
