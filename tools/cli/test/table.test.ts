import assert from 'node:assert/strict';
import { test } from 'node:test';
import { agoText, formatTable, groupDigits, msatAsSat, priceText } from '../src/table';

test('formatTable aligns every column to its widest cell; right-aligned columns pad on the left', () => {
  const text = formatTable(
    [{ header: 'MODEL' }, { header: 'NODES', align: 'right' }, { header: 'NOTE' }],
    [
      ['a', '2', 'x'],
      ['a-longer-model', '12', ''],
    ],
  );
  assert.equal(
    text,
    ['MODEL           NODES  NOTE', 'a                   2  x', 'a-longer-model     12', ''].join('\n'),
  );
  assert.equal(formatTable([{ header: 'A' }], []), 'A\n');
});

test('money is printed exactly from integers: digit groups, msat as sat, prices per 1k and per 1M tokens', () => {
  assert.equal(groupDigits(0), '0');
  assert.equal(groupDigits(1234567), '1,234,567');
  assert.equal(groupDigits(-1000), '-1,000');
  assert.throws(() => groupDigits(1.5), RangeError);
  assert.equal(msatAsSat(1), '0.001');
  assert.equal(msatAsSat(1500), '1.5');
  assert.equal(msatAsSat(2_000_000), '2,000');
  assert.equal(msatAsSat(1_234_567), '1,234.567');
  assert.throws(() => msatAsSat(0.5), RangeError);
  assert.deepEqual(priceText(1000), { per1k: '1,000 msat (1 sat)', per1M: '1,000,000 msat (1,000 sat)' });
  assert.deepEqual(priceText(1), { per1k: '1 msat (0.001 sat)', per1M: '1,000 msat (1 sat)' });
  assert.deepEqual(priceText(2400), { per1k: '2,400 msat (2.4 sat)', per1M: '2,400,000 msat (2,400 sat)' });
});

test('agoText picks a readable unit and shows "-" for unknown', () => {
  assert.equal(agoText(null), '-');
  assert.equal(agoText(850), '850 ms');
  assert.equal(agoText(12_000), '12 s');
  assert.equal(agoText(180_000), '3 min');
});
