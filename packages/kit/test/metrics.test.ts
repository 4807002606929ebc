// The services' default metrics: the event-loop-delay histogram samples every 50 ms instead of
// prom-client's 10 (fewer idle wake-ups), and must still report a loop blocked for longer.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createMetricsRegistry } from '../src/metrics';

const gauge = (text: string, name: string): number => {
  const line = text.split('\n').find((l) => l.startsWith(`${name}{`));
  assert.ok(line, `${name} is exported`);
  return Number(line.split(' ').at(-1));
};

test('a loop blocked for 120 ms shows in the event-loop lag maximum', async () => {
  const registry = createMetricsRegistry('kit_test');
  await registry.metrics(); // resets the histogram: what follows is this test's alone
  await sleep(120);
  const until = performance.now() + 120;
  while (performance.now() < until) {
    // blocked: the sampling timer comes due inside and fires late
  }
  await sleep(60);
  const text = await registry.metrics();
  const maxS = gauge(text, 'nodejs_eventloop_lag_max_seconds');
  assert.ok(maxS >= 0.07, `lag max ${maxS} s after a 120 ms block`);
  assert.ok(gauge(text, 'nodejs_eventloop_lag_p99_seconds') > 0);
  assert.match(text, /service="kit_test"/);
});
