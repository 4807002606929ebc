// The audit log: the pure chain check as a table, then the store on PGlite and on a real PostgreSQL
// server (two pools standing in for two processes appending at once).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { type Db, openDb, type PostgresServer, startPostgres } from '@fed-ai/kit';
import {
  type AuditEntry,
  type AuditInput,
  AuditLog,
  canonicalJson,
  checkAuditInput,
  entryHash,
  GENESIS_HASH,
  MAX_AUDIT_DATA_BYTES,
  nextEntry,
  type VerifyResult,
  verifyChain,
} from '../src/audit';

const ALICE = 'a'.repeat(64);

function input(i: number): AuditInput {
  return {
    actor: i % 2 ? ALICE : 'system',
    action: 'payment.sent',
    subject: `wallet-${i % 3}`,
    data: { i, amountMsat: i * 1000 },
  };
}

/** A valid chain of `count` entries built with the pure functions. */
function chain(count: number): AuditEntry[] {
  const entries: AuditEntry[] = [];
  for (let i = 1; i <= count; i++) {
    const entryInput = input(i);
    const atS = 1_700_000_000 + i;
    entries.push(nextEntry(entries.at(-1) ?? null, entryInput, checkAuditInput(entryInput, atS), atS));
  }
  return entries;
}

/** Rehashes an entry after a change, as a writer who knows the scheme would. */
function rehash(entry: AuditEntry): AuditEntry {
  const { prevHash, seq, atS, actor, action, subject, data } = entry;
  return { ...entry, hash: entryHash(prevHash, seq, atS, actor, action, subject, data) };
}

describe('canonical JSON and entry hash', () => {
  test('keys sort recursively; numbers as JSON.stringify writes them; undefined properties dropped', () => {
    assert.equal(
      canonicalJson({ b: { d: 1e21, c: [1, { z: 1, a: 'é😀' }] }, a: null, u: undefined }),
      '{"a":null,"b":{"c":[1,{"a":"é😀","z":1}],"d":1e+21}}',
    );
    assert.equal(canonicalJson({ x: -0 }), '{"x":0}');
  });

  test('refuses what is not JSON', () => {
    for (const bad of [
      Number.NaN,
      Number.POSITIVE_INFINITY,
      1n,
      new Date(0),
      new Map(),
      () => 1,
      [undefined],
    ]) {
      assert.throws(() => canonicalJson({ bad }), TypeError);
    }
    let deep: unknown = 1;
    for (let i = 0; i < 40; i++) deep = [deep];
    assert.throws(() => canonicalJson(deep), RangeError);
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.throws(() => canonicalJson(cyclic), RangeError);
  });

  test('hash is independent of key order and starts from the genesis hash', () => {
    const a = entryHash(GENESIS_HASH, 1, 5, 'system', 'kill', 'fleet', { x: 1, y: { b: 2, a: 1 } });
    const b = entryHash(GENESIS_HASH, 1, 5, 'system', 'kill', 'fleet', { y: { a: 1, b: 2 }, x: 1 });
    assert.equal(a, b);
    assert.match(a, /^[0-9a-f]{64}$/);
    assert.notEqual(a, entryHash(GENESIS_HASH, 1, 5, 'system', 'kill', 'fleet', { x: 2, y: { a: 1, b: 2 } }));
    assert.equal(chain(1)[0]!.prevHash, GENESIS_HASH);
  });

  test('input checks: data over 8 KiB is a RangeError; malformed fields are TypeErrors', () => {
    const base = input(1);
    assert.ok(checkAuditInput({ ...base, data: { s: 'x'.repeat(MAX_AUDIT_DATA_BYTES - 10) } }, 1));
    assert.throws(
      () => checkAuditInput({ ...base, data: { s: 'x'.repeat(MAX_AUDIT_DATA_BYTES) } }, 1),
      RangeError,
    );
    // Bytes, not characters: 3000 three-byte characters are 9000 bytes.
    assert.throws(() => checkAuditInput({ ...base, data: { s: '€'.repeat(3000) } }, 1), RangeError);
    assert.throws(() => checkAuditInput({ ...base, data: { s: 'a\u0000b' } }, 1), RangeError);
    assert.throws(() => checkAuditInput({ ...base, data: { ['\ud800']: 1 } }, 1), RangeError);
    assert.throws(() => checkAuditInput({ ...base, data: { s: ['ok', 'x\udc00'] } }, 1), RangeError);
    assert.throws(() => checkAuditInput({ ...base, data: { s: 'x\ud83d' } }, 1), RangeError);
    assert.ok(checkAuditInput({ ...base, data: { s: '\ud83d\ude00' } }, 1)); // a paired surrogate is fine
    assert.throws(() => checkAuditInput({ ...base, subject: 'w\ud800' }, 1), TypeError);
    assert.throws(() => checkAuditInput({ ...base, actor: 'A'.repeat(64) }, 1), TypeError);
    assert.throws(() => checkAuditInput({ ...base, action: 'Payment Sent' }, 1), TypeError);
    assert.throws(() => checkAuditInput({ ...base, subject: '' }, 1), TypeError);
    assert.throws(() => checkAuditInput({ ...base, subject: 'a\nb' }, 1), TypeError);
    assert.throws(() => checkAuditInput(base, 1.5), TypeError);
    assert.throws(
      () => checkAuditInput({ ...base, data: [] as unknown as Record<string, unknown> }, 1),
      TypeError,
    );
  });
});

