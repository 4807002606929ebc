// The same suite against the three databases a service can run on: PGlite in memory, PGlite in a
// folder (reopened), and a real PostgreSQL server started by startPostgres().
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import pg from 'pg';
import {
  type Db,
  findPostgresBin,
  type Migration,
  migrate,
  openDb,
  type PostgresServer,
  startPostgres,
} from '../src/index';

const MAX_SAFE = Number.MAX_SAFE_INTEGER; // 2^53 - 1

const MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'items',
    sql: `CREATE TABLE items (id INTEGER NOT NULL, note TEXT NOT NULL);
    CREATE INDEX items_id ON items (id);`,
  },
  // Not idempotent on purpose: applied twice, it would leave two rows.
  { version: 2, name: 'seed', sql: `INSERT INTO items (id, note) VALUES (1, 'seeded');` },
];

interface Backend {
  name: string;
  /** A database no other test has touched. */
  fresh(): Promise<Db>;
  cleanup(): Promise<void>;
}

function dbSuite(backend: Backend): void {
  describe(backend.name, () => {
    let db: Db;
    before(async () => {
      db = await backend.fresh();
    });
    after(async () => {
      await db.close();
      await backend.cleanup();
    });

    test('BIGINT round-trips as a JS number', async () => {
      await db.query('CREATE TABLE money (id INTEGER PRIMARY KEY, amount_msat BIGINT NOT NULL)');
      await db.query('INSERT INTO money VALUES (1, $1), (2, $2), (3, 0)', [MAX_SAFE, -MAX_SAFE]);
      const rows = (await db.query<{ id: number; amount_msat: number }>('SELECT * FROM money ORDER BY id'))
        .rows;
      assert.deepEqual(
        rows.map((r) => r.amount_msat),
        [MAX_SAFE, -MAX_SAFE, 0],
      );
      for (const row of rows) assert.equal(typeof row.amount_msat, 'number');
      // COUNT(*) is BIGINT too.
      const count = await db.query<{ n: number }>('SELECT COUNT(*) AS n FROM money');
      assert.equal(count.rows[0]?.n, 3);
    });

    test('a BIGINT beyond 2^53 throws instead of losing precision; the database keeps working', async () => {
      await assert.rejects(
        db.query('SELECT 9007199254740993::BIGINT AS v'),
        /BIGINT 9007199254740993 is outside the safe integer range/,
      );
      await assert.rejects(
        db.query('SELECT (-9007199254740993)::BIGINT AS v'),
        /outside the safe integer range/,
      );
      const ok = await db.query<{ v: number }>('SELECT 9007199254740991::BIGINT AS v');
      assert.equal(ok.rows[0]?.v, MAX_SAFE);
    });

    test('transaction: commit returns the value, a throw rolls back and rethrows', async () => {
      await db.query('CREATE TABLE tx_rows (id INTEGER PRIMARY KEY)');
      const value = await db.transaction(async (tx) => {
        await tx.query('INSERT INTO tx_rows VALUES (1)');
        return 'committed';
      });
      assert.equal(value, 'committed');
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('INSERT INTO tx_rows VALUES (2)');
          const inside = await tx.query('SELECT id FROM tx_rows ORDER BY id');
          assert.equal(inside.rows.length, 2);
          throw new Error('boom');
        }),
        /boom/,
      );
      // A failing statement rolls back the statements before it too.
      await assert.rejects(
        db.transaction(async (tx) => {
          await tx.query('INSERT INTO tx_rows VALUES (3)');
          await tx.query('INSERT INTO tx_rows VALUES (1)'); // duplicate key
        }),
      );
      const rows = await db.query<{ id: number }>('SELECT id FROM tx_rows ORDER BY id');
      assert.deepEqual(
        rows.rows.map((r) => r.id),
        [1],
      );
      // rowCount reports affected rows.
      const updated = await db.query('UPDATE tx_rows SET id = id WHERE id = 1');
      assert.equal(updated.rowCount, 1);
    });

    test('migrate applies each migration once; a second call applies nothing', async () => {
      assert.deepEqual(await migrate(db, 'svc-seq', MIGRATIONS), [1, 2]);
      assert.deepEqual(await migrate(db, 'svc-seq', MIGRATIONS), []);
      const seeded = await db.query<{ n: number }>('SELECT COUNT(*) AS n FROM items');
      assert.equal(seeded.rows[0]?.n, 1);
      const recorded = await db.query<{ version: number }>(
        'SELECT version FROM schema_migrations WHERE service = $1 ORDER BY version',
        ['svc-seq'],
      );
      assert.deepEqual(
        recorded.rows.map((r) => r.version),
        [1, 2],
      );
      // A later migration is applied on the next call, alone.
      const more: Migration[] = [
        ...MIGRATIONS,
        { version: 3, name: 'more', sql: `INSERT INTO items (id, note) VALUES (2, 'v3');` },
      ];
      assert.deepEqual(await migrate(db, 'svc-seq', more), [3]);
      assert.equal((await db.query<{ n: number }>('SELECT COUNT(*) AS n FROM items')).rows[0]?.n, 2);
    });

    test('two services creating the same table concurrently (shared replay_ids) both succeed', async () => {
      const freshDb = await backend.fresh();
      const shared: Migration[] = [
        { version: 1, name: 'shared', sql: 'CREATE TABLE IF NOT EXISTS shared_ids (id TEXT PRIMARY KEY)' },
      ];
      try {
        const results = await Promise.all(
          ['svc-a', 'svc-b', 'svc-c'].map((svc) => migrate(freshDb, svc, shared)),
        );
        assert.deepEqual(results, [[1], [1], [1]]);
      } finally {
        await freshDb.close();
      }
    });

    test('two concurrent migrate calls on a fresh database apply each migration exactly once', async () => {
      const freshDb = await backend.fresh();
      try {
        const [a, b] = await Promise.all([
          migrate(freshDb, 'svc-par', MIGRATIONS),
          migrate(freshDb, 'svc-par', MIGRATIONS),
        ]);
        assert.deepEqual([...a, ...b].sort(), [1, 2]);
        const seeded = await freshDb.query<{ n: number }>('SELECT COUNT(*) AS n FROM items');
        assert.equal(seeded.rows[0]?.n, 1);
        const recorded = await freshDb.query<{ n: number }>(
          'SELECT COUNT(*) AS n FROM schema_migrations WHERE service = $1',
          ['svc-par'],
        );
        assert.equal(recorded.rows[0]?.n, 2);
      } finally {
        await freshDb.close();
      }
    });

    test('20 parallel SELECT ... FOR UPDATE increments lose no update', async () => {
      await db.query('CREATE TABLE counter (id INTEGER PRIMARY KEY, value BIGINT NOT NULL)');
      await db.query('INSERT INTO counter VALUES (1, 0)');
      const results = await Promise.all(
        Array.from({ length: 20 }, () =>
          db.transaction(async (tx) => {
            const current = await tx.query<{ value: number }>(
              'SELECT value FROM counter WHERE id = 1 FOR UPDATE',
            );
            const next = (current.rows[0]?.value ?? Number.NaN) + 1;
            // Yield between read and write so the transactions interleave where they can.
            await new Promise((resolve) => setImmediate(resolve));
            await tx.query('UPDATE counter SET value = $1 WHERE id = 1', [next]);
            return next;
          }),
        ),
      );
      const final = await db.query<{ value: number }>('SELECT value FROM counter WHERE id = 1');
      assert.equal(final.rows[0]?.value, 20);
      // Each transaction saw a distinct value: they ran one after another on the row.
      assert.deepEqual(
        [...results].sort((x, y) => x - y),
        Array.from({ length: 20 }, (_, i) => i + 1),
      );
    });
  });
}

