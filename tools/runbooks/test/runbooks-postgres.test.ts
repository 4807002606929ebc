// The PostgreSQL blocks of the runbooks (POSTGRES_BLOCK_IDS in ./blocks), executed against a real
// PostgreSQL server (startPostgres: Debian's binaries, as in CI) holding a settlement database that
// the real settlement service wrote (faucet top-ups, a capture-less reservation still held, one
// released): backup-restore.md's `pg_dump -Fc` restored into a fresh database gives exactly the
// recorded `fedai ledger verify --database-url` report; rollback.md's pre-upgrade record and
// backup, then an "upgrade" (a newer release's migration, a table and a column, and money moved
// after it), then the in-place restore: the same ledger report and schema_migrations as before the
// upgrade, the upgraded database kept aside (and there `pg_restore --clean` is shown to leave the
// newer release's table behind, which is why the runbook restores into a new database).
import assert from 'node:assert/strict';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { after, before, test } from 'node:test';
import {
  findPostgresBin,
  migrate,
  openDb,
  type PostgresServer,
  startPostgres,
} from '../../../packages/kit/src/index';
import { settlementConfigSchema, startSettlement } from '../../../services/settlement/src/index';
import { builtCli } from '../../cli/test/built-cli';
import { markedBlocks, POSTGRES_BLOCK_IDS, type Run, run, runBlock } from './blocks';

const work = mkdtempSync(join(tmpdir(), 'fedai-runbooks-pg-'));
const binDir = join(work, 'bin');
const backupDir = join(work, 'backups');
const blocks = markedBlocks();
const ran = new Set<string>();
let server: PostgresServer;
const vars: Record<string, string> = {};

function block(id: string): Promise<Run> {
  return runBlock(blocks, ran, id, {
    ...process.env,
    // The server's own client tools (psql, pg_dump, pg_restore) first: the same major version.
    PATH: [binDir, findPostgresBin() ?? '', process.env.PATH ?? ''].filter(Boolean).join(delimiter),
    NO_COLOR: '1',
    FEDAI_DATA_DIR: join(work, 'data'),
    FEDAI_CONFIG: '',
    DATABASE_URL: '',
    PGPASSWORD: '',
    ...vars,
  });
}

const dbUrl = (name: string) => server.url.replace(/\/postgres$/, `/${name}`);

async function query<T>(url: string, sql: string): Promise<T[]> {
  const db = await openDb({ url });
  try {
    return (await db.query(sql)).rows as T[];
  } finally {
    await db.close();
  }
}

async function tableExists(url: string, table: string): Promise<boolean> {
  const rows = await query<{ found: string | null }>(url, `SELECT to_regclass('public.${table}') AS found`);
  return rows[0]?.found !== null && rows[0]?.found !== undefined;
}

/** The ledger report as `fedai ledger verify --json` gives it, read in process. */
async function ledgerReport(url: string): Promise<unknown> {
  const result = await run(
    join(binDir, 'fedai'),
    ['ledger', 'verify', '--database-url', url, '--json'],
    {
      ...process.env,
      DATABASE_URL: '',
    },
    60_000,
  );
  assert.equal(result.code, 0, result.stderr);
  return JSON.parse(result.stdout) as unknown;
}

/** Starts the real settlement service on `url`, lets `use` move money through its books, stops it. */
async function withSettlement(
  url: string,
  use: (books: Awaited<ReturnType<typeof startSettlement>>['books']) => Promise<void>,
): Promise<void> {
  const settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATABASE_URL: url,
      DATA_DIR: join(work, 'settlement'),
      FAUCET: 'true',
      PAYOUT_INTERVAL_S: '0',
    }),
  );
  try {
    await use(settlement.books);
  } finally {
    await settlement.close();
  }
}

async function topUp(
  books: Awaited<ReturnType<typeof startSettlement>>['books'],
  payer: string,
  amountMsat: number,
): Promise<void> {
  const invoice = await books.openTopup(payer, amountMsat);
  await books.faucetPay(invoice.bolt11);
}

before(async () => {
  mkdirSync(binDir, { recursive: true });
  mkdirSync(backupDir, { recursive: true });
  const bundle = await builtCli();
  writeFileSync(join(binDir, 'fedai'), `#!/bin/sh\nexec "${process.execPath}" "${bundle}" "$@"\n`);
  chmodSync(join(binDir, 'fedai'), 0o755);
  server = await startPostgres();
  await query(server.url, 'CREATE DATABASE settlement');
  Object.assign(vars, {
    BACKUP_DIR: backupDir,
    PG_ADMIN_URL: server.url,
    SETTLEMENT_DATABASE_URL: dbUrl('settlement'),
    SETTLEMENT_DUMP: join(backupDir, 'settlement.dump'),
    RESTORE_DATABASE_URL: dbUrl('settlement_restore_check'),
  });
  // The books a settlement service wrote: two tabs topped up by the faucet, a request's hold still
  // pending (an hour), another one released.
  await withSettlement(vars.SETTLEMENT_DATABASE_URL ?? '', async (books) => {
    await topUp(books, 'a'.repeat(64), 120_000);
    await topUp(books, 'b'.repeat(64), 30_000);
    await books.reserve('runbook-held', 'a'.repeat(64), 7_000, 3600);
    await books.reserve('runbook-released', 'b'.repeat(64), 2_000, 3600);
    await books.release('runbook-released');
  });
});

after(async () => {
  await server?.stop();
  rmSync(work, { recursive: true, force: true });
});

