// The short fuzz run of the test suite: 2,000 inputs per target (`pnpm fuzz` runs 1,000,000), no uncaught exception, no forgery,
// and the originals the mutations start from are still accepted (the targets are really exercised).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { initCrypto } from '@fed-ai/protocol';
import { runAll } from '../src/run';

test('fuzz (short): every target refuses garbage with reason codes and never throws or accepts a forgery', async () => {
  await initCrypto();
  const reports = await runAll(2_000, 20_260_101);
  assert.equal(reports.length, 6);
  for (const r of reports) {
    assert.equal(r.inputs, 2_000, r.name);
    assert.equal(r.uncaught, 0, `${r.name}: ${r.examples.join('\n')}`);
    assert.equal(r.forgeries, 0, `${r.name}: ${r.examples.join('\n')}`);
    assert.ok((r.outcomes.accepted ?? 0) > 0, `${r.name}: valid inputs are accepted`);
    const refusals = Object.keys(r.outcomes).filter((k) => k !== 'accepted');
    assert.ok(refusals.length >= 1, `${r.name}: refusals recorded`);
    if (!r.name.startsWith('relay'))
      for (const code of refusals) assert.match(code, /^[A-Z][A-Z0-9_]+$/, `${r.name}: ${code}`);
  }
});
