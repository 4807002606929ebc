// The wallet fleet's audit log: append-only and hash-chained, so an edited, removed or reordered row
// shows up on verify. Pure core (canonical JSON, entry hash, chain check) first, then the database
// shell (`AuditLog`).
//
// What the chain proves: each row commits to its predecessor, so changing any row breaks every later
// link. What it cannot prove alone: that rows were not cut off the end, or that the whole tail was
// rewritten with fresh hashes (sha256 has no key). Callers anchor `headHash` (and `count`) somewhere
// the database's writer cannot change, e.g. signed periodic checkpoints, and compare on verify.
import { createHash } from 'node:crypto';
import { type Db, type Migration, migrate, type Queryable } from '@fed-ai/kit';

export interface AuditEntry {
  seq: number;
  atS: number;
  /** Pubkey hex of whoever acted, or 'system'. */
  actor: string;
  /** What happened: 'decision', 'payment.sent', 'approval.approve', 'kill', 'policy.set', ... */
  action: string;
  /** What it happened to: a wallet id, a group id, 'fleet'. */
  subject: string;
  /** Small JSON facts about the action; never prompts, outputs or secrets. */
  data: Record<string, unknown>;
  prevHash: string;
  hash: string;
}

export interface AuditInput {
  actor: string;
  action: string;
  subject: string;
  data: Record<string, unknown>;
}

type AuditProblem = 'EDITED' | 'REORDERED' | 'MISSING' | 'BAD_LINK';

export type VerifyResult =
  | { ok: true; count: number; headHash: string }
  | { ok: false; seq: number; problem: AuditProblem };

/** prevHash of seq 1. */
export const GENESIS_HASH = '0'.repeat(64);
/** Audit data is for small facts; a bigger one is a caller putting a prompt or a blob in it. */
export const MAX_AUDIT_DATA_BYTES = 8 * 1024;
/** Nesting bound: also stops a cyclic object before it overflows the stack. */
const MAX_AUDIT_DATA_DEPTH = 32;
/** Rows per query when exporting or verifying, so memory stays bounded on any log size. */
const AUDIT_PAGE_ROWS = 1000;

const MAX_SUBJECT_CHARS = 256;
const ACTOR_PATTERN = /^(?:[0-9a-f]{64}|system)$/;
const ACTION_PATTERN = /^[a-z][a-z0-9_.-]{0,63}$/;
const HASH_PATTERN = /^[0-9a-f]{64}$/;
/**
 * U+0000 or an unpaired surrogate: JSONB refuses them and TEXT params re-encode them, either way the
 * stored value would differ from the hashed one. A code-unit scan (Biome bans control characters in
 * regexes).
 */
function hasUnstorableChar(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code === 0) return true;
    if (code >= 0xd800 && code <= 0xdbff) {
      const next = text.charCodeAt(i + 1); // NaN past the end
      if (!(next >= 0xdc00 && next <= 0xdfff)) return true;
      i += 1;
    } else if (code >= 0xdc00 && code <= 0xdfff) {
      return true;
    }
  }
  return false;
}

function hasControlChar(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i);
    if (code < 0x20 || code === 0x7f) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// Pure core

function isPlainObject(value: object): value is Record<string, unknown> {
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/**
 * JSON with object keys sorted recursively (UTF-16 order), no whitespace, numbers as JSON.stringify
 * writes them. Properties whose value is undefined are left out, as JSON.stringify does. Throws a
 * TypeError on anything that is not JSON (NaN, Infinity, bigint, Date, Map, functions, undefined in
 * an array) and a RangeError past MAX_AUDIT_DATA_DEPTH.
 */
export function canonicalJson(value: unknown, depth = 0): string {
  if (depth > MAX_AUDIT_DATA_DEPTH) throw new RangeError(`JSON nests deeper than ${MAX_AUDIT_DATA_DEPTH}`);
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
    case 'string':
      return JSON.stringify(value);
    case 'number':
      if (!Number.isFinite(value)) throw new TypeError(`${value} is not a JSON number`);
      return JSON.stringify(value);
    case 'object': {
      if (Array.isArray(value)) {
        const items: string[] = [];
        for (let i = 0; i < value.length; i++) {
          if (value[i] === undefined) throw new TypeError('undefined (or a hole) in an array is not JSON');
          items.push(canonicalJson(value[i], depth + 1));
        }
        return `[${items.join(',')}]`;
      }
      if (!isPlainObject(value)) throw new TypeError('only plain objects are JSON objects');
      const fields: string[] = [];
      for (const key of Object.keys(value).sort()) {
        const field = value[key];
        if (field === undefined) continue;
        fields.push(`${JSON.stringify(key)}:${canonicalJson(field, depth + 1)}`);
      }
      return `{${fields.join(',')}}`;
    }
    default:
      throw new TypeError(`a ${typeof value} is not JSON`);
  }
}

