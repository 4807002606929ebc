// The gate every federation event passes before anything trusts it (pure core: the clock is an
// argument). Order, cheapest first: size before parsing, JSON, NIP-01 shape, duplicate id, the
// author's rate budget (only looked at, not spent), then verification: for fed-ai kinds
// `verifyEnvelope` (kind, created_at window, NIP-40 expiration, payload schema, id, signature);
// for the standard kinds we read (3, 10000, 31990) the same id, signature and expiration checks.
// Only an event that verified spends its author's budget and enters the duplicate set, so forged
// events can neither drain an honest key's budget nor make its real events look like duplicates.
import {
  ENVELOPE_DEFAULTS,
  eventHash,
  KIND,
  type PayloadKind,
  type PayloadOf,
  type ReasonCode,
  type SignedEvent,
  utf8Exceeds,
  verifyEnvelope,
  verifyEventSignature,
} from '@fed-ai/protocol';
import { LruSet } from './relays';

/** Federation kinds with a fed-ai payload. */
export const ANNOUNCEMENT_KINDS = [KIND.routerCapabilities, KIND.priceSheet, KIND.routerStatus] as const;
type AnnouncementKind = (typeof ANNOUNCEMENT_KINDS)[number];

/** Standard kinds the federation reads: NIP-02 contact list, NIP-51 mute list, NIP-89 handler. */
export const STANDARD_KINDS = { contacts: 3, muteList: 10000, handlerInfo: KIND.handlerInfo } as const;
type StandardKind = (typeof STANDARD_KINDS)[keyof typeof STANDARD_KINDS];
const STANDARD = new Set<number>(Object.values(STANDARD_KINDS));

const INBOUND_DEFAULTS = {
  /** Raw JSON bigger than this is refused unparsed. Announcements are a few KiB. */
  maxBytes: 64 * 1024,
  /** Oldest created_at accepted (relays hold addressable events until they expire). */
  maxAgeS: 3600,
  /** Newest created_at accepted ahead of our clock, so a future date cannot pin "newest". */
  maxFutureS: 120,
  /** Token bucket per author: one full round of announcements (256 models + 3) fits the burst. */
  burst: 300,
  refillPerS: 2,
  maxAuthors: 10_000,
  dedupeSize: 10_000,
};

export interface InboundOptions {
  maxBytes?: number;
  maxAgeS?: number;
  maxFutureS?: number;
  burst?: number;
  refillPerS?: number;
  maxAuthors?: number;
  dedupeSize?: number;
}

type InboundEvent =
  | { kind: AnnouncementKind; event: SignedEvent; payload: PayloadOf<AnnouncementKind> }
  | { kind: StandardKind; event: SignedEvent; payload: undefined };

export type InboundResult = ({ ok: true } & InboundEvent) | { ok: false; code: ReasonCode; detail: string };

/**
 * Token buckets per key, bounded: when full, the least recently used key is forgotten (it comes
 * back with a full bucket, which costs an attacker nothing it did not have: a new key also starts
 * full). Pure: every call takes the clock.
 */
export class TokenBuckets {
  private readonly buckets = new Map<string, { tokens: number; atMs: number }>();
  constructor(
    private readonly burst: number,
    private readonly refillPerS: number,
    private readonly maxKeys: number,
  ) {
    if (!(burst >= 1) || !(refillPerS >= 0) || !(maxKeys >= 1)) throw new Error('bad token bucket bounds');
  }

  private level(key: string, nowMs: number): number {
    const bucket = this.buckets.get(key);
    if (!bucket) return this.burst;
    const elapsedS = Math.max(0, nowMs - bucket.atMs) / 1000;
    return Math.min(this.burst, bucket.tokens + elapsedS * this.refillPerS);
  }

  /** Whether a token is there now (nothing spent). */
  peek(key: string, nowMs: number): boolean {
    return this.level(key, nowMs) >= 1;
  }

  /** Spends one token; false (and nothing spent) when the bucket is empty. */
  take(key: string, nowMs: number): boolean {
    const tokens = this.level(key, nowMs);
    if (tokens < 1) return false;
    this.buckets.delete(key);
    this.buckets.set(key, { tokens: tokens - 1, atMs: nowMs });
    while (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value as string);
    return true;
  }

  get size(): number {
    return this.buckets.size;
  }
}

const HEX64 = /^[0-9a-f]{64}$/;
const HEX128 = /^[0-9a-f]{128}$/;

function shapeOf(value: unknown): SignedEvent | string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const e = value as Record<string, unknown>;
  if (typeof e.id !== 'string' || !HEX64.test(e.id)) return 'id must be 64 hex';
  if (typeof e.pubkey !== 'string' || !HEX64.test(e.pubkey)) return 'pubkey must be 64 hex';
  if (typeof e.sig !== 'string' || !HEX128.test(e.sig)) return 'sig must be 128 hex';
  if (typeof e.kind !== 'number' || !Number.isInteger(e.kind) || e.kind < 0 || e.kind > 65535)
    return 'bad kind';
  if (typeof e.created_at !== 'number' || !Number.isSafeInteger(e.created_at) || e.created_at < 0)
    return 'bad created_at';
  if (typeof e.content !== 'string') return 'content must be a string';
  // Contact and mute lists are long (one tag per key); the byte bound above caps them.
  if (!Array.isArray(e.tags) || e.tags.length > 10_000) return 'tags must be an array';
  for (const tag of e.tags) {
    if (!Array.isArray(tag) || tag.length === 0 || tag.length > ENVELOPE_DEFAULTS.maxTagValues)
      return 'bad tag';
    for (const part of tag)
      if (typeof part !== 'string' || part.length > ENVELOPE_DEFAULTS.maxTagValueChars)
        return 'bad tag value';
  }
  return value as SignedEvent;
}

