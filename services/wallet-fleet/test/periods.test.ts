// Budget periods in the owner's time zone: DST days are 23 h or 25 h, ISO weeks cross year ends,
// and every instant lies in exactly one period.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  type CalendarPeriod,
  type CalendarUnit,
  isValidTimeZone,
  type Period,
  periodBounds,
  periodKey,
  periodSchema,
} from '../src/periods';

const at = (iso: string) => Date.parse(iso) / 1000;
const cal = (unit: CalendarUnit, timeZone: string): CalendarPeriod => ({ kind: 'calendar', unit, timeZone });
const H = 3_600;

const cases: Array<{ name: string; period: Period; now: string; key: string; start: string; end: string }> = [
  {
    name: 'plain UTC day',
    period: cal('day', 'UTC'),
    now: '2026-12-01T12:34:56Z',
    key: 'day:2026-12-01@UTC',
    start: '2026-12-01T00:00:00Z',
    end: '2026-12-02T00:00:00Z',
  },
  {
    name: 'Berlin day seen late in UTC is already the next local day',
    period: cal('day', 'Europe/Berlin'),
    now: '2026-11-30T23:30:00Z',
    key: 'day:2026-12-01@Europe/Berlin',
    start: '2026-11-30T23:00:00Z',
    end: '2026-12-01T23:00:00Z',
  },
  {
    name: 'Berlin spring-forward day is 23 h',
    period: cal('day', 'Europe/Berlin'),
    now: '2026-03-29T12:00:00Z',
    key: 'day:2026-03-29@Europe/Berlin',
    start: '2026-03-28T23:00:00Z',
    end: '2026-03-29T22:00:00Z',
  },
  {
    name: 'Berlin fall-back day is 25 h',
    period: cal('day', 'Europe/Berlin'),
    now: '2026-10-25T01:30:00Z', // the repeated 02:30 local, second time
    key: 'day:2026-10-25@Europe/Berlin',
    start: '2026-10-24T22:00:00Z',
    end: '2026-10-25T23:00:00Z',
  },
  {
    name: 'Santiago skips midnight: the day starts at 01:00 local',
    period: cal('day', 'America/Santiago'),
    now: '2026-09-06T12:00:00Z',
    key: 'day:2026-09-06@America/Santiago',
    start: '2026-09-06T04:00:00Z',
    end: '2026-09-07T03:00:00Z',
  },
  {
    name: 'Beirut repeats 23:00-24:00: the repeated hour stays in the earlier day',
    period: cal('day', 'Asia/Beirut'),
    now: '2026-10-24T21:30:00Z', // 23:30 local, second time
    key: 'day:2026-10-24@Asia/Beirut',
    start: '2026-10-23T21:00:00Z',
    end: '2026-10-24T22:00:00Z',
  },
  {
    name: 'Kathmandu +05:45',
    period: cal('day', 'Asia/Kathmandu'),
    now: '2026-06-30T18:15:00Z',
    key: 'day:2026-07-01@Asia/Kathmandu',
    start: '2026-06-30T18:15:00Z',
    end: '2026-07-01T18:15:00Z',
  },
  {
    name: 'ISO week 49',
    period: cal('week', 'UTC'),
    now: '2026-12-01T00:00:00Z',
    key: 'week:2026-W49@UTC',
    start: '2026-11-30T00:00:00Z',
    end: '2026-12-07T00:00:00Z',
  },
  {
    name: '2026-12-31 is in 2026-W53',
    period: cal('week', 'UTC'),
    now: '2026-12-31T23:59:59Z',
    key: 'week:2026-W53@UTC',
    start: '2026-12-28T00:00:00Z',
    end: '2027-01-04T00:00:00Z',
  },
  {
    name: '2027-01-01 is in 2026-W53 too',
    period: cal('week', 'UTC'),
    now: '2027-01-01T00:00:00Z',
    key: 'week:2026-W53@UTC',
    start: '2026-12-28T00:00:00Z',
    end: '2027-01-04T00:00:00Z',
  },
  {
    name: '2027-01-04 starts 2027-W01',
    period: cal('week', 'UTC'),
    now: '2027-01-04T00:00:00Z',
    key: 'week:2027-W01@UTC',
    start: '2027-01-04T00:00:00Z',
    end: '2027-01-11T00:00:00Z',
  },
  {
    name: '2024-12-30 (Monday) is in 2025-W01',
    period: cal('week', 'UTC'),
    now: '2024-12-30T08:00:00Z',
    key: 'week:2025-W01@UTC',
    start: '2024-12-30T00:00:00Z',
    end: '2025-01-06T00:00:00Z',
  },
  {
    name: 'Berlin week across the fall-back is 169 h',
    period: cal('week', 'Europe/Berlin'),
    now: '2026-10-25T12:00:00Z',
    key: 'week:2026-W43@Europe/Berlin',
    start: '2026-10-18T22:00:00Z',
    end: '2026-10-25T23:00:00Z',
  },
  {
    name: 'New York month with the fall-back',
    period: cal('month', 'America/New_York'),
    now: '2026-11-15T12:00:00Z',
    key: 'month:2026-11@America/New_York',
    start: '2026-11-01T04:00:00Z',
    end: '2026-12-01T05:00:00Z',
  },
  {
    name: 'New York: early UTC Dec 1 is still November',
    period: cal('month', 'America/New_York'),
    now: '2026-12-01T04:59:59Z',
    key: 'month:2026-11@America/New_York',
    start: '2026-11-01T04:00:00Z',
    end: '2026-12-01T05:00:00Z',
  },
  {
    name: 'leap February',
    period: cal('month', 'UTC'),
    now: '2028-02-29T23:59:59Z',
    key: 'month:2028-02@UTC',
    start: '2028-02-01T00:00:00Z',
    end: '2028-03-01T00:00:00Z',
  },
  {
    name: 'December ends at the new year',
    period: cal('month', 'Europe/Berlin'),
    now: '2026-12-31T22:59:59Z',
    key: 'month:2026-12@Europe/Berlin',
    start: '2026-11-30T23:00:00Z',
    end: '2026-12-31T23:00:00Z',
  },
  {
    name: 'Berlin new year is January',
    period: cal('month', 'Europe/Berlin'),
    now: '2026-12-31T23:00:00Z',
    key: 'month:2027-01@Europe/Berlin',
    start: '2026-12-31T23:00:00Z',
    end: '2027-01-31T23:00:00Z',
  },
];