// PGlite in memory.
dbSuite({
  name: 'pglite (memory)',
  fresh: () => openDb({}),
  cleanup: async () => {},
});

// PGlite in a folder.
const pgliteDirs: string[] = [];
dbSuite({
  name: 'pglite (folder)',
  fresh: () => {
    const dir = mkdtempSync(join(tmpdir(), 'fedai-pglite-'));
    pgliteDirs.push(dir);
    return openDb({ dataDir: join(dir, 'db') });
  },
  cleanup: async () => {
    for (const dir of pgliteDirs.splice(0)) rmSync(dir, { recursive: true, force: true });
  },
});

test('pglite (folder): data persists when the folder is reopened', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-pglite-'));
  try {
    const first = await openDb({ dataDir: join(dir, 'db') });
    await migrate(first, 'persist', MIGRATIONS);
    await first.query('INSERT INTO items (id, note) VALUES ($1, $2)', [7, 'kept']);
    await first.close();

    const second = await openDb({ dataDir: join(dir, 'db') });
    try {
      assert.deepEqual(await migrate(second, 'persist', MIGRATIONS), []);
      const rows = await second.query<{ id: number; note: string }>('SELECT id, note FROM items ORDER BY id');
      assert.deepEqual(rows.rows, [
        { id: 1, note: 'seeded' },
        { id: 7, note: 'kept' },
      ]);
    } finally {
      await second.close();
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("PGLITE_SHARED_BUFFERS sizes PGlite's buffer pool; unset keeps PGlite's own; a bad size is refused", async () => {
  const previous = process.env.PGLITE_SHARED_BUFFERS;
  const shown = async () => {
    const db = await openDb({});
    try {
      return (await db.query<{ shared_buffers: string }>('SHOW shared_buffers')).rows[0]?.shared_buffers;
    } finally {
      await db.close();
    }
  };
  try {
    process.env.PGLITE_SHARED_BUFFERS = '16MB';
    assert.equal(await shown(), '16MB');
    delete process.env.PGLITE_SHARED_BUFFERS;
    assert.equal(await shown(), '128MB');
    for (const bad of ['lots', '64kB', '2GB', '16 MB', '-1MB']) {
      process.env.PGLITE_SHARED_BUFFERS = bad;
      await assert.rejects(openDb({}), (error: Error & { code?: string }) => {
        assert.equal(error.code, 'CONFIG_INVALID', bad);
        assert.match(error.message, /PGLITE_SHARED_BUFFERS/);
        return true;
      });
    }
  } finally {
    if (previous === undefined) delete process.env.PGLITE_SHARED_BUFFERS;
    else process.env.PGLITE_SHARED_BUFFERS = previous;
  }
});

// A real PostgreSQL server: one per file, one database per fresh().
let server: PostgresServer | undefined;
let databases = 0;
async function postgresUrl(): Promise<string> {
  server ??= await startPostgres();
  return server.url;
}
dbSuite({
  name: 'postgres (real server)',
  fresh: async () => {
    const admin = new pg.Client({ connectionString: await postgresUrl() });
    await admin.connect();
    databases += 1;
    const name = `fedai_test_${databases}`;
    await admin.query(`CREATE DATABASE ${name}`);
    await admin.end();
    return openDb({ url: (await postgresUrl()).replace(/\/postgres$/, `/${name}`) });
  },
  cleanup: async () => {},
});

describe('postgres server (startPostgres)', () => {
  after(async () => {
    await server?.stop();
  });

  test('findPostgresBin finds initdb and postgres', () => {
    const bin = findPostgresBin();
    assert.ok(bin, 'PostgreSQL server binaries must be installed (apt-get install postgresql)');
    assert.ok(existsSync(join(bin, 'initdb')) && existsSync(join(bin, 'postgres')));
  });

  test('without binaries, findPostgresBin is null and startPostgres says how to install them', async () => {
    const empty = mkdtempSync(join(tmpdir(), 'fedai-nopg-'));
    try {
      const search = { versionRoots: [empty], binDirs: [empty] };
      assert.equal(findPostgresBin(search), null);
      await assert.rejects(startPostgres({ search }), /apt-get install postgresql/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });

  test('the pool survives the server dropping its idle connections', async () => {
    const db = await openDb({ url: await postgresUrl(), maxConnections: 2 });
    try {
      await Promise.all([db.query('SELECT pg_sleep(0.05)'), db.query('SELECT pg_sleep(0.05)')]);
      // Kill every other backend, as a restart or an idle timeout on the server would.
      const admin = new pg.Client({ connectionString: await postgresUrl() });
      await admin.connect();
      await admin.query(
        `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE pid <> pg_backend_pid() AND datname = 'postgres' AND backend_type = 'client backend'`,
      );
      await admin.end();
      await new Promise((resolve) => setTimeout(resolve, 200));
      const afterKill = await db.query<{ one: number }>('SELECT 1 AS one');
      assert.equal(afterKill.rows[0]?.one, 1);
    } finally {
      await db.close();
    }
  });

  test('restart() crashes the server and brings it back with its committed data; the pool reconnects', async () => {
    const own = await startPostgres({ durableCommits: true });
    const db = await openDb({ url: own.url, maxConnections: 2 });
    try {
      await db.query('CREATE TABLE kept (v INTEGER)');
      await db.query('INSERT INTO kept VALUES (7)');
      const cut = db.query('SELECT pg_sleep(5)').then(
        () => 'finished',
        () => 'cut',
      );
      await new Promise((resolve) => setTimeout(resolve, 100));
      await own.restart(200);
      assert.equal(await cut, 'cut', 'an open query is cut by the crash');
      const rows = await db.query<{ v: number }>('SELECT v FROM kept');
      assert.deepEqual(rows.rows, [{ v: 7 }]);
      assert.ok(existsSync(own.dataDir));
      // A crash while a transaction holds its connection between statements: the cut connection's
      // 'error' must not crash the process (chaos found that), and the transaction fails with the reason.
      let holding!: () => void;
      const held = new Promise<void>((resolve) => {
        holding = resolve;
      });
      const tx = db.transaction(async (q) => {
        await q.query('INSERT INTO kept VALUES (8)');
        holding();
        await new Promise((resolve) => setTimeout(resolve, 1_500));
        await q.query('INSERT INTO kept VALUES (9)');
      });
      await held;
      await own.restart(100);
      await assert.rejects(tx, (e: unknown) => (e as { code?: string }).code === 'DATABASE_UNAVAILABLE');
      const after = await db.query<{ v: number }>('SELECT v FROM kept ORDER BY v');
      assert.deepEqual(after.rows, [{ v: 7 }], 'the cut transaction left nothing');
    } finally {
      await db.close();
      await own.stop();
    }
    await assert.rejects(own.restart(), /after stop/);
  });

  test('stop() shuts the server down and removes its folder; a second stop is harmless', async () => {
    const own = await startPostgres();
    assert.match(own.url, /^postgres:\/\/postgres@127\.0\.0\.1:\d+\/postgres$/);
    assert.equal(own.url, `postgres://postgres@127.0.0.1:${own.port}/postgres`);
    const db = await openDb({ url: own.url });
    assert.equal((await db.query<{ v: number }>('SELECT 41 + 1 AS v')).rows[0]?.v, 42);
    await db.close();
    await own.stop();
    assert.equal(existsSync(own.dataDir), false);
    await assert.rejects(openDb({ url: own.url }));
    await own.stop();
  });
});
