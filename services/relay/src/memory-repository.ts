// A bounded in-memory event store for the relay core. It holds at most `maxEvents` events and drops
// the oldest stored one first. NIP-01 classes: ephemeral events are never stored; replaceable and
// addressable events keep only the newest per (kind, pubkey[, d]). NIP-09 deletions remove the
// author's own events; NIP-40 expired events are never returned.
import {
  type Event,
  EventRepository,
  type EventRepositoryUpsertResult,
  type Filter,
} from '@nostr-relay/common';
import { compareNewestFirst, eventClass, isExpired, isNewer, matchesFilter, replacementKey } from './filter';

export interface MemoryRepositoryOptions {
  /** Most events held; the oldest stored is dropped first. */
  maxEvents?: number;
  /** Events returned for a filter without `limit`. */
  defaultLimit?: number;
  /** Upper clamp on a filter's `limit`. */
  maxLimit?: number;
  /** Clock in seconds, for NIP-40 expiration. */
  nowSeconds?: () => number;
}

export const MEMORY_REPOSITORY_DEFAULTS = { maxEvents: 10_000, defaultLimit: 500, maxLimit: 5_000 } as const;

const DELETION_KIND = 5;

export class MemoryEventRepository extends EventRepository {
  readonly maxEvents: number;
  readonly defaultLimit: number;
  readonly maxLimit: number;
  private readonly nowSeconds: () => number;
  /** Insertion order is eviction order. */
  private readonly byId = new Map<string, Event>();
  private readonly byKind = new Map<number, Set<string>>();
  /** `kind:pubkey:d` -> id of the newest stored version. */
  private readonly byReplacementKey = new Map<string, string>();
  /** Ids removed by NIP-09 deletions, so a re-publish is refused; bounded like the store. */
  private readonly deletedIds = new Set<string>();

  constructor(options: MemoryRepositoryOptions = {}) {
    super();
    this.maxEvents = options.maxEvents ?? MEMORY_REPOSITORY_DEFAULTS.maxEvents;
    this.defaultLimit = options.defaultLimit ?? MEMORY_REPOSITORY_DEFAULTS.defaultLimit;
    this.maxLimit = options.maxLimit ?? MEMORY_REPOSITORY_DEFAULTS.maxLimit;
    this.nowSeconds = options.nowSeconds ?? (() => Math.floor(Date.now() / 1000));
    for (const [name, value] of Object.entries({
      maxEvents: this.maxEvents,
      defaultLimit: this.defaultLimit,
      maxLimit: this.maxLimit,
    })) {
      if (!Number.isSafeInteger(value) || value < 1)
        throw new RangeError(`${name} must be a positive integer`);
    }
  }

  /** Number of events held now. */
  get size(): number {
    return this.byId.size;
  }

  isSearchSupported(): boolean {
    return false;
  }

  upsert(event: Event): EventRepositoryUpsertResult {
    if (this.byId.has(event.id) || this.deletedIds.has(event.id)) return { isDuplicate: true };
    // The core never stores ephemeral events; refuse them here too so the store cannot hold one.
    if (eventClass(event.kind) === 'ephemeral') return { isDuplicate: false };
    const key = replacementKey(event);
    if (key !== null) {
      const currentId = this.byReplacementKey.get(key);
      const current = currentId === undefined ? undefined : this.byId.get(currentId);
      // An older version than the stored one is not stored and not broadcast.
      if (current && !isNewer(event, current)) return { isDuplicate: true };
      if (current) this.remove(current);
    }
    this.add(event);
    return { isDuplicate: false };
  }

  find(filter: Filter): Event[] {
    const limit = Math.min(filter.limit ?? this.defaultLimit, this.maxLimit);
    if (limit <= 0) return [];
    const now = this.nowSeconds();
    const matched: Event[] = [];
    for (const event of this.candidates(filter)) {
      if (matchesFilter(event, filter) && !isExpired(event, now)) matched.push(event);
    }
    matched.sort(compareNewestFirst);
    return matched.length > limit ? matched.slice(0, limit) : matched;
  }

  /** NIP-09: removes the events an author asks to delete (`e` ids and `a` coordinates of their own). */
  override async deleteByDeletionRequest(request: Event): Promise<void> {
    for (const tag of request.tags) {
      if (tag[0] === 'e' && tag[1]) {
        const target = this.byId.get(tag[1]);
        if (target && target.pubkey === request.pubkey && target.kind !== DELETION_KIND) {
          this.remove(target);
          this.rememberDeleted(target.id);
        }
      } else if (tag[0] === 'a' && tag[1]) {
        const pubkey = tag[1].split(':')[1];
        if (pubkey !== request.pubkey) continue;
        const targetId = this.byReplacementKey.get(tag[1]);
        const target = targetId === undefined ? undefined : this.byId.get(targetId);
        if (target && target.created_at <= request.created_at) this.remove(target);
      }
    }
    // Keep the deletion request itself so other clients learn of it.
    if (!this.byId.has(request.id)) this.add(request);
  }

  async destroy(): Promise<void> {
    this.byId.clear();
    this.byKind.clear();
    this.byReplacementKey.clear();
    this.deletedIds.clear();
  }

  private candidates(filter: Filter): Iterable<Event> {
    if (filter.ids) {
      const found: Event[] = [];
      for (const id of new Set(filter.ids)) {
        const event = this.byId.get(id);
        if (event) found.push(event);
      }
      return found;
    }
    if (filter.kinds) {
      const found: Event[] = [];
      for (const kind of new Set(filter.kinds)) {
        for (const id of this.byKind.get(kind) ?? []) {
          const event = this.byId.get(id);
          if (event) found.push(event);
        }
      }
      return found;
    }
    return this.byId.values();
  }

  private add(event: Event): void {
    this.byId.set(event.id, event);
    let ids = this.byKind.get(event.kind);
    if (!ids) {
      ids = new Set();
      this.byKind.set(event.kind, ids);
    }
    ids.add(event.id);
    const key = replacementKey(event);
    if (key !== null) this.byReplacementKey.set(key, event.id);
    while (this.byId.size > this.maxEvents) {
      const oldest = this.byId.values().next().value;
      if (!oldest) break;
      this.remove(oldest);
    }
  }

  private remove(event: Event): void {
    this.byId.delete(event.id);
    const ids = this.byKind.get(event.kind);
    if (ids) {
      ids.delete(event.id);
      if (ids.size === 0) this.byKind.delete(event.kind);
    }
    const key = replacementKey(event);
    if (key !== null && this.byReplacementKey.get(key) === event.id) this.byReplacementKey.delete(key);
  }

  private rememberDeleted(id: string): void {
    this.deletedIds.add(id);
    if (this.deletedIds.size > this.maxEvents) {
      const oldest = this.deletedIds.values().next().value;
      if (oldest !== undefined) this.deletedIds.delete(oldest);
    }
  }
}
