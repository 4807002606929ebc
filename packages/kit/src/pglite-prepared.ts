// Named prepared statements for PGlite (issue 15). PGlite's query() makes six round trips into
// PostgreSQL (parse, describe, bind, describe, execute, sync) and parses and plans the statement
// every time; most of a small statement's cost is that. A statement this process runs again and
// again (the ledger's, the books') is parsed once here, under a name, and then runs as one round
// trip of bind, describe, execute and sync; PostgreSQL keeps its plan (a generic one once it is
// no worse than the custom ones). Measured on PGlite here: a ledger lookup, lock or update in a
// transaction costs about half the CPU it did. Only PGlite's public API is used (execProtocolStream,
// its protocol serializer and result parser, its own serializers and parsers), so values and rows
// come out exactly as query() gives them.
import { type PGlite, parse, protocol } from '@electric-sql/pglite';

/** At most this many statements are kept prepared; beyond, data statements run unnamed. */
const MAX_PREPARED_STATEMENTS = 256;

/** Only data statements are prepared; anything else (DDL, SET, EXPLAIN) runs once, unnamed. */
const DATA_STATEMENT = /^\s*(SELECT|INSERT|UPDATE|DELETE|WITH)\b/i;

interface Statement {
  name: string;
  paramTypes: number[];
}

type Rows<Row> = { rows: Row[]; affectedRows?: number };

const SYNC = protocol.serialize.sync();
const DESCRIBE_PORTAL = protocol.serialize.describe({ type: 'P' });
const EXECUTE = protocol.serialize.execute({});

function concat(parts: Uint8Array[]): Uint8Array {
  let length = 0;
  for (const part of parts) length += part.length;
  const out = new Uint8Array(length);
  let offset = 0;
  for (const part of parts) {
    out.set(part, offset);
    offset += part.length;
  }
  return out;
}

export class PreparedStatements {
  /** Parsed statements by their SQL. Looked up, used and retired only under PGlite's query lock. */
  private readonly ready = new Map<string, Statement>();
  /** Retired statements' names, closed by the next run. */
  private stale: string[] = [];
  private counter = 0;

  constructor(
    private readonly lite: PGlite,
    private readonly maxStatements = MAX_PREPARED_STATEMENTS,
  ) {}

  /**
   * Runs `sql` on the open transaction (the caller holds PGlite's transaction lock): a data
   * statement prepared, any other as query() runs it, and then, since it may have changed the
   * schema, every prepared statement is retired before anything else runs (a cached `SELECT *`
   * must not outlive a new column).
   */
  inTransaction<Row>(sql: string, params: unknown[]): Promise<Rows<Row>> {
    return this.run<Row>(sql, params);
  }

  /** As inTransaction, for a statement outside any transaction: takes PGlite's transaction lock. */
  alone<Row>(sql: string, params: unknown[]): Promise<Rows<Row>> {
    // Under the lock: never inside another caller's open (or failed) transaction.
    return this.lite._runExclusiveTransaction(async () => {
      const rows = await this.run<Row>(sql, params);
      await this.lite.syncToFs(); // as query() does outside a transaction
      return rows;
    });
  }

  /**
   * Under PGlite's query lock, so no other statement runs between a lookup and its bind. Past
   * the cap, a data statement runs unnamed, as query() runs it.
   */
  private run<Row>(sql: string, params: unknown[]): Promise<Rows<Row>> {
    return this.lite.runExclusive(async () => {
      if (!DATA_STATEMENT.test(sql)) {
        try {
          return await this.execute<Row>(sql, await this.describe(sql, ''), params);
        } finally {
          for (const statement of this.ready.values()) this.stale.push(statement.name);
          this.ready.clear();
        }
      }
      let statement = this.ready.get(sql);
      if (!statement && this.ready.size < this.maxStatements) {
        this.counter += 1;
        statement = await this.describe(sql, `fedai_${this.counter}`);
        this.ready.set(sql, statement);
      }
      return this.execute<Row>(sql, statement ?? (await this.describe(sql, '')), params);
    });
  }

  /** Parses the statement under `name` ('' is the unnamed one) and reads its parameter types. */
  private async describe(sql: string, name: string): Promise<Statement> {
    // A statement that does not parse is not kept: the next run reports its error again.
    const described = await this.send(sql, [
      protocol.serialize.parse({ name, text: sql }),
      protocol.serialize.describe({ type: 'S', name }),
      SYNC,
    ]);
    return { name, paramTypes: parse.parseDescribeStatementResults(described) };
  }

  private async execute<Row>(sql: string, statement: Statement, params: unknown[]): Promise<Rows<Row>> {
    const close = this.stale.map((name) => protocol.serialize.close({ type: 'S', name }));
    this.stale = [];
    const messages = await this.send(sql, [
      ...close,
      protocol.serialize.bind({ statement: statement.name, values: this.serialize(statement, params) }),
      DESCRIBE_PORTAL,
      EXECUTE,
      SYNC,
    ]);
    const [result] = parse.parseResults(messages, this.lite.parsers);
    return result as unknown as Rows<Row>;
  }

  /** Serialised as query() does: by the parameter's type, else its string form; null stays null. */
  private serialize(statement: Statement, params: unknown[]): (string | null)[] {
    return params.map((value, i) => {
      if (value === null || value === undefined) return null;
      const serializer = this.lite.serializers[statement.paramTypes[i] as number];
      return serializer ? serializer(value) : String(value);
    });
  }

  private async send(sql: string, messages: Uint8Array[]) {
    try {
      return await this.lite.execProtocolStream(concat(messages), { syncToFs: false });
    } catch (error) {
      // The same error query() throws (PostgreSQL's, with its code), naming the statement.
      if (error instanceof Error) Object.assign(error, { query: sql });
      throw error;
    }
  }
}