for (const c of cases) {
  test(`periods: ${c.name}`, () => {
    assert.equal(periodKey(c.period, at(c.now)), c.key);
    assert.deepEqual(periodBounds(c.period, at(c.now)), { startS: at(c.start), endS: at(c.end) });
  });
}

test('DST day lengths in Europe/Berlin: 23 h in March, 25 h in October, 24 h otherwise', () => {
  const hours = (iso: string) => {
    const { startS, endS } = periodBounds(cal('day', 'Europe/Berlin'), at(iso));
    return (endS - startS) / H;
  };
  assert.equal(hours('2026-03-29T10:00:00Z'), 23);
  assert.equal(hours('2026-10-25T10:00:00Z'), 25);
  assert.equal(hours('2026-03-28T10:00:00Z'), 24);
  assert.equal(hours('2026-10-26T10:00:00Z'), 24);
});

test('rolling window: [now - windowS, now) and a key naming only the window', () => {
  const now = at('2026-12-01T12:00:00Z');
  assert.deepEqual(periodBounds({ kind: 'rolling', windowS: 86_400 }, now), {
    startS: now - 86_400,
    endS: now,
  });
  assert.equal(periodKey({ kind: 'rolling', windowS: 86_400 }, now), 'rolling:86400s');
  assert.throws(() => periodBounds({ kind: 'rolling', windowS: 0 }, now), RangeError);
  assert.throws(() => periodBounds({ kind: 'rolling', windowS: 1.5 }, now), RangeError);
});

