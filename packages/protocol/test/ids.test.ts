// Branded ids: checked once by a constructor or guard, then plain strings everywhere else.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  type DispatchId,
  dispatchId,
  dispatchIdSchema,
  type FedAiError,
  generateSecretKey,
  isDispatchId,
  isNodeId,
  isPayerId,
  type NodeId,
  nodeId,
  nodeIdSchema,
  payerId,
  payerIdSchema,
  publicKeyOf,
} from '../src/index';

test('nodeId accepts a public key and refuses anything else with BAD_KEY', () => {
  const key = publicKeyOf(generateSecretKey());
  const id: NodeId = nodeId(key);
  const plain: string = id; // a brand is still a string
  assert.equal(plain, key);
  assert.equal(isNodeId(key), true);
  for (const bad of [key.toUpperCase(), key.slice(1), `${key}0`, 'f'.repeat(64), '', 42, null]) {
    assert.equal(isNodeId(bad), false, String(bad));
  }
  assert.throws(
    () => nodeId('f'.repeat(64)),
    (e: FedAiError) => e.code === 'BAD_KEY',
  );
  assert.equal(nodeIdSchema.safeParse(key).success, true);
  assert.equal(nodeIdSchema.safeParse('x').success, false);
});

test('dispatchId follows the request id rule; payerId is 1-160 printable characters', () => {
  const id: DispatchId = dispatchId('rq-0b6c-4f1e:1.x_y');
  assert.equal(id, 'rq-0b6c-4f1e:1.x_y');
  for (const bad of ['short', 'has space here', 'x'.repeat(129), 'émoji-id-1', 7]) {
    assert.equal(isDispatchId(bad), false, String(bad));
  }
  assert.equal(isDispatchId('x'.repeat(128)), true);
  assert.throws(
    () => dispatchId('bad id!'),
    (e: FedAiError) => e.code === 'BAD_SHAPE',
  );
  assert.equal(dispatchIdSchema.safeParse('rq-12345678').success, true);

  assert.equal(payerId('key:abc'), 'key:abc');
  for (const bad of ['', 'a b', 'x'.repeat(161), 'tab\n', 'é']) assert.equal(isPayerId(bad), false, bad);
  assert.equal(isPayerId('x'.repeat(160)), true);
  assert.throws(
    () => payerId(''),
    (e: FedAiError) => e.code === 'BAD_SHAPE',
  );
  assert.equal(payerIdSchema.safeParse('npub-or-key-id').success, true);
});
