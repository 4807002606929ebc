// The NIP-90 job parser (pure): what a kind-5050 job's tags become, and every refusal.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { FedAiError } from '@fed-ai/protocol';
import { parseDvmJob } from '../src/federation/dvm';

test('a 5050 job: text inputs become user messages, params their settings', () => {
  const job = parseDvmJob(
    [
      ['i', 'first', 'text'],
      ['i', 'second'],
      ['i', 'https://example.com/x', 'url'],
      ['param', 'model', 'm-1'],
      ['param', 'max_tokens', '12'],
      ['param', 'temperature', '0.5'],
      ['param', 'system', 'be brief'],
      ['bid', '5000'],
    ],
    undefined,
    256,
  );
  assert.deepEqual(job.messages, [
    { role: 'system', content: 'be brief' },
    { role: 'user', content: 'first' },
    { role: 'user', content: 'second' },
  ]);
  assert.equal(job.model, 'm-1');
  assert.equal(job.max_tokens, 12);
  assert.equal(job.temperature, 0.5);
  assert.equal(job.bidMsat, 5000);
  // Defaults: the router's model and max_tokens; no bid.
  const plain = parseDvmJob([['i', 'hi', 'text']], 'default-model', 64);
  assert.equal(plain.model, 'default-model');
  assert.equal(plain.max_tokens, 64);
  assert.equal(plain.bidMsat, undefined);
});

test('refusals are INVALID_REQUEST with a reason', () => {
  const refused = (tags: string[][], defaultModel?: string) =>
    assert.throws(
      () => parseDvmJob(tags, defaultModel, 64),
      (e: unknown) => e instanceof FedAiError && e.code === 'INVALID_REQUEST',
    );
  refused([['param', 'model', 'm']]); // no text input
  refused([
    ['i', 'only a url', 'url'],
    ['param', 'model', 'm'],
  ]);
  refused([['i', 'hi', 'text']]); // no model, none by default
  refused([
    ['i', 'hi'],
    ['param', 'model', 'bad model id!'],
  ]);
  refused([
    ['i', 'hi'],
    ['param', 'model', 'm'],
    ['param', 'max_tokens', 'many'],
  ]);
  refused([
    ['i', 'hi'],
    ['param', 'model', 'm'],
    ['param', 'max_tokens', '0'],
  ]);
  refused([
    ['i', 'hi'],
    ['param', 'model', 'm'],
    ['param', 'temperature', 'hot'],
  ]);
  refused([
    ['i', 'hi'],
    ['param', 'model', 'm'],
    ['bid', '1.5'],
  ]);
  refused([
    ['i', 'x'.repeat(200_001)],
    ['param', 'model', 'm'],
  ]);
});
