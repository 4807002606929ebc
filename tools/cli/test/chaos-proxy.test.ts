// The delaying TCP proxy of `fedai chaos`: bytes arrive whole and in order, with and without delay.
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import { type AddressInfo, createConnection, createServer as createNetServer } from 'node:net';
import { test } from 'node:test';
import { startDelayProxy } from '../src/commands/chaos-proxy';

test('HTTP through the proxy: answers arrive whole and in order, delayed or not', async () => {
  const server = createHttpServer((request, response) => {
    let body = '';
    request.on('data', (chunk: Buffer) => {
      body += chunk.toString();
    });
    request.on('end', () => response.end(`echo:${body}`));
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as AddressInfo;
  const proxy = await startDelayProxy(new URL(`http://127.0.0.1:${port}`));
  try {
    const call = async (body: string) => {
      const response = await fetch(proxy.url, { method: 'POST', body });
      return response.text();
    };
    assert.equal(await call('plain'), 'echo:plain');
    proxy.setDelayMs(20);
    const big = 'x'.repeat(200_000);
    const answers = await Promise.all([call('a'), call(big), call('c')]);
    assert.deepEqual(answers, ['echo:a', `echo:${big}`, 'echo:c']);
    proxy.setDelayMs(0);
    assert.equal(await call('after'), 'echo:after');
  } finally {
    await proxy.close();
    server.closeAllConnections();
    await new Promise<void>((done) => server.close(() => done()));
  }
});

test('delayed chunks keep their order however the clock ticks while they are queued', async () => {
  // A raw TCP sink behind the proxy: it must receive exactly the bytes sent, in order.
  let received = Buffer.alloc(0);
  const sink = createNetServer((socket) => {
    socket.on('data', (chunk: Buffer) => {
      received = Buffer.concat([received, chunk]);
    });
  });
  await new Promise<void>((done) => sink.listen(0, '127.0.0.1', done));
  const { port } = sink.address() as AddressInfo;
  const proxy = await startDelayProxy(new URL(`http://127.0.0.1:${port}`));
  proxy.setDelayMs(20);
  // 256 kB in one write reaches the proxy as several chunks in one turn of its loop. The clock
  // moves 1 ms every third reading, as a slow machine's would while those chunks are handled.
  const sent = Buffer.from(Array.from({ length: 256 * 1024 }, (_, i) => (i * 7 + (i >> 12)) % 251));
  const realNow = Date.now;
  const base = realNow();
  let readings = 0;
  Date.now = () => base + Math.floor(readings++ / 3);
  const client = createConnection({ host: '127.0.0.1', port: Number(new URL(proxy.url).port) });
  try {
    await new Promise<void>((done) => client.once('connect', () => done()));
    client.write(sent);
    await new Promise((done) => setTimeout(done, 200));
    Date.now = realNow;
    for (let i = 0; i < 100 && received.length < sent.length; i++)
      await new Promise((done) => setTimeout(done, 20));
    assert.equal(received.length, sent.length);
    assert.ok(received.equals(sent), 'bytes arrived out of order');
  } finally {
    Date.now = realNow;
    client.destroy();
    await proxy.close();
    await new Promise<void>((done) => sink.close(() => done()));
  }
});
