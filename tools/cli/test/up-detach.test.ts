// `fedai up --detach` passes every flag it was given to the background process (the runbook test
// found --model and --no-first-request dropped: a restarted network sent a first request anyway).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { detachedArgs } from '../src/commands/up';

test('the detached up keeps --routers, --model and --no-first-request', () => {
  assert.deepEqual(detachedArgs({ detach: true }), ['up', '--routers', '1']);
  assert.deepEqual(
    detachedArgs({ detach: true, routers: 3, model: 'http://127.0.0.1:11434/v1', firstRequest: false }),
    ['up', '--routers', '3', '--model', 'http://127.0.0.1:11434/v1', '--no-first-request'],
  );
  assert.deepEqual(detachedArgs({ detach: true, firstRequest: true }), ['up', '--routers', '1']);
});
