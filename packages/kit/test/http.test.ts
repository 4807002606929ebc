import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FedAiError } from '@fed-ai/protocol';
import { z } from 'zod';
import {
  ConfigError,
  createServer,
  DbReplayStore,
  migrate,
  openDb,
  parseConfig,
  REPLAY_MIGRATIONS,
} from '../src/index';

test('server: reason-coded errors, body limit, request id echo, 404', async () => {
  const app = createServer({ name: 'test', bodyLimitBytes: 64 });
  app.post('/echo', async (request) => z.object({ n: z.number().int() }).parse(request.body));
  app.get('/busy', async () => {
    throw new FedAiError('OVERLOADED', undefined, { retry_after_s: 3 });
  });
  app.get('/boom', async () => {
    throw new Error('secret internals');
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const ok = await fetch(`${url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-request-id': 'req-12345678' },
      body: JSON.stringify({ n: 1 }),
    });
    assert.equal(ok.status, 200);
    assert.equal(ok.headers.get('x-request-id'), 'req-12345678');

    const invalid = await fetch(`${url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ n: 'x' }),
    });
    assert.equal(invalid.status, 400);
    const invalidBody = (await invalid.json()) as { error: { code: string; message: string; hint: string } };
    assert.equal(invalidBody.error.code, 'INVALID_REQUEST');
    assert.match(invalidBody.error.message, /n:/);
    assert.ok(invalidBody.error.hint.length > 0);

    const big = await fetch(`${url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ n: 1, pad: 'x'.repeat(200) }),
    });
    assert.equal(big.status, 413);
    assert.equal(((await big.json()) as { error: { code: string } }).error.code, 'BODY_TOO_LARGE');

    const notJson = await fetch(`${url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{',
    });
    assert.equal(notJson.status, 400);
    assert.equal(((await notJson.json()) as { error: { code: string } }).error.code, 'INVALID_REQUEST');

    const busy = await fetch(`${url}/busy`);
    assert.equal(busy.status, 429);
    assert.equal(busy.headers.get('retry-after'), '3');

    const boom = await fetch(`${url}/boom`);
    assert.equal(boom.status, 500);
    const boomBody = (await boom.json()) as { error: { code: string; message: string } };
    assert.equal(boomBody.error.code, 'INTERNAL');
    assert.doesNotMatch(boomBody.error.message, /secret/);

    const missing = await fetch(`${url}/nope`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
  } finally {
    await app.close();
  }
});

test('config: a bad value names the variable in one line', () => {
  const schema = z.object({
    PORT: z.coerce.number().int().min(1).max(65535).default(7000),
    NAME: z.string().min(1).default('x'),
  });
  assert.deepEqual(parseConfig(schema, {}), { PORT: 7000, NAME: 'x' });
  assert.deepEqual(parseConfig(schema, { PORT: '8080' }), { PORT: 8080, NAME: 'x' });
  assert.throws(
    () => parseConfig(schema, { PORT: 'eighty' }),
    (e: unknown) =>
      e instanceof ConfigError &&
      e.variable === 'PORT' &&
      /PORT/.test(e.message) &&
      !e.message.includes('\n'),
  );
});

test('db replay store: one winner under concurrency, expiry frees the id', async () => {
  const db = await openDb({});
  try {
    await migrate(db, 'replay-test', REPLAY_MIGRATIONS);
    let now = 1000;
    const store = new DbReplayStore(db, 30, () => now);
    const results = await Promise.all(Array.from({ length: 10 }, () => store.checkAndRecord('abc', 1100)));
    assert.equal(results.filter(Boolean).length, 1);
    assert.equal(await store.checkAndRecord('abc', 1100), false);
    now = 1200;
    assert.equal(await store.checkAndRecord('abc', 1300), true, 'an expired id may be recorded again');
  } finally {
    await db.close();
  }
});