/** sha256 hex over the canonical JSON of every field but the hash itself. */
export function entryHash(
  prevHash: string,
  seq: number,
  atS: number,
  actor: string,
  action: string,
  subject: string,
  data: Record<string, unknown>,
): string {
  const body = canonicalJson({ prevHash, seq, atS, actor, action, subject, data });
  return createHash('sha256').update(body, 'utf8').digest('hex');
}

function assertStorableStrings(value: unknown): void {
  if (typeof value === 'string') {
    if (hasUnstorableChar(value)) throw new RangeError('audit data holds U+0000 or an unpaired surrogate');
  } else if (Array.isArray(value)) {
    for (const item of value) assertStorableStrings(item);
  } else if (typeof value === 'object' && value !== null) {
    for (const [key, field] of Object.entries(value)) {
      assertStorableStrings(key);
      assertStorableStrings(field);
    }
  }
}

/**
 * Checks an entry before any SQL runs (a failed statement would abort the caller's transaction on
 * PostgreSQL) and returns the canonical JSON of its data. Throws a TypeError on a malformed field and
 * a RangeError on data over MAX_AUDIT_DATA_BYTES, too deep, or not storable.
 */
export function checkAuditInput(input: AuditInput, atS: number): string {
  if (!ACTOR_PATTERN.test(input.actor)) throw new TypeError('audit actor must be a hex pubkey or "system"');
  if (!ACTION_PATTERN.test(input.action))
    throw new TypeError(`audit action ${JSON.stringify(input.action)} is malformed`);
  if (
    typeof input.subject !== 'string' ||
    input.subject.length === 0 ||
    input.subject.length > MAX_SUBJECT_CHARS ||
    hasControlChar(input.subject) ||
    hasUnstorableChar(input.subject)
  ) {
    throw new TypeError(`audit subject must be 1..${MAX_SUBJECT_CHARS} printable characters`);
  }
  if (!Number.isSafeInteger(atS) || atS < 0) throw new TypeError(`audit atS ${atS} is not a whole second`);
  if (typeof input.data !== 'object' || input.data === null || Array.isArray(input.data)) {
    throw new TypeError('audit data must be a JSON object');
  }
  const dataJson = canonicalJson(input.data);
  const dataBytes = Buffer.byteLength(dataJson, 'utf8');
  if (dataBytes > MAX_AUDIT_DATA_BYTES) {
    throw new RangeError(`audit data is ${dataBytes} bytes of JSON; at most ${MAX_AUDIT_DATA_BYTES}`);
  }
  assertStorableStrings(input.data);
  return dataJson;
}

/** The entry that follows `head` (null: the log is empty). `dataJson` from checkAuditInput. */
export function nextEntry(
  head: { seq: number; hash: string } | null,
  input: AuditInput,
  dataJson: string,
  atS: number,
): AuditEntry {
  const seq = (head?.seq ?? 0) + 1;
  const prevHash = head?.hash ?? GENESIS_HASH;
  // The stored form: canonical, undefined properties gone.
  const data = JSON.parse(dataJson) as Record<string, unknown>;
  const hash = entryHash(prevHash, seq, atS, input.actor, input.action, input.subject, data);
  return { seq, atS, actor: input.actor, action: input.action, subject: input.subject, data, prevHash, hash };
}

function recomputedHash(entry: AuditEntry): string | null {
  try {
    return entryHash(
      entry.prevHash,
      entry.seq,
      entry.atS,
      entry.actor,
      entry.action,
      entry.subject,
      entry.data,
    );
  } catch {
    return null; // not JSON any more: edited
  }
}

