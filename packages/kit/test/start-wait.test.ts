// A dependency still starting is not a start failure: untilReachable retries only the
// "unreachable" kind of error, and only until its wait is over.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { untilReachable } from '../src/service';

class Down extends Error {}
const isDown = (error: unknown) => error instanceof Down;

test('untilReachable: retries while unreachable, then returns the answer', async () => {
  let calls = 0;
  const answer = await untilReachable(
    async () => {
      calls += 1;
      if (calls < 3) throw new Down('not yet');
      return 'up';
    },
    isDown,
    10_000,
  );
  assert.equal(answer, 'up');
  assert.equal(calls, 3);
});

test('untilReachable: another error stops at once; no wait throws the first unreachable error', async () => {
  let calls = 0;
  await assert.rejects(
    untilReachable(
      async () => {
        calls += 1;
        throw new Error('refused key');
      },
      isDown,
      10_000,
    ),
    /refused key/,
  );
  assert.equal(calls, 1);
  calls = 0;
  await assert.rejects(
    untilReachable(
      async () => {
        calls += 1;
        throw new Down('down');
      },
      isDown,
      0,
    ),
    Down,
  );
  assert.equal(calls, 1);
});
