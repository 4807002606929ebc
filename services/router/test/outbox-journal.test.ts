// The outbox journal (a router that owns its data directory): replay is exact for any sequence of
// arrivals and ends, a torn last line is dropped and a corrupt one refused, the rewrite keeps
// every live row, rows a previous version left in the table move in, and a SIGKILL at any moment
// keeps every row whose append had resolved.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import {
  appendFileSync,
  constants,
  mkdtempSync,
  readdirSync,
  readFileSync,
  readlinkSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openDb } from '@fed-ai/kit';
import fc from 'fast-check';
import { pino } from 'pino';
import { type JournalRow, OutboxJournal, replayJournal } from '../src/outbox-journal';
import { migrateOutbox, type OutboxRow, SettlementOutbox } from '../src/settlement-outbox';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function tempDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-journal-'));
  dirs.push(dir);
  return dir;
}
const row = (opId: string, op: JournalRow['op'] = 'capture'): JournalRow => ({
  opId,
  op,
  payload: JSON.stringify({ op, op_id: opId, note: 'ü "quoted"\n' }),
  repeatUntilMs: 0,
});
const silent = pino({ level: 'silent' });

test('replay equals a plain map for any sequence of arrivals and ends (property)', async () => {
  const step = fc.record({ add: fc.boolean(), id: fc.integer({ min: 0, max: 7 }), release: fc.boolean() });
  await fc.assert(
    fc.asyncProperty(fc.array(step, { maxLength: 40 }), async (steps) => {
      const path = join(tempDir(), 'j');
      const journal = await OutboxJournal.open(path);
      const model = new Map<string, string>();
      for (const s of steps) {
        const op = s.release ? 'release' : 'capture';
        const key = `rq-${s.id}|${op}`;
        if (s.add) {
          await journal.append([row(`rq-${s.id}`, op)]);
          if (!model.has(key)) model.set(key, row(`rq-${s.id}`, op).payload);
        } else {
          await journal.remove([{ opId: `rq-${s.id}`, op }]);
          model.delete(key);
        }
      }
      await journal.close();
      const { rows } = replayJournal(readFileSync(path, 'utf8'));
      assert.deepEqual(new Map([...rows].map(([k, r]) => [k, r.payload])), model);
    }),
    { numRuns: 60 },
  );
});

test('a torn last line is cut off at open; a bad line before the end is refused', async () => {
  const path = join(tempDir(), 'j');
  const journal = await OutboxJournal.open(path);
  await journal.append([row('rq-1'), row('rq-2')]);
  await journal.close();
  appendFileSync(path, '["a","rq-3","capture","{\\"op'); // a crash in the middle of a write
  const reopened = await OutboxJournal.open(path);
  assert.deepEqual([...reopened.rows.keys()], ['rq-1|capture', 'rq-2|capture']);
  await reopened.append([row('rq-4')]); // starts on a line of its own
  await reopened.close();
  assert.deepEqual(
    [...replayJournal(readFileSync(path, 'utf8')).rows.keys()],
    ['rq-1|capture', 'rq-2|capture', 'rq-4|capture'],
  );

  writeFileSync(path, `["a","rq-1","capture","{}",0]\nnot json\n["d","rq-1","capture"]\n`);
  await assert.rejects(OutboxJournal.open(path), { code: 'OUTBOX_JOURNAL_CORRUPT' });
  writeFileSync(path, `["a","rq-1","refund","{}",0]\n`);
  await assert.rejects(OutboxJournal.open(path), { code: 'OUTBOX_JOURNAL_CORRUPT' });
});

test('the rewrite keeps every live row and the file stops growing', async () => {
  const path = join(tempDir(), 'j');
  const journal = await OutboxJournal.open(path);
  await journal.append([row('keep-a'), row('keep-b', 'release')]);
  for (let i = 0; i < 3_000; i++) {
    await journal.append([row(`tmp-${i}`)]);
    await journal.remove([{ opId: `tmp-${i}`, op: 'capture' }]);
  }
  const size = await journal.sizeBytes();
  await journal.close();
  // 6,002 entries of ~100 bytes were written; the rewrite left far fewer.
  assert.ok(size < 3_000 * 100, `journal is ${size} bytes`);
  const reopened = await OutboxJournal.open(path);
  assert.deepEqual([...reopened.rows.keys()].sort(), ['keep-a|capture', 'keep-b|release']);
  assert.equal(reopened.rows.get('keep-a|capture')?.payload, row('keep-a').payload);
  await reopened.close();
});

/** The open flags (Linux /proc) of every descriptor this process holds on `path`. */
function openFlags(path: string): number[] {
  const flags: number[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // closed meanwhile (readdir's own descriptor)
    }
    if (target !== path) continue;
    const info = readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8');
    flags.push(Number.parseInt(/^flags:\s+([0-7]+)/m.exec(info)?.[1] ?? 'x', 8));
  }
  return flags;
}

