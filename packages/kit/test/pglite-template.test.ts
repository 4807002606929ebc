// The PGlite template (pglite-template.ts): saved from the first fresh database, loaded by the next
// ones (in memory and on disk, which keep their own data), ignored in an unsafe folder, and a
// broken template falls back to a fresh cluster.
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { openDb } from '../src/db';
import { extractTemplate } from '../src/pglite-template';

const root = mkdtempSync(join(tmpdir(), 'fedai-pglite-template-'));
const previous = process.env.FEDAI_PGLITE_TEMPLATE_DIR;
after(() => {
  if (previous === undefined) delete process.env.FEDAI_PGLITE_TEMPLATE_DIR;
  else process.env.FEDAI_PGLITE_TEMPLATE_DIR = previous;
  rmSync(root, { recursive: true, force: true });
});

function templateDir(name: string, mode = 0o700): string {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  chmodSync(dir, mode);
  process.env.FEDAI_PGLITE_TEMPLATE_DIR = dir;
  return dir;
}

async function roundTrip(dataDir?: string): Promise<void> {
  const db = await openDb({ dataDir });
  await db.query('CREATE TABLE IF NOT EXISTS t (n BIGINT)');
  await db.query('INSERT INTO t VALUES ($1)', [7]);
  await db.close();
  if (!dataDir) return;
  const again = await openDb({ dataDir });
  const rows = await again.query<{ n: number }>('SELECT n FROM t');
  assert.deepEqual(rows.rows, [{ n: 7 }], 'the data on disk is its own, kept across a reopen');
  await again.close();
}

test('the first fresh database saves the template; later ones (memory and disk) start from it', async () => {
  const dir = templateDir('safe');
  await roundTrip();
  const saved = readdirSync(dir);
  assert.equal(saved.length, 1);
  assert.match(saved[0]!, /^pglite-.+\.tar$/);
  await roundTrip();
  await roundTrip(join(root, 'disk-a'));
  await roundTrip(join(root, 'disk-b'));
  const fromTemplate = await openDb({});
  const tables = await fromTemplate.query<{ n: number }>(
    "SELECT count(*)::int AS n FROM pg_tables WHERE schemaname = 'public'",
  );
  assert.equal(tables.rows[0]?.n, 0, 'the template holds no table of anyone');
  await fromTemplate.close();
});

test('a folder others can write is not used; a broken template falls back to a fresh cluster', async () => {
  const open = templateDir('group-writable', 0o777);
  await roundTrip();
  assert.deepEqual(readdirSync(open), [], 'nothing saved in an unsafe folder');

  // A broken file under the template's own name (the first test saved one; each fresh cluster
  // costs seconds of CPU, so none is made just to be broken).
  const [name] = readdirSync(join(root, 'safe'));
  assert.match(name ?? '', /^pglite-.+\.tar$/);
  const broken = templateDir('broken');
  writeFileSync(join(broken, name!), 'not a tarball');
  await roundTrip(join(root, 'disk-c'));
  assert.notEqual(readdirSync(join(root, 'disk-c')).length, 0, 'a fresh cluster on disk');
});

/** A one-entry ustar archive (what PGlite's dumpDataDir writes), name and type as given. */
function tarOf(name: string, type: string, data = ''): Buffer {
  const header = Buffer.alloc(512);
  header.write(name, 0, 'utf8');
  header.write('0000600\0', 100);
  header.write(`${data.length.toString(8).padStart(11, '0')}\0`, 124);
  header.write(type, 156);
  header.write('ustar\0', 257);
  // The header checksum: the byte sum with its own field read as spaces.
  header.fill(' ', 148, 156);
  const sum = header.reduce((total, byte) => total + byte, 0);
  header.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  const body = Buffer.alloc(Math.ceil(data.length / 512) * 512);
  body.write(data);
  return Buffer.concat([header, body, Buffer.alloc(1024)]);
}

test('on disk the template is written by Node; a name leaving the folder or a link writes nothing', () => {
  const [name] = readdirSync(join(root, 'safe'));
  const dir = templateDir('crafted');
  const cases: [string, Buffer][] = [
    ['a name with ..', tarOf('/../escaped', '0', 'x')],
    ['a symbolic link', tarOf('/PG_VERSION', '2')],
    ['no PG_VERSION', tarOf('/base', '5')],
    ['a truncated archive', tarOf('/PG_VERSION', '0', '17').subarray(0, 600)],
  ];
  for (const [what, tarball] of cases) {
    writeFileSync(join(dir, name!), tarball);
    const dataDir = join(root, `crafted-${cases.findIndex(([w]) => w === what)}`);
    mkdirSync(dataDir);
    assert.equal(extractTemplate(dataDir), false, what);
    assert.deepEqual(readdirSync(dataDir), [], `${what}: nothing written`);
  }
  assert.deepEqual(readdirSync(root).includes('escaped'), false);
  writeFileSync(join(dir, name!), tarOf('/PG_VERSION', '0', '17\n'));
  const plain = join(root, 'crafted-plain');
  mkdirSync(plain);
  assert.equal(extractTemplate(plain), true);
  assert.equal(readFileSync(join(plain, 'PG_VERSION'), 'utf8'), '17\n');
});