describe('verifyChain', () => {
  const good = chain(6);
  const at = (i: number) => good[i - 1]!; // by seq
  const cases: [string, AuditEntry[], VerifyResult][] = [
    ['empty', [], { ok: true, count: 0, headHash: GENESIS_HASH }],
    ['intact', good, { ok: true, count: 6, headHash: at(6).hash }],
    [
      'edited data',
      good.map((e) => (e.seq === 3 ? { ...e, data: { ...e.data, amountMsat: 1 } } : e)),
      { ok: false, seq: 3, problem: 'EDITED' },
    ],
    [
      'edited action',
      good.map((e) => (e.seq === 4 ? { ...e, action: 'approval.approve' } : e)),
      { ok: false, seq: 4, problem: 'EDITED' },
    ],
    [
      'edited hash',
      good.map((e) => (e.seq === 2 ? { ...e, hash: 'f'.repeat(64) } : e)),
      { ok: false, seq: 2, problem: 'EDITED' },
    ],
    ['removed middle row', good.filter((e) => e.seq !== 3), { ok: false, seq: 3, problem: 'MISSING' }],
    ['removed first row', good.slice(1), { ok: false, seq: 1, problem: 'MISSING' }],
    [
      'removed second-to-last row',
      good.filter((e) => e.seq !== 5),
      { ok: false, seq: 5, problem: 'MISSING' },
    ],
    // Cutting rows off the end leaves a valid, shorter chain: only an anchored headHash catches it.
    ['removed last row (undetectable alone)', good.slice(0, 5), { ok: true, count: 5, headHash: at(5).hash }],
    [
      'swapped neighbours',
      [at(1), at(2), at(4), at(3), at(5), at(6)],
      { ok: false, seq: 3, problem: 'REORDERED' },
    ],
    ['moved to the front', [at(2), at(1), at(3)], { ok: false, seq: 1, problem: 'REORDERED' }],
    ['duplicated row', [at(1), at(2), at(2), at(3)], { ok: false, seq: 2, problem: 'REORDERED' }],
    [
      // The writer rewrote row 3 and rehashed it: row 3 alone looks fine, row 4 no longer links.
      'edited and rehashed',
      good.map((e) => (e.seq === 3 ? rehash({ ...e, data: { forged: true } }) : e)),
      { ok: false, seq: 4, problem: 'BAD_LINK' },
    ],
    [
      'row with a foreign prevHash',
      good.map((e) => (e.seq === 5 ? rehash({ ...e, prevHash: 'e'.repeat(64) }) : e)),
      { ok: false, seq: 5, problem: 'BAD_LINK' },
    ],
    [
      'first row not on genesis',
      good.map((e) => (e.seq === 1 ? rehash({ ...e, prevHash: 'e'.repeat(64) }) : e)),
      { ok: false, seq: 1, problem: 'BAD_LINK' },
    ],
    [
      'renumbered to hide a removal',
      [at(1), at(2), rehash({ ...at(4), seq: 3 })],
      { ok: false, seq: 3, problem: 'BAD_LINK' },
    ],
    [
      'data no longer JSON',
      good.map((e) => (e.seq === 2 ? { ...e, data: { n: Number.NaN } } : e)),
      { ok: false, seq: 2, problem: 'EDITED' },
    ],
  ];
  for (const [name, entries, expected] of cases) {
    test(name, () => {
      assert.deepEqual(verifyChain(entries), expected);
    });
  }
});

/** Values whose spelling JSONB changes (key order, 1e21, 5e-324) but whose JS value must survive. */
const AWKWARD_DATA = {
  zeta: 1e21,
  alpha: { nested: { deeper: [1, 0.1, -0, 5e-324, 1.7976931348623157e308, 2 ** 53 - 1] } },
  unicode: 'é 😀 \u2028 "quoted" \\ back',
  emptyKey: { '': [], ' ': {} },
  bool: false,
  nil: null,
  tiny: 1e-7,
};

