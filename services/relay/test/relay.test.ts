import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { relaySocketClass, serviceNodeArgs } from '@fed-ai/kit';
import type { Event, Filter } from 'nostr-tools';
import { finalizeEvent, generateSecretKey, getPublicKey } from 'nostr-tools/pure';
import { Relay, type Subscription, useWebSocketImplementation } from 'nostr-tools/relay';
import WebSocket from 'ws';
import { type RunningRelay, startRelay } from '../src/index';

useWebSocketImplementation(relaySocketClass(1024 * 1024));

const WAIT_MS = 5000;
const secretKey = generateSecretKey();
const pubkey = getPublicKey(secretKey);
const nowSeconds = () => Math.floor(Date.now() / 1000);

function sign(kind: number, content: string, tags: string[][] = [], createdAt = nowSeconds()): Event {
  return finalizeEvent({ kind, content, tags, created_at: createdAt }, secretKey);
}

/**
 * nostr-tools 2.25 keeps a subscription's EOSE timer (4.4 s) running after the relay CLOSEs it, which
 * holds the test process open; marking it EOSE'd clears the timer (callbacks already settled).
 */
function clearEoseTimer(sub: Subscription): void {
  sub.receivedEose();
}

/** Reads the stored events for `filters` on a fresh subscription (up to EOSE). */
function query(relay: Relay, filters: Filter[]): Promise<Event[]> {
  return new Promise((resolve, reject) => {
    const events: Event[] = [];
    const timer = setTimeout(() => reject(new Error('no EOSE')), WAIT_MS);
    const sub = relay.subscribe(filters, {
      onevent: (event) => events.push(event),
      oneose: () => {
        clearTimeout(timer);
        resolve(events);
        sub.close();
      },
      onclose: (reason) => {
        clearTimeout(timer);
        reject(new Error(`closed: ${reason}`));
        clearEoseTimer(sub);
      },
    });
  });
}

/** A live subscription that records what it receives; `ready` resolves at EOSE. */
function live(relay: Relay, filters: Filter[]) {
  const events: Event[] = [];
  const waiters: { predicate: (events: Event[]) => boolean; resolve: () => void }[] = [];
  let closedReason: string | undefined;
  let readyResolve!: () => void;
  let readyReject!: (error: Error) => void;
  const ready = new Promise<void>((resolve, reject) => {
    readyResolve = resolve;
    readyReject = reject;
  });
  const sub = relay.subscribe(filters, {
    onevent: (event) => {
      events.push(event);
      for (const waiter of [...waiters]) {
        if (waiter.predicate(events)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve();
        }
      }
    },
    oneose: () => readyResolve(),
    onclose: (reason) => {
      closedReason = reason;
      readyReject(new Error(`closed: ${reason}`));
      clearEoseTimer(sub);
    },
  });
  return {
    events,
    ready,
    sub,
    closedReason: () => closedReason,
    waitFor(predicate: (events: Event[]) => boolean): Promise<void> {
      if (predicate(events)) return Promise.resolve();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error('event did not arrive')), WAIT_MS);
        waiters.push({
          predicate,
          resolve: () => {
            clearTimeout(timer);
            resolve();
          },
        });
      });
    },
  };
}

let server: RunningRelay;
const clients: Relay[] = [];
async function connect(url = server.url): Promise<Relay> {
  const relay = await Relay.connect(url);
  clients.push(relay);
  return relay;
}

before(async () => {
  server = await startRelay({ port: 0 });
});
after(async () => {
  for (const client of clients) client.close();
  await server.close();
});

