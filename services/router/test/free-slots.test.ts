// Free slots as the router estimates them between heartbeats: the heartbeat's running count held
// this router's requests of that moment, so they are not counted a second time.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { estimateFreeSlots } from '../src/registry';

const capacity = { max_concurrency: 4, queue_max: 2 };

test('one router alone: free slots are capacity plus queue minus its own requests, whenever the heartbeat came', () => {
  // The node reported 1 free of 4 while this router had 3 running; one more started since.
  assert.equal(estimateFreeSlots(capacity, 1, 4, 3), 2);
  assert.equal(estimateFreeSlots(capacity, 4, 0, 0), 6);
  assert.equal(estimateFreeSlots(capacity, undefined, 5, 0), 1, 'no heartbeat yet: own count only');
});

test("other routers' requests in the heartbeat still count; never negative", () => {
  // 4 running at the node, 1 of them ours: 3 are other routers'.
  assert.equal(estimateFreeSlots(capacity, 0, 1, 1), 2);
  assert.equal(estimateFreeSlots(capacity, 0, 9, 1), 0);
});

test('property: with no other router, the estimate is exactly the room left by this router', () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 64 }),
      fc.integer({ min: 0, max: 64 }),
      fc.integer({ min: 0, max: 64 }),
      fc.integer({ min: -64, max: 64 }),
      (max, queue, runningAtHeartbeat, since) => {
        const mine = Math.min(max, runningAtHeartbeat);
        const now = Math.max(0, mine + since);
        const free = estimateFreeSlots({ max_concurrency: max, queue_max: queue }, max - mine, now, mine);
        assert.equal(free, Math.max(0, max + queue - now));
      },
    ),
  );
});
