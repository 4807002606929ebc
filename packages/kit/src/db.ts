// One database interface over embedded PGlite (the default: nothing to install) and a real
// PostgreSQL server through `pg` (when DATABASE_URL is set). Services write plain SQL against it.
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { PGlite } from '@electric-sql/pglite';
import { FedAiError } from '@fed-ai/protocol';
import pg from 'pg';
import { PreparedStatements } from './pglite-prepared';
import { extractTemplate, isNewDataDir, readTemplate, saveTemplate } from './pglite-template';
import { StartError } from './service';

export interface QueryResult<Row> {
  rows: Row[];
  rowCount: number;
}

/** Anything that runs SQL: the database itself or an open transaction. */
export interface Queryable {
  query<Row = Record<string, unknown>>(sql: string, params?: unknown[]): Promise<QueryResult<Row>>;
}

export interface Db extends Queryable {
  readonly kind: 'pglite' | 'postgres';
  /** Runs `fn` inside BEGIN/COMMIT; any throw rolls back. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  close(): Promise<void>;
}

const INT8_OID = 20;

/** BIGINT columns (money in msat, counters) come back as JS numbers; outside the safe range is a bug. */
export function parseInt8(text: string): number {
  const value = Number(text);
  if (!Number.isSafeInteger(value)) throw new Error(`BIGINT ${text} is outside the safe integer range`);
  return value;
}

export interface OpenDbOptions {
  /** postgres://... to use a PostgreSQL server; otherwise PGlite. */
  url?: string | undefined;
  /** Folder for PGlite's files; `memory://` or undefined keeps it in memory. */
  dataDir?: string | undefined;
  /** Pool size for PostgreSQL. */
  maxConnections?: number;
}

export async function openDb(options: OpenDbOptions): Promise<Db> {
  if (options.url) return openPostgres(options.url, options.maxConnections ?? 10);
  return openPglite(options.dataDir);
}

/**
 * PGlite's compiled WASM module and file-system bundle, made once per process and shared by every
 * database it opens (tests open hundreds: ~0.25 s of CPU each saved). Undefined where PGlite's
 * files cannot be found beside it; PGlite then loads its own, as before.
 */
let artifacts: Promise<{ pgliteWasmModule: WebAssembly.Module; fsBundle: Blob } | undefined> | undefined;
function pgliteArtifacts() {
  artifacts ??= (async () => {
    try {
      const dist = dirname(createRequire(import.meta.url).resolve('@electric-sql/pglite'));
      // The global exists in Node; this project's TypeScript libs type it but do not declare it.
      const wasm = (globalThis as { WebAssembly?: { compile(b: Uint8Array): Promise<WebAssembly.Module> } })
        .WebAssembly;
      if (!wasm) return undefined;
      const pgliteWasmModule = await wasm.compile(readFileSync(join(dist, 'pglite.wasm')));
      return { pgliteWasmModule, fsBundle: new Blob([readFileSync(join(dist, 'pglite.data'))]) };
    } catch {
      return undefined;
    }
  })();
  return artifacts;
}

/**
 * PostgreSQL's buffer pool inside PGlite (`shared_buffers`), from PGLITE_SHARED_BUFFERS ("16MB",
 * "512kB"); unset keeps PGlite's own (128MB). The pool is written through at every start (~0.1 s of
 * CPU for 128MB), so many small databases (a node's, the tests') start faster on a smaller one.
 */
function sharedBuffersParams(): string[] {
  const value = process.env.PGLITE_SHARED_BUFFERS?.trim();
  if (!value) return [];
  const match = /^(\d{1,7})(kB|MB|GB)$/.exec(value);
  const kib = match ? Number(match[1]) * { kB: 1, MB: 1024, GB: 1024 * 1024 }[match[2] as 'kB'] : 0;
  // PostgreSQL's floor is 16 buffers of 8 kB; PGlite's memory tops out at 2 GiB.
  if (kib < 128 || kib > 1024 * 1024)
    throw new StartError(
      'CONFIG_INVALID',
      `PGLITE_SHARED_BUFFERS=${JSON.stringify(value.slice(0, 40))} is not a size from 128kB to 1GB`,
      'set it like 16MB or 512kB, or unset it',
    );
  return [...PGlite.defaultStartParams, '-c', `shared_buffers=${value}`];
}

/** A new database starts from the saved fresh cluster when there is one (pglite-template.ts). */
async function createPglite(dataDir: string | undefined): Promise<PGlite> {
  const startParams = sharedBuffersParams();
  const onDisk = dataDir !== undefined && !dataDir.startsWith('memory://');
  if (onDisk) mkdirSync(dataDir, { recursive: true });
  const options = {
    parsers: { [INT8_OID]: parseInt8 },
    ...(await pgliteArtifacts()),
    ...(startParams.length > 0 ? { startParams } : {}),
  };
  const fresh = isNewDataDir(dataDir);
  // On disk, the template's files are written by Node and PGlite opens them as an existing cluster.
  if (fresh && onDisk && extractTemplate(dataDir)) {
    try {
      return await PGlite.create(dataDir, options);
    } catch {
      for (const name of readdirSync(dataDir)) rmSync(join(dataDir, name), { recursive: true, force: true });
    }
  }
  const template = fresh ? readTemplate() : undefined;
  if (template) {
    try {
      return await PGlite.create(dataDir ?? 'memory://', { ...options, loadDataDir: template });
    } catch {
      // A template that does not load: start over without it.
      if (onDisk)
        for (const name of readdirSync(dataDir))
          rmSync(join(dataDir, name), { recursive: true, force: true });
    }
  }
  const lite = await PGlite.create(dataDir ?? 'memory://', options);
  if (fresh) await saveTemplate(lite).catch(() => undefined);
  return lite;
}

async function openPglite(dataDir: string | undefined): Promise<Db> {
  const lite = await createPglite(dataDir);
  const prepared = new PreparedStatements(lite);
  const shaped = <Row>(result: { rows: Row[]; affectedRows?: number }) => ({
    rows: result.rows,
    rowCount: result.affectedRows ?? result.rows.length,
  });
  // PGlite has one backend: its transaction() already serialises callers.
  return {
    kind: 'pglite',
    async query<Row>(sql: string, params: unknown[] = []) {
      return shaped(await prepared.alone<Row>(sql, params));
    },
    transaction<T>(fn: (tx: Queryable) => Promise<T>) {
      return lite.transaction(async (tx) =>
        fn({
          async query<Row>(sql: string, params: unknown[] = []) {
            if (tx.closed) throw new Error('Transaction is closed');
            return shaped(await prepared.inTransaction<Row>(sql, params));
          },
        }),
      );
    },
    async close() {
      await lite.close();
    },
  };
}

/** Node errors that mean the server cannot be reached now, not that a statement is wrong. */
const UNREACHABLE_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'ENOTFOUND',
]);
/** PostgreSQL shutting down or starting (SQLSTATE 57P01-57P03); class 08 is a connection exception. */
const UNREACHABLE_SQLSTATES = new Set(['57P01', '57P02', '57P03']);