test('appends are synchronous writes: the journal is open with O_DSYNC, after a rewrite too', async () => {
  const path = join(tempDir(), 'j');
  const journal = await OutboxJournal.open(path);
  const dsync = (f: number) =>
    (f & constants.O_DSYNC) === constants.O_DSYNC && (f & constants.O_APPEND) !== 0;
  let flags = openFlags(path);
  assert.equal(flags.length, 1);
  assert.ok(flags.every(dsync), `flags ${flags.map((f) => f.toString(8))}`);
  // Enough entries in two writes to make the next one rewrite the file and reopen it.
  const many = Array.from({ length: 2_100 }, (_, i) => row(`r-${i}`));
  await journal.append(many);
  await journal.remove(many.map((r) => ({ opId: r.opId, op: r.op })));
  await journal.append([row('last')]);
  flags = openFlags(path);
  assert.equal(flags.length, 1);
  assert.ok(flags.every(dsync), `flags after the rewrite ${flags.map((f) => f.toString(8))}`);
  assert.ok((await journal.sizeBytes()) < 1_000, 'the file was rewritten');
  await journal.close();
});

test('the outbox on its journal: table rows move in, a restart sends every row, sent rows end', async () => {
  const dir = tempDir();
  const db = await openDb({ dataDir: join(dir, 'db') });
  try {
    await migrateOutbox(db);
    // A previous version's row, left in the table.
    const tableOutbox = new SettlementOutbox({ db, logger: silent, send: async () => 'retry' });
    await tableOutbox.add('rq-old', 'capture', { op: 'capture', op_id: 'rq-old' });

    const sent: OutboxRow[] = [];
    const journalPath = join(dir, 'settlement-outbox.journal');
    const first = new SettlementOutbox({ db, logger: silent, send: async () => 'retry', journalPath });
    await first.open();
    const left = await db.query('SELECT op_id FROM settlement_outbox');
    assert.equal(left.rows.length, 0, 'the table row moved into the journal');
    await first.add('rq-new', 'capture', { op: 'capture', op_id: 'rq-new' }, { inFlight: true });
    assert.deepEqual([...(await first.holding(['rq-old', 'rq-new', 'rq-none']))].sort(), [
      'rq-new',
      'rq-old',
    ]);
    await first.drain(); // the first drain takes every row; both fail (retry)
    assert.equal(await first.pending(), 2);
    await first.stop();

    const second = new SettlementOutbox({
      db,
      logger: silent,
      send: async (r) => {
        sent.push(r);
        return 'done';
      },
      journalPath,
    });
    await second.open();
    assert.equal(await second.drain(), 2);
    assert.deepEqual(sent.map((r) => [r.op_id, r.payload]).sort(), [
      ['rq-new', { op: 'capture', op_id: 'rq-new' }],
      ['rq-old', { op: 'capture', op_id: 'rq-old' }],
    ]);
    assert.equal(await second.pending(), 0);
    await second.stop();
    const third = new SettlementOutbox({ db, logger: silent, send: async () => 'done', journalPath });
    await third.open();
    assert.equal(await third.pending(), 0, 'ended rows stay ended after a restart');
    await third.stop();
  } finally {
    await db.close();
  }
});

// A child appends rows one batch at a time and prints each id once its append resolved; it is
// SIGKILLed mid-stream. Every printed id must be in the journal afterwards.
const CHILD = `
import { OutboxJournal } from ${JSON.stringify(new URL('../src/outbox-journal.ts', import.meta.url).pathname)};
const journal = await OutboxJournal.open(process.argv[2]);
for (let i = 0; ; i++) {
  const ids = [0, 1, 2].map((j) => 'rq-' + i + '-' + j);
  await journal.append(ids.map((opId) => ({ opId, op: 'capture', payload: '{"x":"' + 'y'.repeat(200) + '"}', repeatUntilMs: 0 })));
  if (i % 2 === 1) await journal.remove([{ opId: ids[0], op: 'capture' }]);
  process.stdout.write(ids.slice(i % 2 === 1 ? 1 : 0).join('\\n') + '\\n');
}
`;

test('SIGKILL while appending: every row whose append resolved is there after restart', async () => {
  const dir = tempDir();
  const path = join(dir, 'j');
  const script = join(dir, 'child.mts');
  writeFileSync(script, CHILD);
  for (const afterLines of [5, 200]) {
    const child = spawn(process.execPath, ['--import', 'tsx', script, path], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    let out = '';
    await new Promise<void>((resolve) => {
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString();
        if (out.split('\n').length > afterLines) {
          child.kill('SIGKILL');
          resolve();
        }
      });
    });
    await new Promise((r) => child.once('exit', r));
    const confirmed = out.split('\n').filter((l) => /^rq-\d+-\d$/.test(l));
    const journal = await OutboxJournal.open(path);
    const missing = confirmed.filter((id) => !journal.rows.has(`${id}|capture`));
    assert.deepEqual(missing, [], `confirmed rows lost after a kill at ${afterLines} lines`);
    assert.ok(confirmed.length >= afterLines - 1);
    await journal.close();
    rmSync(path, { force: true });
  }
});