async function collect<T>(iterable: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of iterable) out.push(item);
  return out;
}

/** The store tests that run the same on PGlite and PostgreSQL. */
function storeSuite(name: string, open: () => Promise<Db>) {
  describe(`audit log on ${name}`, () => {
    let db: Db;
    let log: AuditLog;
    let clockS = 1_700_000_000;
    before(async () => {
      db = await open();
      log = await AuditLog.open(db, { nowS: () => clockS, pageRows: 7 });
    });
    after(async () => {
      await db.close();
    });

    test('empty log verifies with the genesis head', async () => {
      assert.deepEqual(await log.verify(), { ok: true, count: 0, headHash: GENESIS_HASH });
      assert.equal(await log.head(), null);
    });

    test('50 appends verify; JSONL export parses and matches; JSONB round-trips awkward data', async () => {
      const appended: AuditEntry[] = [];
      for (let i = 1; i <= 50; i++) {
        clockS += 1;
        const entryInput = i === 25 ? { ...input(i), data: AWKWARD_DATA } : input(i);
        appended.push(await log.appendNow(entryInput));
      }
      assert.deepEqual(
        appended.map((e) => e.seq),
        Array.from({ length: 50 }, (_, i) => i + 1),
      );
      const verified = await log.verify();
      assert.deepEqual(verified, { ok: true, count: 50, headHash: appended[49]!.hash });
      assert.deepEqual(await log.head(), { seq: 50, hash: appended[49]!.hash });

      const lines = await collect(log.export());
      assert.equal(lines.length, 50);
      const parsed = lines.map((line) => JSON.parse(line) as AuditEntry);
      assert.deepEqual(parsed, appended);
      // Stored form = canonical JSON parsed back (-0 becomes 0, as JSON.stringify writes it).
      const awkwardStored = JSON.parse(canonicalJson(AWKWARD_DATA)) as Record<string, unknown>;
      assert.deepEqual(parsed[24]!.data, awkwardStored);
      assert.equal(lines[24], canonicalJson(appended[24]));
      assert.deepEqual(verifyChain(parsed), verified); // an export verifies offline too

      // What the database hands back is the same JS value, whatever JSONB did to its spelling.
      const stored = await db.query<{ data: unknown; text: string }>(
        'SELECT data, data::text AS text FROM audit_log WHERE seq = 25',
      );
      assert.deepEqual(stored.rows[0]!.data, awkwardStored);
      assert.notEqual(stored.rows[0]!.text, canonicalJson(AWKWARD_DATA)); // JSONB did respell it
    });

    test('an edited row reads EDITED; restoring it verifies again; a rehashed edit breaks the next link', async () => {
      await db.query(`UPDATE audit_log SET data = jsonb_set(data, '{amountMsat}', '1') WHERE seq = 17`);
      assert.deepEqual(await log.verify(), { ok: false, seq: 17, problem: 'EDITED' });
      // Same value, written with other key order and spacing: JSONB normalises, the hash holds.
      await db.query(
        `UPDATE audit_log SET data = '{ "amountMsat" : 17000, "i" : 17 }'::jsonb WHERE seq = 17`,
      );
      assert.equal((await log.verify()).ok, true);

      await db.query(`UPDATE audit_log SET actor = 'system' WHERE seq = 9`);
      assert.deepEqual(await log.verify(), { ok: false, seq: 9, problem: 'EDITED' });
      await db.query(`UPDATE audit_log SET actor = $1 WHERE seq = 9`, [ALICE]);

      const row = (await collect(log.entries()))[29]!;
      const forged = rehash({ ...row, data: { forged: true } });
      const original = canonicalJson(row.data);
      await db.query('UPDATE audit_log SET data = $1::jsonb, hash = $2 WHERE seq = 30', [
        canonicalJson(forged.data),
        forged.hash,
      ]);
      assert.deepEqual(await log.verify(), { ok: false, seq: 31, problem: 'BAD_LINK' });
      await db.query('UPDATE audit_log SET data = $1::jsonb, hash = $2 WHERE seq = 30', [original, row.hash]);
      assert.equal((await log.verify()).ok, true);
    });

    test('a deleted middle row reads MISSING; a deleted last row is only caught by the anchored head', async () => {
      const anchored = await log.head();
      await db.query('DELETE FROM audit_log WHERE seq = 50');
      const shortened = await log.verify();
      assert.equal(shortened.ok, true); // the chain alone cannot tell
      assert.ok(shortened.ok && shortened.headHash !== anchored!.hash && shortened.count === 49);

      await db.query('DELETE FROM audit_log WHERE seq = 21');
      assert.deepEqual(await log.verify(), { ok: false, seq: 21, problem: 'MISSING' });
    });

    test('append runs in the caller transaction: a rollback leaves no entry and burns no seq', async () => {
      // Fresh table state for this test.
      await db.query('DELETE FROM audit_log');
      const first = await log.appendNow(input(1));
      await assert.rejects(
        db.transaction(async (tx) => {
          await log.append(tx, input(2));
          throw new Error('caller failed after appending');
        }),
        /caller failed/,
      );
      assert.deepEqual(await log.head(), { seq: 1, hash: first.hash });
      const second = await db.transaction((tx) => log.append(tx, input(3), 42));
      assert.equal(second.seq, 2);
      assert.equal(second.atS, 42);
      assert.equal(second.prevHash, first.hash);
      // A refused input throws before any SQL, so the caller's transaction stays usable.
      const third = await db.transaction(async (tx) => {
        await assert.rejects(log.append(tx, { ...input(4), data: { big: 'x'.repeat(9000) } }), RangeError);
        return log.append(tx, input(4));
      });
      assert.equal(third.seq, 3);
      assert.deepEqual(await log.verify(), { ok: true, count: 3, headHash: third.hash });
    });
  });
}

