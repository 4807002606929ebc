import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Admission } from '../src/admission';

test('admission: slots, FIFO queue, refusal when full, timeout, cancel, idempotent release', async () => {
  const admission = new Admission({ maxConcurrent: 2, queueMax: 2, queueTimeoutMs: 200 });
  const a = await admission.acquire();
  const b = await admission.acquire();
  assert.ok(a.ok && b.ok);
  assert.equal(admission.freeSlots, 0);
  const order: string[] = [];
  const c = admission.acquire().then((r) => {
    order.push('c');
    return r;
  });
  const d = admission.acquire().then((r) => {
    order.push('d');
    return r;
  });
  assert.equal(admission.queued, 2);
  assert.deepEqual(await admission.acquire(), { ok: false, reason: 'QUEUE_FULL' });
  if (a.ok) {
    a.release();
    a.release(); // a second release must not free a second slot
  }
  const cr = await c;
  assert.ok(cr.ok);
  assert.equal(admission.inFlight, 2);
  if (b.ok) b.release();
  const dr = await d;
  assert.ok(dr.ok);
  assert.deepEqual(order, ['c', 'd']);

  const late = admission.acquire();
  assert.deepEqual(await late, { ok: false, reason: 'QUEUE_TIMEOUT' });
  const abort = new AbortController();
  const cancelled = admission.acquire(abort.signal);
  abort.abort();
  assert.deepEqual(await cancelled, { ok: false, reason: 'CANCELLED' });
  assert.equal(admission.queued, 0);
  if (cr.ok) cr.release();
  if (dr.ok) dr.release();
  assert.equal(admission.inFlight, 0);
  assert.ok(admission.retryAfterS() >= 1);
});
