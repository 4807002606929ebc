// BIP-340's auxiliary randomness for the native backend comes from a pool (crypto.ts auxRandom32):
// every draw is 32 bytes no other draw shares, and a draw keeps its bytes after the pool is spent.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { auxRandom32 } from '../src/crypto';

test('draws are 32 bytes each, pairwise distinct, and unchanged after later refills', () => {
  const draws = Array.from({ length: 400 }, () => auxRandom32());
  const copies = draws.map((d) => Buffer.from(d).toString('hex'));
  for (const d of draws) assert.equal(d.length, 32);
  assert.equal(new Set(copies).size, 400);
  for (let i = 0; i < 1000; i++) auxRandom32(); // spends several more pools
  assert.deepEqual(
    draws.map((d) => Buffer.from(d).toString('hex')),
    copies,
  );
});