/** Whether a database error means "down, restarting or cut off" (a retry may work), not a bug. */
export function isDatabaseUnreachable(error: unknown): boolean {
  if (typeof error !== 'object' || error === null) return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (UNREACHABLE_ERRNOS.has(code) || UNREACHABLE_SQLSTATES.has(code)))
    return true;
  if (typeof code === 'string' && /^08[0-9A-Z]{3}$/.test(code)) return true;
  // pg's own words for a cut connection (no code): while a query ran, and for a client used after.
  return (
    typeof message === 'string' &&
    (/^Connection terminated/.test(message) || /^Client has encountered a connection error/.test(message))
  );
}

/** An unreachable server becomes DATABASE_UNAVAILABLE (a 503 with a reason), anything else as it was. */
function classified(error: unknown): unknown {
  if (!isDatabaseUnreachable(error)) return error;
  return Object.assign(new FedAiError('DATABASE_UNAVAILABLE'), { cause: error });
}

async function openPostgres(url: string, maxConnections: number): Promise<Db> {
  const pool = new pg.Pool({
    connectionString: url,
    max: maxConnections,
    types: {
      getTypeParser: ((oid: number, format?: string) =>
        oid === INT8_OID
          ? parseInt8
          : pg.types.getTypeParser(oid, format as 'text')) as typeof pg.types.getTypeParser,
    },
  });
  // An idle client whose connection the server drops (restart, idle timeout, pg_terminate_backend)
  // emits 'error' on the pool; unhandled, that event would crash the process. The pool has already
  // discarded that client, and the next query opens a new connection.
  pool.on('error', () => {});
  // Fail at start, not on the first request, when the server is unreachable.
  const probe = await pool.connect();
  probe.release();
  const wrap = (client: pg.Pool | pg.PoolClient): Queryable => ({
    async query<Row>(sql: string, params?: unknown[]) {
      try {
        const result = await client.query(sql, params);
        return { rows: result.rows as Row[], rowCount: result.rowCount ?? result.rows.length };
      } catch (error) {
        throw classified(error);
      }
    },
  });
  return {
    kind: 'postgres',
    ...wrap(pool),
    async transaction<T>(fn: (tx: Queryable) => Promise<T>) {
      const client = await pool.connect().catch((error: unknown) => {
        throw classified(error);
      });
      // A connection the server cuts while this transaction holds it (between statements) emits
      // 'error' on the client, not the pool: unhandled, that would crash the process. The next
      // statement fails on it, and the broken client is destroyed at release.
      let cut: Error | undefined;
      const onCut = (error: Error) => {
        cut = error;
      };
      client.on('error', onCut);
      // A connection whose ROLLBACK failed is in an unknown state: destroy it, do not reuse it.
      let broken: Error | undefined;
      try {
        await client.query('BEGIN');
        const value = await fn(wrap(client));
        await client.query('COMMIT');
        return value;
      } catch (error) {
        await client.query('ROLLBACK').catch((rollbackError: Error) => {
          broken = rollbackError;
        });
        throw classified(error);
      } finally {
        client.off('error', onCut);
        client.release(broken ?? cut);
      }
    },
    async close() {
      await pool.end();
    },
  };
}