test('url is ws://127.0.0.1:PORT on a random port', () => {
  assert.match(server.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
  assert.ok(server.port > 0);
  assert.equal(server.url, `ws://127.0.0.1:${server.port}`);
});

test('a signed event reaches a live subscriber on another connection and is stored', async () => {
  const publisher = await connect();
  const subscriber = await connect();
  const watch = live(subscriber, [{ kinds: [1], authors: [pubkey] }]);
  await watch.ready;

  const event = sign(1, 'hello relay');
  const reason = await publisher.publish(event);
  assert.equal(reason, '');
  await watch.waitFor((events) => events.some((e) => e.id === event.id));
  assert.deepEqual(
    watch.events.map((e) => e.id),
    [event.id],
  );

  // Stored: a fresh connection finds it by id and by author; a re-publish is a duplicate.
  const reader = await connect();
  const byId = await query(reader, [{ ids: [event.id] }]);
  assert.equal(byId.length, 1);
  assert.deepEqual(JSON.parse(JSON.stringify(byId[0])), JSON.parse(JSON.stringify(event)));
  const byAuthor = await query(reader, [{ authors: [pubkey], kinds: [1] }]);
  assert.ok(byAuthor.some((e) => e.id === event.id));
  assert.match(await publisher.publish(event), /^duplicate:/);
  watch.sub.close();
});

test('an event with a bad signature or a bad id is refused with OK false and not stored', async () => {
  const publisher = await connect();
  const good = sign(1, 'to be tampered');
  // A fresh object: nostr-tools caches its verdict on the signed one.
  const badSig = { ...good, sig: good.sig.replace(/^./, good.sig[0] === '0' ? '1' : '0') };
  await assert.rejects(publisher.publish(badSig), /invalid: signature is wrong/);
  const badId = { ...good, content: 'changed after signing' };
  await assert.rejects(publisher.publish(badId), /invalid: id is wrong/);
  assert.deepEqual(await query(publisher, [{ ids: [good.id] }]), []);
  // The correctly signed event with that id is still accepted afterwards.
  assert.equal(await publisher.publish(good), '');
  assert.equal((await query(publisher, [{ ids: [good.id] }])).length, 1);
});

test('an ephemeral event reaches a live subscriber but is not stored', async () => {
  const publisher = await connect();
  const subscriber = await connect();
  const watch = live(subscriber, [{ kinds: [28100] }]);
  await watch.ready;
  const storedBefore = server.storedEventCount();

  const event = sign(28100, 'rfb');
  await publisher.publish(event);
  await watch.waitFor((events) => events.some((e) => e.id === event.id));

  assert.deepEqual(await query(publisher, [{ ids: [event.id] }]), []);
  assert.deepEqual(await query(publisher, [{ kinds: [28100] }]), []);
  assert.equal(server.storedEventCount(), storedBefore);
  watch.sub.close();
});

test('an addressable event replaced by a newer one returns only the newest; older versions are not stored', async () => {
  const publisher = await connect();
  const subscriber = await connect();
  const base = nowSeconds() - 100;
  // A live subscription on another `d` must not receive model-a versions (tag filters apply live).
  const otherD = live(subscriber, [{ kinds: [38101], '#d': ['model-b'] }]);
  await otherD.ready;

  const v1 = sign(38101, 'price v1', [['d', 'model-a']], base);
  const v2 = sign(38101, 'price v2', [['d', 'model-a']], base + 10);
  const stale = sign(38101, 'price stale', [['d', 'model-a']], base + 5);
  const otherModel = sign(38101, 'price b', [['d', 'model-b']], base);
  await publisher.publish(v1);
  await publisher.publish(v2);
  assert.match(await publisher.publish(stale), /^duplicate:/);
  await publisher.publish(otherModel);

  const modelA = await query(publisher, [{ kinds: [38101], authors: [pubkey], '#d': ['model-a'] }]);
  assert.deepEqual(
    modelA.map((e) => e.content),
    ['price v2'],
  );
  const all = await query(publisher, [{ kinds: [38101], authors: [pubkey] }]);
  assert.deepEqual(all.map((e) => e.content).sort(), ['price b', 'price v2']);

  // The model-b subscriber got model-b only, although model-a versions were published before it.
  await otherD.waitFor((events) => events.some((e) => e.id === otherModel.id));
  assert.deepEqual(
    otherD.events.map((e) => e.id),
    [otherModel.id],
  );
  otherD.sub.close();
});

test('REQ honours limit, newest first', async () => {
  const publisher = await connect();
  const author = generateSecretKey();
  const base = nowSeconds() - 1000;
  for (let i = 0; i < 5; i += 1) {
    await publisher.publish(
      finalizeEvent({ kind: 1, content: `n${i}`, tags: [], created_at: base + i }, author),
    );
  }
  const newest = await query(publisher, [{ authors: [getPublicKey(author)], limit: 2 }]);
  assert.deepEqual(
    newest.map((e) => e.content),
    ['n4', 'n3'],
  );
});

test('subscription limit per connection: the extra REQ gets CLOSED, the open ones keep working', async () => {
  const limited = await startRelay({ port: 0, maxSubscriptionsPerClient: 2 });
  try {
    const client = await connect(limited.url);
    const publisher = await connect(limited.url);
    const first = live(client, [{ kinds: [1] }]);
    const second = live(client, [{ kinds: [1] }]);
    await Promise.all([first.ready, second.ready]);
    const third = live(client, [{ kinds: [1] }]);
    await assert.rejects(third.ready, /closed: rate-limited: too many open subscriptions \(max 2\)/);

    const event = sign(1, 'after the limit');
    await publisher.publish(event);
    await first.waitFor((events) => events.some((e) => e.id === event.id));
    await second.waitFor((events) => events.some((e) => e.id === event.id));

    // Closing one frees a slot.
    first.sub.close();
    const fourth = live(client, [{ kinds: [1] }]);
    await fourth.ready;
    assert.equal(fourth.closedReason(), undefined);
  } finally {
    await limited.close();
  }
});

test('too many filters in one REQ gets CLOSED', async () => {
  const limited = await startRelay({ port: 0, maxFiltersPerSubscription: 2 });
  try {
    const client = await connect(limited.url);
    await assert.rejects(
      query(client, [{ kinds: [1] }, { kinds: [2] }, { kinds: [3] }]),
      /closed: invalid: too many filters/,
    );
    assert.deepEqual(await query(client, [{ kinds: [1] }, { kinds: [2] }]), []);
  } finally {
    await limited.close();
  }
});

test('an event over maxEventBytes is refused with OK false; a frame over maxMessageBytes closes the socket', async () => {
  const limited = await startRelay({ port: 0, maxEventBytes: 2048, maxMessageBytes: 8192 });
  try {
    const client = await connect(limited.url);
    const big = sign(1, 'x'.repeat(4000));
    await assert.rejects(
      client.publish(big),
      /invalid: event message is \d+ bytes, over the 2048-byte limit/,
    );
    assert.deepEqual(await query(client, [{ ids: [big.id] }]), []);
    assert.equal(await client.publish(sign(1, 'small')), '');

    const raw = new WebSocket(limited.url);
    await new Promise((resolve, reject) => {
      raw.once('open', resolve);
      raw.once('error', reject);
    });
    const closeCode = new Promise<number>((resolve) => raw.once('close', (code) => resolve(code)));
    raw.send(JSON.stringify(['EVENT', sign(1, 'y'.repeat(10_000))]));
    assert.equal(await closeCode, 1009);
  } finally {
    await limited.close();
  }
});

test('connections over maxConnections are refused with 503', async () => {
  const limited = await startRelay({ port: 0, maxConnections: 1 });
  try {
    const first = await connect(limited.url);
    assert.ok(first.connected);
    const refused = new WebSocket(limited.url);
    const status = await new Promise<number | undefined>((resolve) => {
      refused.once('unexpected-response', (_req, res) => {
        resolve(res.statusCode);
        refused.terminate();
      });
      refused.once('open', () => resolve(undefined));
      refused.once('error', () => resolve(undefined));
    });
    assert.equal(status, 503);
  } finally {
    await limited.close();
  }
});

test('malformed messages get a NOTICE, not a crash', async () => {
  const raw = new WebSocket(server.url);
  await new Promise((resolve, reject) => {
    raw.once('open', resolve);
    raw.once('error', reject);
  });
  const replies: unknown[] = [];
  const got = new Promise<void>((resolve) => {
    raw.on('message', (data) => {
      replies.push(JSON.parse(data.toString()));
      if (replies.length === 3) resolve();
    });
  });
  raw.send('not json');
  raw.send(JSON.stringify(['NOPE']));
  raw.send(JSON.stringify(['REQ', 'sub-x', { kinds: ['one'] }]));
  await got;
  assert.equal((replies[0] as unknown[])[0], 'NOTICE');
  assert.match(String((replies[0] as unknown[])[1]), /^invalid: message is not JSON/);
  assert.equal((replies[1] as unknown[])[0], 'NOTICE');
  assert.deepEqual((replies[2] as unknown[]).slice(0, 2), ['CLOSED', 'sub-x']);
  raw.close();
  // The relay still serves.
  const client = await connect();
  assert.ok(Array.isArray(await query(client, [{ kinds: [1], limit: 1 }])));
});

test('NIP-11 document with CORS headers, /health, and a plain GET', async () => {
  const http = server.url.replace(/^ws/, 'http');
  const info = await fetch(`${http}/`, { headers: { accept: 'application/nostr+json' } });
  assert.equal(info.status, 200);
  assert.equal(info.headers.get('content-type'), 'application/nostr+json');
  assert.equal(info.headers.get('access-control-allow-origin'), '*');
  assert.ok(info.headers.get('access-control-allow-headers'));
  assert.ok(info.headers.get('access-control-allow-methods'));
  const doc = (await info.json()) as {
    name: string;
    supported_nips: number[];
    limitation: { max_subscriptions: number; max_message_length: number; max_limit: number };
  };
  assert.equal(typeof doc.name, 'string');
  assert.ok(doc.supported_nips.includes(1) && doc.supported_nips.includes(11));
  assert.equal(doc.limitation.max_subscriptions, 20);
  assert.equal(doc.limitation.max_message_length, 256 * 1024);
  assert.deepEqual(doc, server.info);

  const health = await fetch(`${http}/health`);
  assert.equal(health.status, 200);
  assert.deepEqual(await health.json(), { ok: true });

  const plain = await fetch(`${http}/`);
  assert.equal(plain.status, 200);
  assert.match(plain.headers.get('content-type') ?? '', /^text\/plain/);
  assert.equal((await fetch(`${http}/nope`)).status, 404);
});

test('main.ts: starts from env, logs one JSON line with the URL, exits 0 on SIGTERM', async () => {
  const mainPath = fileURLToPath(new URL('../src/main.ts', import.meta.url));
  const child = spawn(process.execPath, serviceNodeArgs(mainPath, ['--import', 'tsx']), {
    env: { ...process.env, RELAY_PORT: '0', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let buffered = '';
      const timer = setTimeout(() => reject(new Error(`no listening line; got ${buffered}`)), 20_000);
      child.stdout.on('data', (chunk: Buffer) => {
        buffered += chunk.toString();
        const first = buffered.split('\n').find((l) => l.includes('relay listening'));
        if (first) {
          clearTimeout(timer);
          resolve(first);
        }
      });
    });
    const logged = JSON.parse(line) as { url: string; port: number };
    assert.match(logged.url, /^ws:\/\/127\.0\.0\.1:\d+$/);
    const health = await fetch(`${logged.url.replace(/^ws/, 'http')}/health`);
    assert.deepEqual(await health.json(), { ok: true });
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    child.kill('SIGTERM');
    assert.equal(await exited, 0);
  } finally {
    if (child.exitCode === null) child.kill('SIGKILL');
  }
});

test('main.ts: a bad RELAY_PORT stops with one line naming the variable and exit code 2', async () => {
  const mainPath = fileURLToPath(new URL('../src/main.ts', import.meta.url));
  const child = spawn(process.execPath, serviceNodeArgs(mainPath, ['--import', 'tsx']), {
    env: { ...process.env, RELAY_PORT: 'seventy' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => {
    stderr += chunk.toString();
  });
  const code = await new Promise<number | null>((resolve) => child.once('exit', (c) => resolve(c)));
  assert.equal(code, 2);
  assert.match(stderr, /RELAY_PORT is invalid/);
});
