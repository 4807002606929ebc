// Budget periods: which calendar day/week/month an instant falls in, in the owner's time zone, and
// where that period starts and ends. Pure (Intl only, no clock): the caller passes nowS.
//
// Local midnight is found from the zone's UTC offsets, not by adding 86 400 s, so a DST day is 23 h or
// 25 h long and a zone that skips midnight (America/Santiago) starts its day at the first instant that
// exists. A period starts at the first instant whose local wall clock reaches its first day's 00:00;
// where a zone turns its clock back across midnight (Asia/Beirut) the repeated hour stays in the earlier
// day, so periods never overlap and every instant is in exactly one.
import { z } from 'zod';

const CALENDAR_UNITS = ['day', 'week', 'month'] as const;
export type CalendarUnit = (typeof CALENDAR_UNITS)[number];

/** Longest rolling window or cooldown a policy may name: 400 days, so every window stays bounded. */
export const MAX_WINDOW_S = 400 * 86_400;

export interface CalendarPeriod {
  kind: 'calendar';
  unit: CalendarUnit;
  /** IANA name such as 'Europe/Berlin' or 'UTC'; kept as written, so keys survive ICU renames. */
  timeZone: string;
}
interface RollingPeriod {
  kind: 'rolling';
  windowS: number;
}
export type Period = CalendarPeriod | RollingPeriod;

/** startS inclusive, endS exclusive, both unix seconds. */
export interface PeriodBounds {
  startS: number;
  endS: number;
}

// Instants we reason about: 1970 .. 9998, so every date math below stays inside Date's range and
// Date.UTC never sees a two-digit year.
const MIN_NOW_S = 0;
const MAX_NOW_S = Date.UTC(9999, 0, 1) / 1000 - 62 * 86_400;
const DAY_S = 86_400;
// UTC offsets lie within -12 h .. +14 h; 16 h of margin brackets every local midnight.
const MARGIN_S = 16 * 3_600;
const TIME_ZONE_SHAPE = /^[A-Za-z][A-Za-z0-9_+\-/]{0,63}$/;

export function isValidTimeZone(timeZone: unknown): timeZone is string {
  if (typeof timeZone !== 'string' || !TIME_ZONE_SHAPE.test(timeZone)) return false;
  try {
    formatter(timeZone);
    return true;
  } catch {
    return false;
  }
}

export const periodSchema = z.discriminatedUnion('kind', [
  z.strictObject({
    kind: z.literal('calendar'),
    unit: z.enum(CALENDAR_UNITS),
    timeZone: z.string().refine(isValidTimeZone, {
      message: "timeZone must be an IANA time zone name such as 'Europe/Berlin' or 'UTC'",
    }),
  }),
  z.strictObject({ kind: z.literal('rolling'), windowS: z.int().positive().max(MAX_WINDOW_S) }),
]);

/**
 * Stable key of the calendar period containing nowS: `day:2026-12-01@Europe/Berlin`,
 * `week:2026-W49@UTC` (ISO week, Monday start), `month:2026-12@America/New_York`. Spend is summed per
 * key. A rolling period has no bucket; its key `rolling:86400s` only names the window.
 */
export function periodKey(period: Period, nowS: number): string {
  checkNow(nowS);
  if (period.kind === 'rolling') return `rolling:${checkWindow(period.windowS)}s`;
  const { unit, timeZone } = period;
  const { startDays } = calendarPeriod(period, nowS);
  const date = new Date(startDays * DAY_S * 1000);
  const year = date.getUTCFullYear();
  if (unit === 'day')
    return `day:${pad(year, 4)}-${pad(date.getUTCMonth() + 1, 2)}-${pad(date.getUTCDate(), 2)}@${timeZone}`;
  if (unit === 'month') return `month:${pad(year, 4)}-${pad(date.getUTCMonth() + 1, 2)}@${timeZone}`;
  // ISO 8601: the week belongs to the year of its Thursday.
  const thursday = new Date((startDays + 3) * DAY_S * 1000);
  const isoYear = thursday.getUTCFullYear();
  const week = Math.floor((startDays + 3 - Date.UTC(isoYear, 0, 1) / 1000 / DAY_S) / 7) + 1;
  return `week:${pad(isoYear, 4)}-W${pad(week, 2)}@${timeZone}`;
}

/** Bounds of the period containing nowS; a rolling window is [nowS - windowS, nowS). */
export function periodBounds(period: Period, nowS: number): PeriodBounds {
  checkNow(nowS);
  if (period.kind === 'rolling') return { startS: nowS - checkWindow(period.windowS), endS: nowS };
  const { startS, endS } = calendarPeriod(period, nowS);
  return { startS, endS };
}

