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

/** At most this many statements are kept prepared; beyond, statements run through query(). */
export const MAX_PREPARED_STATEMENTS = 256;

/** Only data statements are prepared; anything else (DDL, SET, EXPLAIN) runs through query(). */
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
  private readonly statements = new Map<string, Promise<Statement>>();
  /** Names whose statements may no longer match the schema: closed with the next execution. */
  private stale: string[] = [];
  private counter = 0;

  constructor(private readonly lite: PGlite) {}

  /**
   * Runs `sql` on the open transaction (the caller holds PGlite's transaction lock), prepared when
   * it is a data statement. Any other statement runs as query() would and, since it may change
   * the schema, retires every prepared statement: a cached `SELECT *` must not outlive a new column.
   */
  async inTransaction<Row>(
    sql: string,
    params: unknown[],
    plain: () => Promise<Rows<Row>>,
  ): Promise<Rows<Row>> {
    if (!DATA_STATEMENT.test(sql)) {
      this.retireAll();
      return plain();
    }
    const statement = await this.statementFor(sql);
    if (!statement) return plain();
    return this.execute<Row>(sql, statement, params);
  }

  /** As inTransaction, for a statement outside any transaction: takes PGlite's transaction lock. */
  async alone<Row>(sql: string, params: unknown[], plain: () => Promise<Rows<Row>>): Promise<Rows<Row>> {
    if (!DATA_STATEMENT.test(sql)) {
      this.retireAll();
      return plain();
    }
    // Parsed under the lock too: never inside another caller's open (or failed) transaction.
    const result = await this.lite._runExclusiveTransaction(async () => {
      const statement = await this.statementFor(sql);
      if (!statement) return null;
      const rows = await this.execute<Row>(sql, statement, params);
      await this.lite.syncToFs(); // as query() does outside a transaction
      return rows;
    });
    // The cache is full: query() takes the lock itself.
    return result ?? plain();
  }

  private retireAll(): void {
    for (const pending of this.statements.values())
      void pending.then((s) => this.stale.push(s.name)).catch(() => undefined);
    this.statements.clear();
  }

  /** The statement's name and parameter types, parsed once (undefined when the cache is full). */
  private statementFor(sql: string): Promise<Statement> | undefined {
    const known = this.statements.get(sql);
    if (known) return known;
    if (this.statements.size >= MAX_PREPARED_STATEMENTS) return undefined;
    this.counter += 1;
    const name = `fedai_${this.counter}`;
    const parsed = this.lite
      .runExclusive(() =>
        this.lite.execProtocolStream(
          concat([
            ...this.closeStale(),
            protocol.serialize.parse({ name, text: sql }),
            protocol.serialize.describe({ type: 'S', name }),
            SYNC,
          ]),
          { syncToFs: false },
        ),
      )
      .then((messages) => ({ name, paramTypes: parse.parseDescribeStatementResults(messages) }));
    // A statement that does not parse is not kept: the next run reports its error again.
    parsed.catch(() => this.statements.delete(sql));
    this.statements.set(sql, parsed);
    return parsed;
  }

  private closeStale(): Uint8Array[] {
    const names = this.stale;
    this.stale = [];
    return names.map((name) => protocol.serialize.close({ type: 'S', name }));
  }

  private async execute<Row>(sql: string, statement: Statement, params: unknown[]): Promise<Rows<Row>> {
    const lite = this.lite;
    // Serialised as query() does: by the parameter's type, else its string form; null stays null.
    const values = params.map((value, i) => {
      if (value === null || value === undefined) return null;
      const serializer = lite.serializers[statement.paramTypes[i] as number];
      return serializer ? serializer(value) : String(value);
    });
    let messages: Awaited<ReturnType<PGlite['execProtocolStream']>>;
    try {
      messages = await lite.runExclusive(() =>
        lite.execProtocolStream(
          concat([
            ...this.closeStale(),
            protocol.serialize.bind({ statement: statement.name, values }),
            DESCRIBE_PORTAL,
            EXECUTE,
            SYNC,
          ]),
          { syncToFs: false },
        ),
      );
    } catch (error) {
      // The same error query() throws (PostgreSQL's, with its code), naming the statement.
      if (error instanceof Error) Object.assign(error, { query: sql });
      throw error;
    }
    const [result] = parse.parseResults(messages, lite.parsers);
    return result as unknown as Rows<Row>;
  }
}
