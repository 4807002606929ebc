import assert from 'node:assert/strict';
import { test } from 'node:test';
import { renderFiles, runScenario } from '../src/run';
import { shortScenario } from './scenarios';

const files = (seed: number) => renderFiles(runScenario(shortScenario('flaky-giant', 90), { seed }).report);
let seven: Map<string, string> | undefined;
const filesOfSeven = () => {
  seven ??= files(7);
  return seven;
};

test('the same seed reproduces every report file byte for byte', () => {
  const a = filesOfSeven();
  const b = files(7);
  assert.deepEqual([...a.keys()].sort(), [...b.keys()].sort());
  assert.ok(a.has('report.json') && a.has('report.md') && a.has('base-earnings.svg'));
  for (const [name, text] of a) assert.equal(b.get(name), text, name);
});

test('a different seed gives a different run', () => {
  const a = JSON.parse(filesOfSeven().get('report.json')!);
  const b = JSON.parse(files(8).get('report.json')!);
  assert.equal(a.seed, 7);
  assert.equal(b.seed, 8);
  assert.notDeepEqual(a.variants[0].totals, b.variants[0].totals);
  assert.notDeepEqual(a.variants[0].nodes, b.variants[0].nodes);
});

test('variants of one scenario run on the same seed and differ only where the variant does', () => {
  const { report } = runScenario(shortScenario('pay-before-vs-after', 120));
  const [before, after] = report.variants;
  assert.equal(before!.variant, 'pay-before');
  assert.equal(after!.variant, 'pay-after');
  // Same arrivals (the arrival stream is seeded apart from service and routing).
  assert.equal(before!.totals.requests, after!.totals.requests);
  assert.ok(before!.totals.requests > 500);
  // Pay-before never lets a node work for nothing because a tab was short; pay-after does.
  assert.equal(before!.money.unpaidAnswers, 0);
  assert.ok(after!.money.unpaidAnswers > 0);
  assert.ok((before!.totals.outcomes.INSUFFICIENT_BALANCE ?? 0) > 0);
});