function calendarPeriod(period: CalendarPeriod, nowS: number): PeriodBounds & { startDays: number } {
  if (!(CALENDAR_UNITS as readonly string[]).includes(period.unit)) {
    throw new RangeError(`unknown calendar unit ${JSON.stringify(period.unit)}: expected day, week or month`);
  }
  if (!isValidTimeZone(period.timeZone)) throw invalidTimeZone(period.timeZone);
  const fmt = formatter(period.timeZone);
  let startDays = firstDayOf(period.unit, Math.floor(wallS(fmt, nowS) / DAY_S));
  let startS = firstInstantAtOrAfter(fmt, startDays * DAY_S);
  if (startS > nowS) throw new Error(`period start ${startS} after ${nowS} in ${period.timeZone}`);
  // Where the clock went back across midnight nowS can read as the earlier day yet lie past the
  // later day's start; step forward (twice at most in real zones).
  for (let step = 0; step < 4; step++) {
    const nextDays = nextFirstDay(period.unit, startDays);
    const endS = firstInstantAtOrAfter(fmt, nextDays * DAY_S);
    if (nowS < endS) return { startDays, startS, endS };
    startDays = nextDays;
    startS = endS;
  }
  throw new Error(`no period contains ${nowS} in ${period.timeZone}`);
}

function firstDayOf(unit: CalendarUnit, days: number): number {
  if (unit === 'day') return days;
  if (unit === 'week') return days - ((days + 3) % 7); // 1970-01-01 was a Thursday (index 3 from Monday)
  const date = new Date(days * DAY_S * 1000);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth(), 1) / 1000 / DAY_S;
}

function nextFirstDay(unit: CalendarUnit, firstDays: number): number {
  if (unit === 'day') return firstDays + 1;
  if (unit === 'week') return firstDays + 7;
  const date = new Date(firstDays * DAY_S * 1000);
  return Date.UTC(date.getUTCFullYear(), date.getUTCMonth() + 1, 1) / 1000 / DAY_S;
}

/**
 * Smallest instant whose local wall clock reads at least targetWallS (local time written as if it
 * were UTC). Assumes at most one offset change within 32 h, which holds for every IANA zone.
 */
function firstInstantAtOrAfter(fmt: Intl.DateTimeFormat, targetWallS: number): number {
  const loS = targetWallS - MARGIN_S;
  const hiS = targetWallS + MARGIN_S;
  const loOffsetS = offsetS(fmt, loS);
  if (offsetS(fmt, hiS) === loOffsetS) return targetWallS - loOffsetS;
  // Binary search the first second with the new offset.
  let beforeS = loS;
  let changeS = hiS;
  while (changeS - beforeS > 1) {
    const midS = Math.floor((beforeS + changeS) / 2);
    if (offsetS(fmt, midS) === loOffsetS) beforeS = midS;
    else changeS = midS;
  }
  if (targetWallS - loOffsetS < changeS) return targetWallS - loOffsetS;
  // Reached only after the change; in a gap the change itself is the first instant past the target.
  return Math.max(changeS, targetWallS - offsetS(fmt, changeS));
}

function offsetS(fmt: Intl.DateTimeFormat, tS: number): number {
  return wallS(fmt, tS) - tS;
}

/** Local wall-clock time of tS, as seconds since 1970-01-01T00:00 local. */
function wallS(fmt: Intl.DateTimeFormat, tS: number): number {
  const parts: Record<string, number> = {};
  for (const part of fmt.formatToParts(tS * 1000)) {
    if (part.type !== 'literal') parts[part.type] = Number(part.value);
  }
  const { year, month, day, hour, minute, second } = parts;
  if (year === undefined || month === undefined || day === undefined) throw new Error('Intl gave no date');
  return Date.UTC(year, month - 1, day, hour ?? 0, minute ?? 0, second ?? 0) / 1000;
}

// One formatter per zone: building one costs far more than using it. Bounded; cleared when full.
const formatters = new Map<string, Intl.DateTimeFormat>();
const MAX_FORMATTERS = 64;

function formatter(timeZone: string): Intl.DateTimeFormat {
  const cached = formatters.get(timeZone);
  if (cached) return cached;
  let fmt: Intl.DateTimeFormat;
  try {
    fmt = new Intl.DateTimeFormat('en-US', {
      timeZone,
      calendar: 'gregory',
      numberingSystem: 'latn',
      hourCycle: 'h23',
      year: 'numeric',
      month: 'numeric',
      day: 'numeric',
      hour: 'numeric',
      minute: 'numeric',
      second: 'numeric',
    });
  } catch {
    throw invalidTimeZone(timeZone);
  }
  if (formatters.size >= MAX_FORMATTERS) formatters.clear();
  formatters.set(timeZone, fmt);
  return fmt;
}

function invalidTimeZone(timeZone: unknown): RangeError {
  return new RangeError(
    `invalid time zone ${JSON.stringify(timeZone)}: expected an IANA name such as 'Europe/Berlin' or 'UTC'`,
  );
}

function checkNow(nowS: number): void {
  if (!Number.isSafeInteger(nowS) || nowS < MIN_NOW_S || nowS > MAX_NOW_S) {
    throw new RangeError(
      `nowS must be whole unix seconds between ${MIN_NOW_S} and ${MAX_NOW_S}, got ${nowS}`,
    );
  }
}

function checkWindow(windowS: number): number {
  if (!Number.isSafeInteger(windowS) || windowS <= 0 || windowS > MAX_WINDOW_S) {
    throw new RangeError(`windowS must be whole seconds in 1..${MAX_WINDOW_S}, got ${windowS}`);
  }
  return windowS;
}

function pad(value: number, width: number): string {
  return String(value).padStart(width, '0');
}