export interface Migration {
  /** Increasing integer; never reuse or edit an applied one. */
  version: number;
  name: string;
  sql: string;
}

/**
 * Applies the migrations of one service in order, each in its own transaction, recording them in
 * `schema_migrations`. Safe to call on every start; concurrent starters are serialised by a lock.
 */
export async function migrate(db: Db, service: string, migrations: readonly Migration[]): Promise<number[]> {
  // Under a lock too: two concurrent CREATE TABLE IF NOT EXISTS on PostgreSQL can both miss the
  // table and one then fails on a duplicate key in pg_type.
  await db.transaction(async (tx) => {
    await tx.query("SELECT pg_advisory_xact_lock(hashtext('schema_migrations'))");
    await tx.query(`CREATE TABLE IF NOT EXISTS schema_migrations (
      service TEXT NOT NULL, version INTEGER NOT NULL, name TEXT NOT NULL,
      applied_at TIMESTAMPTZ NOT NULL DEFAULT now(), PRIMARY KEY (service, version))`);
  });
  const ordered = [...migrations].sort((a, b) => a.version - b.version);
  const applied: number[] = [];
  for (const migration of ordered) {
    const done = await db.transaction(async (tx) => {
      // Advisory lock so two replicas starting together do not both apply a migration.
      // One lock for every service's migrations: services sharing a database (router and settlement
      // on one PostgreSQL) may create the same table (replay_ids), and concurrent DDL on one name races.
      await tx.query("SELECT pg_advisory_xact_lock(hashtext('fedai-migrations'))");
      const seen = await tx.query('SELECT 1 FROM schema_migrations WHERE service = $1 AND version = $2', [
        service,
        migration.version,
      ]);
      if (seen.rows.length > 0) return false;
      for (const statement of splitStatements(migration.sql)) await tx.query(statement);
      await tx.query('INSERT INTO schema_migrations (service, version, name) VALUES ($1, $2, $3)', [
        service,
        migration.version,
        migration.name,
      ]);
      return true;
    });
    if (done) applied.push(migration.version);
  }
  return applied;
}

/** Splits a migration on `;` at line ends; migrations keep one statement per `;`-terminated block. */
function splitStatements(sql: string): string[] {
  return sql
    .split(/;\s*\n/)
    .map((s) => s.trim().replace(/;$/, ''))
    .filter((s) => s.length > 0);
}