test('invalid time zones throw a RangeError naming the zone', () => {
  for (const timeZone of ['Mars/Olympus', '', '+01:00', 'Europe/Berlin; DROP', 'x'.repeat(100)]) {
    assert.equal(isValidTimeZone(timeZone), false, timeZone);
    assert.throws(
      () => periodKey(cal('day', timeZone), 0),
      (e: unknown) => e instanceof RangeError && e.message.includes('invalid time zone'),
      timeZone,
    );
    assert.throws(() => periodBounds(cal('week', timeZone), 0), RangeError, timeZone);
    assert.equal(periodSchema.safeParse(cal('month', timeZone)).success, false, timeZone);
  }
  assert.equal(isValidTimeZone(42), false);
  for (const timeZone of ['UTC', 'Europe/Berlin', 'America/New_York', 'Asia/Kolkata', 'Etc/GMT+5']) {
    assert.equal(isValidTimeZone(timeZone), true, timeZone);
    assert.equal(periodSchema.safeParse(cal('day', timeZone)).success, true, timeZone);
  }
});

test('nowS must be whole seconds in range', () => {
  for (const nowS of [1.5, -1, Number.NaN, Number.POSITIVE_INFINITY, 1e15]) {
    assert.throws(() => periodKey(cal('day', 'UTC'), nowS), RangeError, String(nowS));
    assert.throws(() => periodBounds({ kind: 'rolling', windowS: 60 }, nowS), RangeError, String(nowS));
  }
});

test('periodSchema is strict', () => {
  assert.equal(periodSchema.safeParse({ ...cal('day', 'UTC'), extra: 1 }).success, false);
  assert.equal(periodSchema.safeParse({ kind: 'calendar', unit: 'year', timeZone: 'UTC' }).success, false);
  assert.equal(periodSchema.safeParse({ kind: 'rolling', windowS: 60.5 }).success, false);
  assert.equal(periodSchema.safeParse({ kind: 'rolling', windowS: -60 }).success, false);
  assert.equal(periodSchema.safeParse({ kind: 'rolling', windowS: 60 }).success, true);
});

// Zones with DST on both hemispheres, odd offsets, a midnight gap and a midnight overlap.
const ZONES = [
  'UTC',
  'Europe/Berlin',
  'America/New_York',
  'Australia/Sydney',
  'Australia/Lord_Howe',
  'Asia/Kathmandu',
  'Pacific/Chatham',
  'Pacific/Kiritimati',
  'Pacific/Pago_Pago',
  'America/Santiago',
  'Asia/Beirut',
  'America/Havana',
];
const periodArb = fc.record({
  kind: fc.constant('calendar' as const),
  unit: fc.constantFrom<CalendarUnit>('day', 'week', 'month'),
  timeZone: fc.constantFrom(...ZONES),
});
const nowArb = fc.integer({ min: at('2000-01-01T00:00:00Z'), max: at('2100-01-01T00:00:00Z') });

test('property: nowS lies in [startS, endS), and the next period starts where this one ends', () => {
  fc.assert(
    fc.property(periodArb, nowArb, (period, nowS) => {
      const { startS, endS } = periodBounds(period, nowS);
      assert.ok(startS <= nowS && nowS < endS, `${startS} <= ${nowS} < ${endS}`);
      assert.equal(periodBounds(period, endS).startS, endS);
      assert.deepEqual(periodBounds(period, startS), { startS, endS });
      assert.deepEqual(periodBounds(period, endS - 1), { startS, endS });
      // 23..25 h per day, so loose limits per unit.
      const days = (endS - startS) / 86_400;
      const limits: Record<CalendarUnit, [number, number]> = {
        day: [22 / 24, 26 / 24],
        week: [7 - 2 / 24, 7 + 2 / 24],
        month: [27.9, 31.1],
      };
      const [min, max] = limits[period.unit];
      assert.ok(days >= min && days <= max, `${period.unit} lasts ${days} days`);
    }),
    { numRuns: 300 },
  );
});

test('property: keys are equal iff bounds are equal', () => {
  fc.assert(
    fc.property(
      periodArb,
      nowArb,
      fc.integer({ min: -3 * 86_400, max: 3 * 86_400 }),
      (period, aS, deltaS) => {
        // Nearby instants (the same period often) and also the instant right at the next boundary.
        for (const bS of [aS + deltaS, periodBounds(period, aS).endS, periodBounds(period, aS).startS - 1]) {
          const sameKey = periodKey(period, aS) === periodKey(period, bS);
          const a = periodBounds(period, aS);
          const b = periodBounds(period, bS);
          assert.equal(sameKey, a.startS === b.startS && a.endS === b.endS, `${aS} vs ${bS}`);
        }
      },
    ),
    { numRuns: 300 },
  );
});
