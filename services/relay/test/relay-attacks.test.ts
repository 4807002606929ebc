// Attack run (issue #9) against the relay: kinds outside 0..65535 and far-future created_at are
// refused with OK false `invalid:`; one client cannot take every connection slot.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { finalizeEvent, generateSecretKey } from 'nostr-tools/pure';
import WebSocket from 'ws';
import { eventProblem, startRelay } from '../src/relay';

const WAIT_MS = 5000;
const secretKey = generateSecretKey();
const nowS = () => Math.floor(Date.now() / 1000);

function open(url: string, localAddress?: string): Promise<WebSocket> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, localAddress ? { localAddress } : {});
    ws.once('open', () => resolve(ws));
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`status ${res.statusCode}`)));
  });
}

function nextMessage(ws: WebSocket): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('no answer')), WAIT_MS);
    ws.once('message', (data) => {
      clearTimeout(timer);
      resolve(JSON.parse(data.toString()) as unknown[]);
    });
  });
}

test('kind 70000 and created_at far in the future are refused with OK false invalid:, and not stored', async () => {
  const relay = await startRelay({ port: 0 });
  const ws = await open(relay.url);
  try {
    const cases = [
      { kind: 70000, created_at: nowS() },
      { kind: 1, created_at: 9_999_999_999 },
      { kind: 1, created_at: nowS() + 3600 },
    ];
    for (const c of cases) {
      const event = finalizeEvent({ ...c, tags: [], content: 'x' }, secretKey);
      const answer = nextMessage(ws);
      ws.send(JSON.stringify(['EVENT', event]));
      const [type, id, accepted, reason] = await answer;
      assert.equal(type, 'OK');
      assert.equal(id, event.id);
      assert.equal(accepted, false, JSON.stringify(c));
      assert.match(String(reason), /^invalid: /);
    }
    assert.equal(relay.storedEventCount(), 0);
    // In range and a little ahead (clock skew) is fine.
    const fine = finalizeEvent({ kind: 1, created_at: nowS() + 60, tags: [], content: 'ok' }, secretKey);
    const answer = nextMessage(ws);
    ws.send(JSON.stringify(['EVENT', fine]));
    assert.equal((await answer)[2], true);
    assert.equal(relay.storedEventCount(), 1);
  } finally {
    ws.close();
    await relay.close();
  }
});

test('eventProblem bounds', () => {
  assert.equal(eventProblem({ kind: 65535, created_at: 100 }, 100, 900), undefined);
  assert.match(String(eventProblem({ kind: 65536, created_at: 100 }, 100, 900)), /kind/);
  assert.match(String(eventProblem({ kind: -1, created_at: 100 }, 100, 900)), /kind/);
  assert.equal(eventProblem({ kind: 1, created_at: 1000 }, 100, 900), undefined);
  assert.match(String(eventProblem({ kind: 1, created_at: 1001 }, 100, 900)), /future/);
});

test('one client cannot take every connection slot: over its cap it gets 429, another client still connects', async () => {
  const relay = await startRelay({ port: 0, maxConnections: 10, maxConnectionsPerClient: 2 });
  const sockets: WebSocket[] = [];
  try {
    sockets.push(await open(relay.url), await open(relay.url));
    await assert.rejects(open(relay.url), /status 429/);
    sockets.push(await open(relay.url, '127.0.0.2'));
    // A freed slot is usable again.
    const first = sockets.shift()!;
    await new Promise<void>((resolve) => {
      first.once('close', () => resolve());
      first.close();
    });
    let again: WebSocket | undefined;
    for (let i = 0; i < 1000 && !again; i++) {
      again = await open(relay.url).catch(() => undefined);
      if (!again) await new Promise((r) => setTimeout(r, 20));
    }
    assert.ok(again, 'a freed slot is usable again');
    sockets.push(again);
  } finally {
    for (const ws of sockets) ws.terminate();
    await relay.close();
  }
});
