import assert from 'node:assert/strict';
import { test } from 'node:test';
import { DEFAULT_HEALTH_CONFIG, isHeartbeatFresh, NodeHealth } from '../src/health';

const config = { ...DEFAULT_HEALTH_CONFIG, allowedFailures: 3, cooldownMs: 1000, maxCooldownMs: 8000 };

test('breaker: opens after N consecutive failures, half-opens after the cooldown with ONE trial', () => {
  const h = new NodeHealth(config);
  h.recordFailure(0);
  h.recordFailure(0);
  assert.equal(h.available(0), true, 'still closed after 2');
  h.recordFailure(0);
  assert.equal(h.snapshot().state, 'open');
  assert.equal(h.available(999), false);
  assert.equal(h.available(1000), true, 'the trial');
  assert.equal(h.snapshot().state, 'half_open');
  assert.equal(h.available(1001), false, 'only one trial at a time');
  h.recordSuccess(1100, { ttftMs: 50 });
  assert.equal(h.snapshot().state, 'closed');
  assert.equal(h.available(1101), true);
});

test('breaker: a failed trial re-opens with a doubled cooldown, up to the maximum; success resets it', () => {
  const h = new NodeHealth(config);
  for (let i = 0; i < 3; i++) h.recordFailure(0); // open until 1000, next cooldown 2000
  let now = 1000;
  const cooldowns: number[] = [];
  for (let round = 0; round < 5; round++) {
    assert.equal(h.available(now), true);
    h.recordFailure(now);
    const until = h.snapshot().openUntilMs!;
    cooldowns.push(until - now);
    now = until;
  }
  assert.deepEqual(cooldowns, [2000, 4000, 8000, 8000, 8000]);
  assert.equal(h.available(now), true);
  h.recordSuccess(now, {});
  for (let i = 0; i < 3; i++) h.recordFailure(now);
  assert.equal(h.snapshot().openUntilMs! - now, 1000, 'backoff reset after a success');
});

test('breaker: Retry-After keeps the node out at least that long; failure rate trips it too', () => {
  const h = new NodeHealth(config);
  h.recordFailure(0, { retryAfterS: 30 });
  assert.equal(h.available(29_999), false);
  assert.equal(h.available(30_000), true);
  const r = new NodeHealth({
    ...config,
    allowedFailures: 100,
    minRequestsForRate: 10,
    failureRateThreshold: 0.5,
  });
  for (let i = 0; i < 10; i++) {
    r.recordSuccess(i, {});
    r.recordFailure(i);
  }
  assert.equal(r.snapshot().state, 'open');
  assert.equal(r.snapshot().successRate, 0.5);
});

test('moving averages and heartbeat freshness', () => {
  const h = new NodeHealth({ ...config, ewmaAlpha: 0.5 });
  h.recordSuccess(0, { ttftMs: 100, tokensPerS: 10 });
  h.recordSuccess(0, { ttftMs: 200, tokensPerS: 30 });
  assert.equal(h.snapshot().ttftMs, 150);
  assert.equal(h.snapshot().tokensPerS, 20);
  assert.equal(isHeartbeatFresh(1000, 31_000, 30_000), true);
  assert.equal(isHeartbeatFresh(1000, 31_001, 30_000), false);
});
