// The router's settlement outbox while its PostgreSQL server crashes and restarts (chaos found a
// capture lost this way: the answer went out, the outbox INSERT failed, nobody was charged). A
// capture added while the server is down is kept in memory and written and sent once it is back;
// queries answer DATABASE_UNAVAILABLE (a 503 with a reason), not a bare connection error.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { isDatabaseUnreachable, openDb, startPostgres } from '@fed-ai/kit';
import { FedAiError } from '@fed-ai/protocol';
import { pino } from 'pino';
import { migrateOutbox, type OutboxRow, SettlementOutbox } from '../src/settlement-outbox';

test('a capture added while PostgreSQL is down is written and sent once it is back', async () => {
  const postgres = await startPostgres({ durableCommits: true });
  const db = await openDb({ url: postgres.url, maxConnections: 2 });
  try {
    await migrateOutbox(db);
    const sent: OutboxRow[] = [];
    const outbox = new SettlementOutbox({
      db,
      logger: pino({ level: 'silent' }),
      send: async (row) => {
        sent.push(row);
        return 'done';
      },
    });
    const restarted = postgres.restart(1_500);
    // Down: a query fails with the reason code, and the capture is still taken.
    let down: unknown;
    for (let i = 0; i < 100 && down === undefined; i++) {
      await db.query('SELECT 1').catch((error: unknown) => {
        down = error;
      });
      if (down === undefined) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(down instanceof FedAiError && down.code === 'DATABASE_UNAVAILABLE', String(down));
    assert.equal(down.status, 503);
    await outbox.add('rq-kept', 'capture', { op: 'capture', op_id: 'rq-kept' }, { inFlight: true });
    await outbox.markDue('rq-kept', 'capture').catch(() => {}); // its send failed: due at once
    await assert.rejects(outbox.drain(), (e: unknown) => isDatabaseUnreachable((e as Error).cause));
    assert.equal(sent.length, 0);

    await restarted;
    assert.equal(await outbox.pending(), 1, 'kept in memory, not lost');
    assert.equal(await outbox.drain(), 1);
    assert.deepEqual(
      sent.map((r) => [r.op_id, r.op]),
      [['rq-kept', 'capture']],
    );
    assert.equal(await outbox.pending(), 0);
    await outbox.stop();
  } finally {
    await db.close();
    await postgres.stop();
  }
});

test('isDatabaseUnreachable: connection errors and shutdown states, not statement errors', () => {
  const withCode = (code: string) => Object.assign(new Error('x'), { code });
  for (const code of ['ECONNREFUSED', 'ECONNRESET', '57P01', '57P03', '08006', '08001'])
    assert.equal(isDatabaseUnreachable(withCode(code)), true, code);
  assert.equal(isDatabaseUnreachable(new Error('Connection terminated unexpectedly')), true);
  assert.equal(
    isDatabaseUnreachable(new Error('Client has encountered a connection error and is not queryable')),
    true,
  );
  for (const code of ['23505', '40001', '42P01', '22003'])
    assert.equal(isDatabaseUnreachable(withCode(code)), false, code);
  assert.equal(isDatabaseUnreachable(new Error('syntax error')), false);
  assert.equal(isDatabaseUnreachable(null), false);
});