test('backup-restore.md (PostgreSQL): pg_dump -Fc restored into a fresh database gives the same ledger report', async () => {
  const backup = await block('pg-backup');
  assert.ok(existsSync(vars.SETTLEMENT_DUMP ?? ''), 'the dump file exists');
  assert.match(backup.stdout, /^TABLE DATA public ledger_transfers\b/m);
  const before = JSON.parse(readFileSync(join(backupDir, 'ledger-before.json'), 'utf8')) as {
    ok: boolean;
    accounts: number;
    transfers: number;
    postedTotalMsat: number;
    pendingTotalMsat: number;
  };
  assert.equal(before.ok, true);
  // Two faucet top-ups posted (120,000 + 30,000 msat), one hold pending, one voided.
  assert.equal(before.postedTotalMsat, 150_000, JSON.stringify(before));
  assert.equal(before.pendingTotalMsat, 7_000);

  assert.equal(
    await tableExists(vars.RESTORE_DATABASE_URL ?? '', 'ledger_transfers').catch(() => false),
    false,
  );
  const restored = await block('pg-restore-fresh');
  assert.equal(restored.stdout, '', 'diff of the two ledger reports is empty');
  assert.deepEqual(await ledgerReport(vars.RESTORE_DATABASE_URL ?? ''), before);
  // The copy holds the rows themselves (both top-ups), and the live database is untouched.
  const counts = await query<{ n: number | string }>(
    vars.RESTORE_DATABASE_URL ?? '',
    'SELECT count(*) AS n FROM topups',
  );
  assert.equal(Number(counts[0]?.n), 2);
  assert.deepEqual(await ledgerReport(vars.SETTLEMENT_DATABASE_URL ?? ''), before);
});

test('rollback.md: record, back up, upgrade, restore in place: the pre-upgrade ledger and schema_migrations', async () => {
  const settlementUrl = vars.SETTLEMENT_DATABASE_URL ?? '';
  const record = await block('rollback-record');
  assert.match(readFileSync(join(backupDir, 'release-before.txt'), 'utf8'), /^[0-9a-f]{40}\n$/);
  const migrationsBefore = readFileSync(join(backupDir, 'migrations-before.txt'), 'utf8');
  assert.match(migrationsBefore, /^settlement-books\|1\|/m);
  assert.equal(record.stdout, migrationsBefore);
  await block('pg-backup');
  const ledgerBefore = JSON.parse(readFileSync(join(backupDir, 'ledger-before.json'), 'utf8')) as unknown;

  // The upgrade: a newer release's migration (a new table, a new column) and money moved after it.
  const db = await openDb({ url: settlementUrl });
  try {
    assert.deepEqual(
      await migrate(db, 'settlement-books', [
        {
          version: 1000,
          name: 'next_release_notes',
          sql: 'CREATE TABLE next_release_notes (id TEXT PRIMARY KEY);\nALTER TABLE topups ADD COLUMN note TEXT',
        },
      ]),
      [1000],
    );
  } finally {
    await db.close();
  }
  await withSettlement(settlementUrl, async (books) => {
    await topUp(books, 'c'.repeat(64), 40_000);
  });
  assert.notDeepEqual(await ledgerReport(settlementUrl), ledgerBefore, 'the upgrade moved money');

  const replaced = await block('pg-restore-replace');
  const aside = /^the replaced database is kept as (settlement_damaged_\d+)$/m.exec(replaced.stdout)?.[1];
  assert.ok(aside, replaced.stdout);
  assert.deepEqual(await ledgerReport(settlementUrl), ledgerBefore);
  const verified = await block('rollback-verify');
  assert.equal(verified.stdout, '', 'diff of the schema_migrations lists is empty');
  assert.equal(await tableExists(settlementUrl, 'next_release_notes'), false);
  const columns = await query<{ column_name: string }>(
    settlementUrl,
    "SELECT column_name FROM information_schema.columns WHERE table_name = 'topups' AND column_name = 'note'",
  );
  assert.deepEqual(columns, []);

  // The upgraded database is kept aside, whole. And why the runbook does not restore with --clean:
  // over the upgraded database, --clean replaces what the dump holds but leaves the newer table.
  const asideUrl = dbUrl(aside);
  const versions = await query<{ version: number }>(
    asideUrl,
    "SELECT version FROM schema_migrations WHERE service = 'settlement-books' AND version = 1000",
  );
  assert.equal(versions.length, 1);
  const clean = await run(
    join(findPostgresBin() ?? '/usr/bin', 'pg_restore'),
    ['--clean', '--if-exists', '--no-owner', '-d', asideUrl, vars.SETTLEMENT_DUMP ?? ''],
    { ...process.env, PGPASSWORD: '' },
    60_000,
  );
  assert.equal(clean.code, 0, clean.stderr);
  assert.equal(await tableExists(asideUrl, 'next_release_notes'), true, '--clean left the newer table');
  const afterClean = await query<{ version: number }>(
    asideUrl,
    "SELECT version FROM schema_migrations WHERE service = 'settlement-books' AND version = 1000",
  );
  assert.deepEqual(afterClean, [], 'while schema_migrations says the migration never ran');
});

test('every PostgreSQL block of the runbooks was run by this file', () => {
  assert.deepEqual([...ran].sort(), [...POSTGRES_BLOCK_IDS].sort());
  for (const id of POSTGRES_BLOCK_IDS) assert.ok(blocks.has(id), `${id} is marked in docs/runbooks`);
});