/**
 * Checks a chain one entry at a time, holding only the previous entry (and, after a seq gap, the
 * entry that opened it), so a log of any size verifies in bounded memory. Entries come in the order
 * they are stored or exported. The first problem found is final.
 *
 * Per entry: its own hash (EDITED), then its seq against the previous one (not increasing:
 * REORDERED; a gap: MISSING), then its prevHash against the previous hash (BAD_LINK). A gap is
 * judged on the next entry: if that one goes back below the gap's end, rows were moved, not removed.
 */
class ChainVerifier {
  private prev = { seq: 0, hash: GENESIS_HASH };
  private count = 0;
  private gap: { missingSeq: number; openedBySeq: number } | null = null;
  private failure: VerifyResult | null = null;

  /** Feeds the next entry; returns the failure once one is found (and on every later call). */
  push(entry: AuditEntry): VerifyResult | null {
    if (this.failure) return this.failure;
    if (this.gap) {
      const gap = this.gap;
      this.failure =
        entry.seq < gap.openedBySeq
          ? { ok: false, seq: entry.seq, problem: 'REORDERED' }
          : { ok: false, seq: gap.missingSeq, problem: 'MISSING' };
      return this.failure;
    }
    if (!HASH_PATTERN.test(entry.hash) || recomputedHash(entry) !== entry.hash) {
      return this.fail(entry.seq, 'EDITED');
    }
    if (entry.seq <= this.prev.seq) return this.fail(entry.seq, 'REORDERED');
    if (entry.seq > this.prev.seq + 1) {
      this.gap = { missingSeq: this.prev.seq + 1, openedBySeq: entry.seq };
      return null;
    }
    if (entry.prevHash !== this.prev.hash) return this.fail(entry.seq, 'BAD_LINK');
    this.prev = { seq: entry.seq, hash: entry.hash };
    this.count += 1;
    return null;
  }

  /** The verdict after the last entry. A row cut off the end is invisible here: compare headHash. */
  finish(): VerifyResult {
    if (this.failure) return this.failure;
    if (this.gap) return this.fail(this.gap.missingSeq, 'MISSING');
    return { ok: true, count: this.count, headHash: this.prev.hash };
  }

  private fail(seq: number, problem: AuditProblem): VerifyResult {
    this.failure = { ok: false, seq, problem };
    return this.failure;
  }
}

export function verifyChain(entries: Iterable<AuditEntry>): VerifyResult {
  const verifier = new ChainVerifier();
  for (const entry of entries) if (verifier.push(entry)) break;
  return verifier.finish();
}

// ---------------------------------------------------------------------------------------------
// Shell

/**
 * `data` is JSONB: PostgreSQL and PGlite reorder its keys and rewrite number spelling (1e21 comes
 * back as 1000000000000000000000), but every JS number comes back as the same double, so hashing the
 * canonical JSON of the parsed value round-trips (tested on both). The strings JSONB cannot hold
 * (U+0000, unpaired surrogates) are refused on append.
 */
const AUDIT_MIGRATIONS: Migration[] = [
  {
    version: 1,
    name: 'audit_log',
    sql: `CREATE TABLE IF NOT EXISTS audit_log (
      seq BIGINT PRIMARY KEY,
      at_s BIGINT NOT NULL,
      actor TEXT NOT NULL,
      action TEXT NOT NULL,
      subject TEXT NOT NULL,
      data JSONB NOT NULL,
      prev_hash TEXT NOT NULL,
      hash TEXT NOT NULL UNIQUE
    );`,
  },
];

/** Own migration namespace, so the service's other tables can number their migrations freely. */
const MIGRATION_SERVICE = 'wallet-fleet.audit';
/**
 * Advisory lock serialising appends across processes ('fedaiaud' as an int8). Above the int4 range,
 * so no `hashtext(...)` key (migrations use those) can collide with it.
 */
const AUDIT_LOCK_KEY = '7378413934059025764';

interface AuditRow {
  seq: number;
  at_s: number;
  actor: string;
  action: string;
  subject: string;
  data: Record<string, unknown>;
  prev_hash: string;
  hash: string;
}

