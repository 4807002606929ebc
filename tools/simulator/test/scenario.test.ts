import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { SimError } from '../src/errors';
import { parseScenario } from '../src/scenario';
import { resolveScenario, SCENARIO_DIR } from '../src/shell';

const refusal = (code: string, detail: RegExp) => (e: unknown) =>
  e instanceof SimError && e.code === code && detail.test(e.detail);

const steady = () => JSON.parse(readFileSync(join(SCENARIO_DIR, 'steady-market.json'), 'utf8'));

test('every shipped scenario parses', () => {
  const names = readdirSync(SCENARIO_DIR).filter((f) => f.endsWith('.json'));
  for (const name of [
    'steady-market',
    'price-war',
    'flaky-giant',
    'herding',
    'flash-crowd',
    'fleet-outage',
    'large',
    'pay-before-vs-after',
    'federation',
  ])
    assert.ok(names.includes(`${name}.json`), name);
  for (const name of names) {
    const s = parseScenario(readFileSync(join(SCENARIO_DIR, name), 'utf8'));
    assert.equal(`${s.name}.json`, name);
  }
});

test('a typo, a bad value, an unknown model or group is refused with a code naming the field', () => {
  const typo = steady();
  typo.nodes[0].capasity = typo.nodes[0].capacity;
  assert.throws(() => parseScenario(JSON.stringify(typo)), refusal('SCENARIO_INVALID', /^nodes\[0\]/));
  const negative = steady();
  negative.nodes[1].price.outputMsatPer1k = -1;
  assert.throws(
    () => parseScenario(JSON.stringify(negative)),
    refusal('SCENARIO_INVALID', /^nodes\[1\]\.price\.outputMsatPer1k/),
  );
  const model = steady();
  model.clients[0].model = 'nobody-serves-this';
  assert.throws(
    () => parseScenario(JSON.stringify(model)),
    refusal('SCENARIO_UNKNOWN_MODEL', /clients\[0\]/),
  );
  const group = steady();
  group.events = [{ atS: 1, kind: 'crash', group: 'nope' }];
  assert.throws(() => parseScenario(JSON.stringify(group)), refusal('SCENARIO_UNKNOWN_GROUP', /events\[0\]/));
  const huge = steady();
  huge.arrivals.ratePerS = 1_000_000;
  huge.durationS = 3_600;
  assert.throws(() => parseScenario(JSON.stringify(huge)), refusal('SCENARIO_TOO_LARGE', /requests/));
  assert.throws(() => parseScenario('{'), refusal('SCENARIO_NOT_JSON', /./));
});

test('scenarios are found by name or path, and nothing else', () => {
  assert.equal(resolveScenario('herding'), join(SCENARIO_DIR, 'herding.json'));
  assert.equal(resolveScenario(join(SCENARIO_DIR, 'large.json')), join(SCENARIO_DIR, 'large.json'));
  assert.throws(() => resolveScenario('../etc/passwd'), refusal('SCENARIO_NOT_FOUND', /passwd/));
  assert.throws(() => resolveScenario('no-such-scenario'), refusal('SCENARIO_NOT_FOUND', /no-such/));
});
