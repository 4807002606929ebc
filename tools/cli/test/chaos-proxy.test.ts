// The delaying TCP proxy of `fedai chaos`: bytes arrive whole and in order, with and without delay.
import assert from 'node:assert/strict';
import { createServer as createHttpServer } from 'node:http';
import type { AddressInfo } from 'node:net';
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