function rowToEntry(row: AuditRow): AuditEntry {
  return {
    seq: row.seq,
    atS: row.at_s,
    actor: row.actor,
    action: row.action,
    subject: row.subject,
    data: row.data,
    prevHash: row.prev_hash,
    hash: row.hash,
  };
}

export interface AuditLogOptions {
  /** Clock for entries appended without an explicit atS. */
  nowS?: () => number;
  /** Rows per query for export and verify, 1..AUDIT_PAGE_ROWS. */
  pageRows?: number;
}

export class AuditLog {
  private constructor(
    private readonly db: Db,
    private readonly nowS: () => number,
    private readonly pageRows: number,
  ) {}

  static async open(db: Db, options: AuditLogOptions = {}): Promise<AuditLog> {
    const pageRows = options.pageRows ?? AUDIT_PAGE_ROWS;
    if (!Number.isSafeInteger(pageRows) || pageRows < 1 || pageRows > AUDIT_PAGE_ROWS) {
      throw new RangeError(`pageRows must be 1..${AUDIT_PAGE_ROWS}`);
    }
    await migrate(db, MIGRATION_SERVICE, AUDIT_MIGRATIONS);
    return new AuditLog(db, options.nowS ?? (() => Math.floor(Date.now() / 1000)), pageRows);
  }

  /**
   * Appends inside the caller's transaction, so the entry commits or rolls back with the change it
   * records. The advisory lock serialises appenders across processes until that transaction ends:
   * append last, and keep the transaction short. Needs READ COMMITTED (the default): the head is read
   * after the lock is held, which a REPEATABLE READ snapshot taken earlier would not see; the
   * primary key then refuses the duplicate seq rather than forking the chain.
   */
  async append(tx: Queryable, input: AuditInput, atS: number = this.nowS()): Promise<AuditEntry> {
    const dataJson = checkAuditInput(input, atS);
    await tx.query(`SELECT pg_advisory_xact_lock(${AUDIT_LOCK_KEY})`);
    const head = await tx.query<{ seq: number; hash: string }>(
      'SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1',
    );
    const entry = nextEntry(head.rows[0] ?? null, input, dataJson, atS);
    await tx.query(
      `INSERT INTO audit_log (seq, at_s, actor, action, subject, data, prev_hash, hash)
       VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8)`,
      [entry.seq, entry.atS, entry.actor, entry.action, entry.subject, dataJson, entry.prevHash, entry.hash],
    );
    return entry;
  }

  /** Appends in a transaction of its own. */
  appendNow(input: AuditInput, atS: number = this.nowS()): Promise<AuditEntry> {
    return this.db.transaction((tx) => this.append(tx, input, atS));
  }

  /** The last entry's seq and hash (null when empty): what callers anchor outside the database. */
  async head(): Promise<{ seq: number; hash: string } | null> {
    const result = await this.db.query<{ seq: number; hash: string }>(
      'SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1',
    );
    return result.rows[0] ?? null;
  }

  /**
   * Every entry in seq order, one page per query (keyset on seq, so each page is an index range).
   * Not a snapshot: entries appended while iterating may be included; rows are never updated.
   */
  async *entries(): AsyncGenerator<AuditEntry> {
    let afterSeq = 0;
    for (;;) {
      const page = await this.db.query<AuditRow>(
        `SELECT seq, at_s, actor, action, subject, data, prev_hash, hash FROM audit_log
         WHERE seq > $1 ORDER BY seq LIMIT $2`,
        [afterSeq, this.pageRows],
      );
      for (const row of page.rows) yield rowToEntry(row);
      const last = page.rows.at(-1);
      if (!last || page.rows.length < this.pageRows) return;
      afterSeq = last.seq;
    }
  }

  /** JSONL export: one canonical-JSON entry per line (no trailing newline), in seq order. */
  async *export(): AsyncGenerator<string> {
    for await (const entry of this.entries()) yield canonicalJson(entry);
  }

  /** Verifies the stored chain page by page; see ChainVerifier for what it can and cannot detect. */
  async verify(): Promise<VerifyResult> {
    const verifier = new ChainVerifier();
    for await (const entry of this.entries()) if (verifier.push(entry)) break;
    return verifier.finish();
  }
}