const pgliteDir = mkdtempSync(join(tmpdir(), 'fedai-audit-'));
after(() => {
  rmSync(pgliteDir, { recursive: true, force: true });
});
storeSuite('PGlite', () => openDb({ dataDir: join(pgliteDir, 'data') }));

describe('PGlite concurrency', () => {
  test('40 concurrent appendNow calls get seqs 1..40 and the chain verifies', async () => {
    const db = await openDb({ dataDir: join(pgliteDir, 'concurrent') });
    try {
      const log = await AuditLog.open(db);
      const entries = await Promise.all(Array.from({ length: 40 }, (_, i) => log.appendNow(input(i))));
      assert.deepEqual(
        entries.map((e) => e.seq).sort((a, b) => a - b),
        Array.from({ length: 40 }, (_, i) => i + 1),
      );
      const verified = await log.verify();
      assert.equal(verified.ok && verified.count, 40);
      // Advisory locks are accepted by PGlite (its single backend serialises anyway).
      const locked = await db.transaction((tx) =>
        tx.query('SELECT pg_advisory_xact_lock(7378413934059025764)'),
      );
      assert.equal(locked.rows.length, 1);
    } finally {
      await db.close();
    }
  });
});

describe('on a real PostgreSQL server', () => {
  let server: PostgresServer;
  before(async () => {
    server = await startPostgres();
  });
  after(async () => {
    await server?.stop();
  });

  storeSuite('PostgreSQL', () => openDb({ url: server.url, maxConnections: 5 }));

  test('two pools (two processes) appending 30 each at once: 60 contiguous seqs, chain verifies', async () => {
    // Its own database, so the store suite's rows do not mix in.
    const admin = await openDb({ url: server.url, maxConnections: 1 });
    await admin.query('CREATE DATABASE audit_concurrency');
    await admin.close();
    const url = server.url.replace(/\/postgres$/, '/audit_concurrency');
    const [dbA, dbB] = await Promise.all([
      openDb({ url, maxConnections: 8 }),
      openDb({ url, maxConnections: 8 }),
    ]);
    try {
      // Both "processes" migrate at once too.
      const [logA, logB] = await Promise.all([AuditLog.open(dbA), AuditLog.open(dbB)]);
      const appends = [
        ...Array.from({ length: 30 }, (_, i) => logA.appendNow({ ...input(i), subject: 'process-a' })),
        ...Array.from({ length: 30 }, (_, i) =>
          dbB.transaction((tx) => logB.append(tx, { ...input(i), subject: 'process-b' })),
        ),
      ];
      const entries = await Promise.all(appends);
      assert.deepEqual(
        entries.map((e) => e.seq).sort((a, b) => a - b),
        Array.from({ length: 60 }, (_, i) => i + 1),
      );
      const verified = await logA.verify();
      assert.equal(verified.ok && verified.count, 60);
      assert.deepEqual(await logB.verify(), verified);
      const bySubject = await dbA.query<{ subject: string; n: number }>(
        'SELECT subject, count(*)::int AS n FROM audit_log GROUP BY subject ORDER BY subject',
      );
      assert.deepEqual(bySubject.rows, [
        { subject: 'process-a', n: 30 },
        { subject: 'process-b', n: 30 },
      ]);
    } finally {
      await Promise.all([dbA.close(), dbB.close()]);
    }
  });
});
