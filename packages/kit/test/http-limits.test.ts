// Slow clients, connection floods and framework refusals on the shared HTTP shell.
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { test } from 'node:test';
import { z } from 'zod';
import { clientKey, createServer, toFedAiError } from '../src/index';

const GENEROUS_MS = 15_000;

function hostPort(url: string) {
  const u = new URL(url);
  return { host: u.hostname, port: Number(u.port) };
}

/** Resolves with everything the server sent once it closes the socket (rejects after a generous wait). */
function untilClosed(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    const timer = setTimeout(() => reject(new Error('socket still open')), GENEROUS_MS);
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => {
      text += chunk;
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
  });
}

function get(url: string, path: string, localAddress?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      { ...hostPort(url), path, agent: false, ...(localAddress ? { localAddress } : {}) },
      (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

test('a client that sends half a body is answered 408 REQUEST_TIMEOUT and cut off', async () => {
  const app = createServer({ name: 'test', requestTimeoutMs: 300, headersTimeoutMs: 200 });
  app.post('/echo', async (request) => request.body);
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const socket = connect(hostPort(url));
    const closed = untilClosed(socket);
    socket.write(
      'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":',
    );
    const answer = await closed;
    assert.match(answer, /^HTTP\/1\.1 408/);
    assert.match(answer, /"code":"REQUEST_TIMEOUT"/);
  } finally {
    await app.close();
  }
});

test('a streamed response may run longer than the request timeout', async () => {
  const app = createServer({ name: 'test', requestTimeoutMs: 200, headersTimeoutMs: 100 });
  app.get('/stream', async (_request, reply) => {
    reply.hijack();
    reply.raw.writeHead(200, { 'content-type': 'text/plain' });
    for (let i = 0; i < 6; i++) {
      reply.raw.write(`chunk ${i}\n`);
      await new Promise((r) => setTimeout(r, 200));
    }
    reply.raw.end('done\n');
  });
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const response = await fetch(`${url}/stream`);
    const text = await response.text();
    assert.equal(response.status, 200);
    assert.match(text, /chunk 5\ndone\n$/);
  } finally {
    await app.close();
  }
});

test('connections over the per-client cap are refused; another client and freed slots still work', async () => {
  const app = createServer({ name: 'test', maxConnectionsPerClient: 2 });
  app.get('/ok', async () => ({ ok: true }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  const held: Socket[] = [];
  try {
    for (let i = 0; i < 2; i++) {
      const socket = connect(hostPort(url));
      await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
      // Half a request: the connection is held open on the server.
      socket.write('GET /ok HTTP/1.1\r\nHost: x\r\n');
      held.push(socket);
    }
    // Wait until the server counts both (the connection event follows the client's connect).
    for (let i = 0; i < 1000 && (await countOpen(app)) < 2; i++) await new Promise((r) => setTimeout(r, 20));
    const extra = connect(hostPort(url));
    const extraClosed = untilClosed(extra);
    extra.write('GET /ok HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.equal(await extraClosed, '', 'the third connection is closed without an answer');
    assert.equal(await get(url, '/ok', '127.0.0.2'), 200, 'another client address is served');
    for (const socket of held) socket.destroy();
    let status = 0;
    for (let i = 0; i < 1000 && status !== 200; i++) {
      status = await get(url, '/ok').catch(() => 0);
      if (status !== 200) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(status, 200, 'freed slots are usable again');
  } finally {
    for (const socket of held) socket.destroy();
    await app.close();
  }
});

function countOpen(app: ReturnType<typeof createServer>): Promise<number> {
  return new Promise((resolve) => app.server.getConnections((_e, n) => resolve(n)));
}

test('headers too large: 431 with a reason code', async () => {
  const app = createServer({ name: 'test' });
  app.get('/ok', async () => ({ ok: true }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const socket = connect(hostPort(url));
    const closed = untilClosed(socket);
    socket.write(`GET /ok HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    const answer = await closed;
    assert.match(answer, /^HTTP\/1\.1 431/);
    assert.match(answer, /"code":"HEADERS_TOO_LARGE"/);
    assert.match(answer, /"hint":"/);
  } finally {
    await app.close();
  }
});

test('wrong method on a known path: 405 METHOD_NOT_ALLOWED with Allow; unknown path: 404', async () => {
  const app = createServer({ name: 'test' });
  app.post('/things/:id', async () => ({ ok: true }));
  const url = await app.listen({ host: '127.0.0.1', port: 0 });
  try {
    const wrong = await fetch(`${url}/things/7`);
    assert.equal(wrong.status, 405);
    assert.equal(wrong.headers.get('allow'), 'POST');
    assert.equal(((await wrong.json()) as { error: { code: string } }).error.code, 'METHOD_NOT_ALLOWED');
    const missing = await fetch(`${url}/nothing`);
    assert.equal(missing.status, 404);
    assert.equal(((await missing.json()) as { error: { code: string } }).error.code, 'NOT_FOUND');
  } finally {
    await app.close();
  }
});

test('toFedAiError: short messages, no zod JSON dump, no V8 parser text', () => {
  const zodResult = z
    .object({ messages: z.array(z.object({ role: z.enum(['user', 'system']) })) })
    .safeParse({ messages: [{ role: 'robot' }] });
  assert.equal(zodResult.success, false);
  const fromZod = toFedAiError(zodResult.error);
  assert.equal(fromZod.code, 'INVALID_REQUEST');
  assert.match(fromZod.message, /^Invalid request: messages\.0\.role: /);
  assert.doesNotMatch(fromZod.message, /[[{]|\n|"code"/);
  // Another copy of zod throws another class: still reason-coded, not INTERNAL.
  const foreign = Object.assign(new Error('[{"code":"invalid_type"}]'), {
    name: 'ZodError',
    issues: [{ path: ['n'], message: 'Expected number' }],
  });
  assert.equal(toFedAiError(foreign).message, 'Invalid request: n: Expected number');
  let parseError: unknown;
  try {
    JSON.parse('{"a":');
  } catch (error) {
    parseError = error;
  }
  const fromJson = toFedAiError(parseError);
  assert.equal(fromJson.code, 'INVALID_REQUEST');
  assert.equal(fromJson.message, 'The body is not valid JSON.');
  const internal = toFedAiError(new Error('connect ECONNREFUSED 10.1.2.3:5432'));
  assert.equal(internal.code, 'INTERNAL');
  assert.doesNotMatch(internal.message, /10\.1\.2\.3/);
  const odd = toFedAiError(
    Object.assign(new Error('Unexpected token } in JSON at position 9'), { statusCode: 400 }),
  );
  assert.doesNotMatch(odd.message, /position/);
});

test('clientKey: IPv4 as is, mapped IPv6 as IPv4, IPv6 by /64', () => {
  assert.equal(clientKey('10.0.0.1'), '10.0.0.1');
  assert.equal(clientKey('::ffff:10.0.0.1'), '10.0.0.1');
  assert.equal(clientKey('2001:db8:1:2:aaaa::1'), clientKey('2001:db8:1:2::ffff'));
  assert.notEqual(clientKey('2001:db8:1:2::1'), clientKey('2001:db8:1:3::1'));
  assert.equal(clientKey(undefined), 'unknown');
});
