import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Event } from '@nostr-relay/common';
import { MemoryEventRepository, matchesFilter } from '../src/index';

// The store trusts the core to have verified signatures, so these events carry placeholder ones.
let serial = 0;
function event(partial: Partial<Event> & { kind: number }): Event {
  serial += 1;
  return {
    id: serial.toString(16).padStart(64, '0'),
    pubkey: 'a'.repeat(64),
    created_at: 1_000 + serial,
    tags: [],
    content: '',
    sig: '0'.repeat(128),
    ...partial,
  };
}

test('holds at most maxEvents, dropping the oldest stored first', () => {
  const repo = new MemoryEventRepository({ maxEvents: 3 });
  const events = Array.from({ length: 5 }, () => event({ kind: 1 }));
  for (const e of events) assert.deepEqual(repo.upsert(e), { isDuplicate: false });
  assert.equal(repo.size, 3);
  assert.deepEqual(
    repo
      .find({ ids: events.map((e) => e.id) })
      .map((e) => e.id)
      .sort(),
    events
      .slice(2)
      .map((e) => e.id)
      .sort(),
  );
  assert.deepEqual(repo.upsert(events[4] as Event), { isDuplicate: true });
});

test('ephemeral events are never stored', () => {
  const repo = new MemoryEventRepository();
  repo.upsert(event({ kind: 20001 }));
  assert.equal(repo.size, 0);
});

test('replaceable: newest wins; on equal created_at the lowest id wins', () => {
  const repo = new MemoryEventRepository();
  const a = event({ kind: 0, created_at: 50, id: 'b'.repeat(64) });
  const b = event({ kind: 0, created_at: 50, id: 'a'.repeat(64) });
  const older = event({ kind: 0, created_at: 49 });
  assert.deepEqual(repo.upsert(a), { isDuplicate: false });
  assert.deepEqual(repo.upsert(b), { isDuplicate: false });
  assert.deepEqual(repo.upsert(older), { isDuplicate: true });
  assert.deepEqual(
    repo.find({ kinds: [0] }).map((e) => e.id),
    [b.id],
  );
  assert.equal(repo.size, 1);
});

test('addressable: one per (kind, pubkey, d); other d values and authors are separate', () => {
  const repo = new MemoryEventRepository();
  repo.upsert(event({ kind: 30000, tags: [['d', 'x']], content: 'x1' }));
  repo.upsert(event({ kind: 30000, tags: [['d', 'x']], content: 'x2' }));
  repo.upsert(event({ kind: 30000, tags: [['d', 'y']], content: 'y1' }));
  repo.upsert(event({ kind: 30000, tags: [['d', 'x']], content: 'other author', pubkey: 'b'.repeat(64) }));
  assert.deepEqual(
    repo
      .find({ kinds: [30000] })
      .map((e) => e.content)
      .sort(),
    ['other author', 'x2', 'y1'],
  );
});

test('find: limit clamps to maxLimit, default limit applies, newest first, limit 0 returns nothing', () => {
  const repo = new MemoryEventRepository({ defaultLimit: 2, maxLimit: 3 });
  for (let i = 0; i < 6; i += 1) repo.upsert(event({ kind: 1, created_at: 100 + i, content: `n${i}` }));
  assert.deepEqual(
    repo.find({ kinds: [1] }).map((e) => e.content),
    ['n5', 'n4'],
  );
  assert.equal(repo.find({ kinds: [1], limit: 100 }).length, 3);
  assert.deepEqual(repo.find({ kinds: [1], limit: 0 }), []);
  assert.deepEqual(
    repo.find({ since: 101, until: 102, limit: 10 }).map((e) => e.content),
    ['n2', 'n1'],
  );
});

test('NIP-40: expired events are not returned', () => {
  let now = 1_000;
  const repo = new MemoryEventRepository({ nowSeconds: () => now });
  const e = event({ kind: 1, tags: [['expiration', '1005']] });
  repo.upsert(e);
  assert.equal(repo.find({ ids: [e.id] }).length, 1);
  now = 1_005;
  assert.equal(repo.find({ ids: [e.id] }).length, 0);
});

test('NIP-09: an author deletes their own events by id and by coordinate, not others', async () => {
  const repo = new MemoryEventRepository();
  const mine = event({ kind: 1 });
  const theirs = event({ kind: 1, pubkey: 'b'.repeat(64) });
  const addressable = event({ kind: 30000, tags: [['d', 'x']], created_at: 10 });
  repo.upsert(mine);
  repo.upsert(theirs);
  repo.upsert(addressable);
  const deletion = event({
    kind: 5,
    created_at: 20,
    tags: [
      ['e', mine.id],
      ['e', theirs.id],
      ['a', `30000:${'a'.repeat(64)}:x`],
    ],
  });
  await repo.deleteByDeletionRequest(deletion);
  assert.deepEqual(repo.find({ ids: [mine.id] }), []);
  assert.equal(repo.find({ ids: [theirs.id] }).length, 1);
  assert.deepEqual(repo.find({ kinds: [30000] }), []);
  assert.equal(repo.find({ kinds: [5] }).length, 1);
  // A deleted id cannot be published again.
  assert.deepEqual(repo.upsert(mine), { isDuplicate: true });
});

test('filter matching: tag filters (#x any, &x all), authors, kinds', () => {
  const e = event({
    kind: 7,
    tags: [
      ['t', 'a'],
      ['t', 'b'],
      ['p', 'c'.repeat(64)],
    ],
  });
  assert.equal(matchesFilter(e, { '#t': ['z', 'b'] }), true);
  assert.equal(matchesFilter(e, { '#t': ['z'] }), false);
  assert.equal(matchesFilter(e, { '&t': ['a', 'b'] }), true);
  assert.equal(matchesFilter(e, { '&t': ['a', 'z'] }), false);
  assert.equal(matchesFilter(e, { kinds: [7], authors: [e.pubkey], '#p': ['c'.repeat(64)] }), true);
  assert.equal(matchesFilter(e, { kinds: [8] }), false);
  assert.equal(matchesFilter(e, { authors: ['d'.repeat(64)] }), false);
});