export class InboundGate {
  private readonly buckets: TokenBuckets;
  private readonly seen: LruSet;
  private readonly o: Required<InboundOptions>;

  constructor(options: InboundOptions = {}) {
    this.o = { ...INBOUND_DEFAULTS, ...options };
    this.buckets = new TokenBuckets(this.o.burst, this.o.refillPerS, this.o.maxAuthors);
    this.seen = new LruSet(this.o.dedupeSize);
  }

  /** Checks one event, given as raw JSON text (preferred) or as a parsed object. Never throws. */
  async check(raw: unknown, nowMs: number): Promise<InboundResult> {
    try {
      return await this.checkUnsafe(raw, nowMs);
    } catch (error) {
      return {
        ok: false,
        code: 'BAD_SHAPE',
        detail: `unverifiable (${error instanceof Error ? error.name : typeof error})`,
      };
    }
  }

  private async checkUnsafe(raw: unknown, nowMs: number): Promise<InboundResult> {
    const text = typeof raw === 'string' ? raw : JSON.stringify(raw ?? null);
    if (typeof text !== 'string') return { ok: false, code: 'BAD_SHAPE', detail: 'not an object' };
    if (utf8Exceeds(text, this.o.maxBytes))
      return { ok: false, code: 'ENVELOPE_TOO_LARGE', detail: `over ${this.o.maxBytes} bytes` };
    let value: unknown;
    try {
      value = JSON.parse(text);
    } catch {
      return { ok: false, code: 'BAD_JSON', detail: 'not JSON' };
    }
    const event = shapeOf(value);
    if (typeof event === 'string') return { ok: false, code: 'BAD_SHAPE', detail: event };
    if (this.seen.has(event.id)) return { ok: false, code: 'REPLAYED', detail: 'seen before' };
    if (!this.buckets.peek(event.pubkey, nowMs))
      return { ok: false, code: 'RATE_LIMITED', detail: 'author over its rate budget' };
    const nowS = Math.floor(nowMs / 1000);
    if (event.created_at > nowS + this.o.maxFutureS)
      return { ok: false, code: 'STALE', detail: 'created_at is in the future' };
    // Contact and mute lists are replaceable and may be years old; only announcements age out.
    const isAnnouncement = (ANNOUNCEMENT_KINDS as readonly number[]).includes(event.kind);
    if (isAnnouncement && event.created_at < nowS - this.o.maxAgeS)
      return { ok: false, code: 'STALE', detail: 'too old' };

    let result: InboundEvent;
    if (isAnnouncement) {
      const verified = await verifyEnvelope<PayloadKind & AnnouncementKind>(text, {
        me: null,
        kinds: ANNOUNCEMENT_KINDS,
        nowS,
        windowS: Math.max(this.o.maxAgeS, this.o.maxFutureS),
        maxBytes: this.o.maxBytes,
      });
      if (!verified.ok) return verified;
      result = { kind: verified.kind, event: verified.envelope, payload: verified.payload };
    } else if (STANDARD.has(event.kind)) {
      const expiration = event.tags.find((t) => t[0] === 'expiration');
      if (expiration) {
        const atS = Number(expiration[1]);
        if (!Number.isSafeInteger(atS)) return { ok: false, code: 'BAD_SHAPE', detail: 'bad expiration tag' };
        if (nowS >= atS) return { ok: false, code: 'EXPIRED', detail: `expired at ${atS}` };
      }
      if (eventHash(event) !== event.id)
        return { ok: false, code: 'BAD_ID', detail: 'id is not the event hash' };
      if (!verifyEventSignature({ ...event }))
        return { ok: false, code: 'BAD_SIGNATURE', detail: 'signature does not verify' };
      result = { kind: event.kind as StandardKind, event, payload: undefined };
    } else {
      return { ok: false, code: 'UNKNOWN_KIND', detail: `kind ${event.kind} is not a federation kind` };
    }
    if (!this.buckets.take(event.pubkey, nowMs))
      return { ok: false, code: 'RATE_LIMITED', detail: 'author over its rate budget' };
    this.seen.add(event.id);
    return { ok: true, ...result };
  }
}

/** The NIP-40 expiration of an event in unix seconds, if it has one. */
export function expirationOf(event: SignedEvent): number | undefined {
  const value = event.tags.find((t) => t[0] === 'expiration')?.[1];
  const atS = Number(value);
  return value !== undefined && Number.isSafeInteger(atS) ? atS : undefined;
}
