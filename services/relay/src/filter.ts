// NIP-01 filter matching and event classes, pure. The relay core's own live matcher ignores tag
// filters (`#d`, `#p`, ...), so both stored queries and live broadcasts use this one.
import type { Event, Filter } from '@nostr-relay/common';

export type EventClass = 'regular' | 'replaceable' | 'ephemeral' | 'addressable';

/** NIP-01 kind ranges. */
export function eventClass(kind: number): EventClass {
  if (kind === 0 || kind === 3 || (kind >= 10000 && kind < 20000)) return 'replaceable';
  if (kind >= 20000 && kind < 30000) return 'ephemeral';
  if (kind >= 30000 && kind < 40000) return 'addressable';
  return 'regular';
}

/** The first value of the first `d` tag, '' when absent (NIP-01). */
export function dTagValue(event: Event): string {
  for (const tag of event.tags) if (tag[0] === 'd') return tag[1] ?? '';
  return '';
}

/** `kind:pubkey:d` for replaceable (d = '') and addressable events; null for the others. */
export function replacementKey(event: Event): string | null {
  const cls = eventClass(event.kind);
  if (cls === 'replaceable') return `${event.kind}:${event.pubkey}:`;
  if (cls === 'addressable') return `${event.kind}:${event.pubkey}:${dTagValue(event)}`;
  return null;
}

/** NIP-01: the newer event wins; on equal created_at the lower id wins. */
export function isNewer(candidate: Event, current: Event): boolean {
  if (candidate.created_at !== current.created_at) return candidate.created_at > current.created_at;
  return candidate.id < current.id;
}

/** NIP-40 expiration timestamp in seconds, or null. */
export function expirationOf(event: Event): number | null {
  for (const tag of event.tags) {
    if (tag[0] === 'expiration' && tag[1] !== undefined) {
      const value = Number.parseInt(tag[1], 10);
      return Number.isFinite(value) ? value : null;
    }
  }
  return null;
}

export function isExpired(event: Event, nowSeconds: number): boolean {
  const expiresAt = expirationOf(event);
  return expiresAt !== null && expiresAt <= nowSeconds;
}

/** Values of single-letter tags (first value only, as NIP-01 indexes them). */
function tagValues(event: Event, letter: string): string[] {
  const values: string[] = [];
  for (const tag of event.tags) if (tag[0] === letter && tag[1] !== undefined) values.push(tag[1]);
  return values;
}

/** Whether `event` matches `filter`. `limit` and `search` are not matching conditions. */
export function matchesFilter(event: Event, filter: Filter): boolean {
  if (filter.ids && !filter.ids.includes(event.id)) return false;
  if (filter.kinds && !filter.kinds.includes(event.kind)) return false;
  if (filter.authors && !filter.authors.includes(event.pubkey)) return false;
  if (filter.since !== undefined && event.created_at < filter.since) return false;
  if (filter.until !== undefined && event.created_at > filter.until) return false;
  for (const [key, wanted] of Object.entries(filter)) {
    if (key.length !== 2 || !Array.isArray(wanted)) continue;
    const prefix = key[0];
    if (prefix !== '#' && prefix !== '&') continue;
    const values = tagValues(event, key[1] as string);
    if (prefix === '#' && !(wanted as string[]).some((value) => values.includes(value))) return false;
    // `&x`: every listed value must be present.
    if (prefix === '&' && !(wanted as string[]).every((value) => values.includes(value))) return false;
  }
  return true;
}

/** NIP-01 order for query results: newest first, ties by lowest id. */
export function compareNewestFirst(a: Event, b: Event): number {
  if (a.created_at !== b.created_at) return b.created_at - a.created_at;
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}
