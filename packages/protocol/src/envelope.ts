// Envelopes are NIP-01 events. createEnvelope signs a payload for an audience; verifyEnvelope runs
// the checks of docs/protocol.md in order, cheapest first, and records the id in the replay store
// only after the signature holds (so forged ids cannot poison it).
import type { z } from 'zod';
import { type ChannelKeys, isMacEnvelope } from './channel-mac';
import {
  eventHash,
  finalizeEvent,
  type SignedEvent,
  type UnsignedEvent,
  verifyEventSignature,
} from './crypto';
import {
  base64Decode,
  base64UrlEncode,
  HEX64,
  HEX128,
  utf8Decode,
  utf8Encode,
  utf8Exceeds,
} from './encoding';
import { isPayloadKind, PAYLOAD_SCHEMAS, type PayloadKind, type PayloadOf } from './payloads';
import type { ReasonCode } from './reasons';
import type { ReplayStore } from './replay';

export type Envelope = SignedEvent;

export const ENVELOPE_DEFAULTS = {
  maxBytes: 256 * 1024,
  windowS: 120,
  expiresInS: 120,
  maxTags: 32,
  maxTagValues: 8,
  maxTagValueChars: 1024,
} as const;

export interface CreateOptions {
  /** Receiver public key (hex); becomes the `p` tag. Omit only for public broadcasts. */
  audience?: string | undefined;
  /** NIP-40 expiration, seconds from now. 0 = no expiration tag. */
  expiresInS?: number;
  /** Request ids this message refers to (`r` tags). */
  refs?: string[];
  /** Extra tags, e.g. `['d', model]` for addressable kinds. */
  tags?: string[][];
  /** Override the clock (seconds). */
  nowS?: number;
}

/** The unsigned event of a payload: tags from `options`, content validated by its schema. */
function draftEnvelope<K extends PayloadKind>(
  kind: K,
  payload: PayloadOf<K>,
  options: CreateOptions,
): UnsignedEvent {
  const nowS = options.nowS ?? Math.floor(Date.now() / 1000);
  const tags: string[][] = [];
  if (options.audience) tags.push(['p', options.audience]);
  const expiresInS = options.expiresInS ?? ENVELOPE_DEFAULTS.expiresInS;
  if (expiresInS > 0) tags.push(['expiration', String(nowS + expiresInS)]);
  for (const ref of options.refs ?? []) tags.push(['r', ref]);
  for (const tag of options.tags ?? []) tags.push(tag);
  // Validate what we sign: a malformed payload is a bug on our side, caught before it leaves.
  const checked = (PAYLOAD_SCHEMAS[kind] as z.ZodType).parse(payload);
  return { kind, created_at: nowS, tags, content: JSON.stringify(checked) };
}

export function createEnvelope<K extends PayloadKind>(
  kind: K,
  payload: PayloadOf<K>,
  options: CreateOptions,
  secretKey: Uint8Array,
): Envelope {
  return finalizeEvent(draftEnvelope(kind, payload, options), secretKey);
}

/** An envelope for `options.audience` with a MAC of the pair's channel key instead of a signature (channel-mac.ts). */
export function createMacEnvelope<K extends PayloadKind>(
  kind: K,
  payload: PayloadOf<K>,
  options: CreateOptions & { audience: string },
  keys: ChannelKeys,
): Envelope {
  return keys.seal(draftEnvelope(kind, payload, options), options.audience);
}

export interface VerifyOptions<K extends PayloadKind> {
  /** My public key: the `p` tag must name it. `null` accepts broadcasts (no audience check). */
  me: string | null;
  /** Kinds this endpoint accepts. */
  kinds: readonly K[];
  replayStore?: ReplayStore | undefined;
  nowS?: number;
  /**
   * Check the event as of its own created_at (evidence after the fact, like a node-signed
   * receipt charged later): no freshness window, and an expiration is read against created_at.
   */
  asOfCreation?: boolean;
  windowS?: number;
  maxBytes?: number;
  /**
   * Accept MAC envelopes (channel-mac.ts) from these authors, checked with my channel keys. Without
   * it, or from anyone else, a MAC envelope is BAD_SIGNATURE (no channel key is derived for them).
   */
  channel?: { keys: ChannelKeys; from: ReadonlySet<string> } | undefined;
  /**
   * The author's channel MAC of this signed event's id, sent beside it by a peer I share a channel
   * with: checked instead of the BIP-340 signature. Only for a receiver that does not act on the
   * event as evidence itself and hands it on to one that checks the signature (a router's paid
   * metering record goes to settlement, which verifies it before it charges anything).
   */
  attestation?: { keys: ChannelKeys; mac: string } | undefined;
}

declare const verifiedBrand: unique symbol;
/** An envelope that passed verifyEnvelope; code that acts on trust asks for this type. */
export type VerifiedEnvelope = Envelope & { readonly [verifiedBrand]: true };

export type VerifyResult<K extends PayloadKind> =
  | { ok: true; envelope: VerifiedEnvelope; kind: K; payload: PayloadOf<K> }
  | { ok: false; code: ReasonCode; detail: string };

const fail = (code: ReasonCode, detail: string) => ({ ok: false as const, code, detail });

/**
 * Verifies an envelope given as raw JSON text (preferred: size is checked before parsing) or as an
 * already-parsed value. Order: size, JSON, shape, kind, created_at window, audience, expiration,
 * payload schema, id, signature, then replay.
 */
export async function verifyEnvelope<K extends PayloadKind>(
  raw: string | unknown,
  options: VerifyOptions<K>,
): Promise<VerifyResult<K>> {
  // Never throws: whatever the input (deep nesting, cycles, BigInt, throwing getters or proxies, a
  // replay store that fails), the answer is a reason-coded refusal.
  try {
    return await verifyUnchecked(raw, options);
  } catch (error) {
    return fail('BAD_SHAPE', `unverifiable input (${error instanceof Error ? error.name : typeof error})`);
  }
}

async function verifyUnchecked<K extends PayloadKind>(
  raw: string | unknown,
  options: VerifyOptions<K>,
): Promise<VerifyResult<K>> {
  const maxBytes = options.maxBytes ?? ENVELOPE_DEFAULTS.maxBytes;
  const windowS = options.windowS ?? ENVELOPE_DEFAULTS.windowS;
  const clockS = options.nowS ?? Math.floor(Date.now() / 1000);

  let text: string;
  if (typeof raw === 'string') text = raw;
  else {
    // A parsed value is bounded (depth and node count, without recursion) before anything walks it,
    // then re-read through JSON so getters, prototypes and non-JSON values cannot reach the checks.
    const bound = checkBounds(raw, maxBytes);
    if (bound) return fail(bound.code, bound.detail);
    const serialised = JSON.stringify(raw ?? null) as string | undefined;
    if (typeof serialised !== 'string') return fail('BAD_SHAPE', 'not an object');
    text = serialised;
  }
  if (utf8Exceeds(text, maxBytes)) return fail('ENVELOPE_TOO_LARGE', `over ${maxBytes} bytes`);
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return fail('BAD_JSON', 'not JSON');
  }
  const bound = checkBounds(value, maxBytes);
  if (bound) return fail(bound.code, bound.detail);

  const shapeProblem = checkShape(value);
  if (shapeProblem) return fail('BAD_SHAPE', shapeProblem);
  const event = value as Envelope;

  if (!(options.kinds as readonly number[]).includes(event.kind) || !isPayloadKind(event.kind)) {
    return fail('UNKNOWN_KIND', `kind ${event.kind} not accepted here`);
  }
  const nowS = options.asOfCreation ? event.created_at : clockS;
  if (Math.abs(nowS - event.created_at) > windowS) {
    return fail('STALE', `created_at ${event.created_at} is more than ${windowS}s from now (${nowS})`);
  }
  if (options.me !== null) {
    const audience = event.tags.filter((t) => t[0] === 'p').map((t) => t[1]);
    if (audience.length !== 1 || audience[0] !== options.me)
      return fail('WRONG_AUDIENCE', 'p tag does not name me');
  }
  const expirationTag = event.tags.find((t) => t[0] === 'expiration');
  if (expirationTag) {
    const expiresAtS = Number(expirationTag[1]);
    if (!Number.isSafeInteger(expiresAtS)) return fail('BAD_SHAPE', 'expiration tag is not an integer');
    if (nowS >= expiresAtS) return fail('EXPIRED', `expired at ${expiresAtS}`);
  }

  let content: unknown;
  try {
    content = JSON.parse(event.content);
  } catch {
    return fail('BAD_PAYLOAD', 'content is not JSON');
  }
  const parsed = (PAYLOAD_SCHEMAS[event.kind as K] as z.ZodType).safeParse(content);
  if (!parsed.success) return fail('BAD_PAYLOAD', summarizeZodError(parsed.error));

  if (eventHash(event) !== event.id) return fail('BAD_ID', 'id is not sha256 of the serialized event');
  if (isMacEnvelope(event)) {
    const channel = options.channel;
    if (!channel?.from.has(event.pubkey) || !channel.keys.opens(event))
      return fail('BAD_SIGNATURE', 'MAC does not verify (no channel with this key here)');
  } else if (options.attestation) {
    if (!options.attestation.keys.attests(event.id, event.pubkey, options.attestation.mac))
      return fail('BAD_SIGNATURE', 'the channel MAC of this event does not verify');
  } else if (!verifyEventSignature({ ...event })) {
    // Verify a fresh copy: some libraries cache verdicts on the object.
    return fail('BAD_SIGNATURE', 'signature does not verify');
  }

  if (options.replayStore) {
    // After created_at + window the id is refused as STALE anyway, so that is all we must remember.
    let fresh: boolean;
    try {
      fresh = await options.replayStore.checkAndRecord(
        event.id,
        event.created_at + windowS + 1,
        event.created_at,
      );
    } catch {
      return fail('INTERNAL', 'replay store unavailable');
    }
    if (!fresh) return fail('REPLAYED', `id ${event.id} was seen before`);
  }
  return {
    ok: true,
    envelope: event as VerifiedEnvelope,
    kind: event.kind as K,
    payload: parsed.data as PayloadOf<K>,
  };
}

/** How deep a value may nest: an envelope needs 3 (event -> tags -> tag -> string). */
export const MAX_ENVELOPE_DEPTH = 16;

/**
 * Walks a value iteratively (no recursion, so no stack overflow) and stops at the first bound
 * crossed: nesting deeper than MAX_ENVELOPE_DEPTH, or more nodes than the byte limit could hold.
 */
function checkBounds(value: unknown, maxBytes: number): { code: ReasonCode; detail: string } | null {
  const maxNodes = Math.max(16, Math.floor(maxBytes / 2));
  const stack: [unknown, number][] = [[value, 0]];
  let nodes = 0;
  while (stack.length > 0) {
    const [item, depth] = stack.pop()!;
    nodes += 1;
    if (nodes > maxNodes) return { code: 'ENVELOPE_TOO_LARGE', detail: `more than ${maxNodes} values` };
    if (typeof item !== 'object' || item === null) continue;
    if (depth >= MAX_ENVELOPE_DEPTH)
      return { code: 'BAD_SHAPE', detail: `nested deeper than ${MAX_ENVELOPE_DEPTH}` };
    if (Array.isArray(item)) {
      if (item.length > maxNodes) return { code: 'ENVELOPE_TOO_LARGE', detail: 'array too long' };
      for (const child of item) stack.push([child, depth + 1]);
    } else {
      const keys = Object.keys(item);
      if (keys.length > maxNodes) return { code: 'ENVELOPE_TOO_LARGE', detail: 'object too wide' };
      for (const key of keys) stack.push([(item as Record<string, unknown>)[key], depth + 1]);
    }
  }
  return null;
}

function checkShape(value: unknown): string | null {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return 'not an object';
  const e = value as Record<string, unknown>;
  if (typeof e.id !== 'string' || !HEX64.test(e.id)) return 'id must be 64 hex';
  if (typeof e.pubkey !== 'string' || !HEX64.test(e.pubkey)) return 'pubkey must be 64 hex';
  if (typeof e.sig !== 'string' || !HEX128.test(e.sig)) return 'sig must be 128 hex';
  if (typeof e.kind !== 'number' || !Number.isInteger(e.kind) || e.kind < 0 || e.kind > 65535)
    return 'bad kind';
  if (typeof e.created_at !== 'number' || !Number.isSafeInteger(e.created_at) || e.created_at < 0) {
    return 'bad created_at';
  }
  if (typeof e.content !== 'string') return 'content must be a string';
  if (!Array.isArray(e.tags) || e.tags.length > ENVELOPE_DEFAULTS.maxTags)
    return 'tags must be a short array';
  for (const tag of e.tags) {
    if (!Array.isArray(tag) || tag.length === 0 || tag.length > ENVELOPE_DEFAULTS.maxTagValues)
      return 'bad tag';
    for (const part of tag) {
      if (typeof part !== 'string' || part.length > ENVELOPE_DEFAULTS.maxTagValueChars)
        return 'bad tag value';
    }
  }
  return null;
}

export function summarizeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((issue) => `${issue.path.join('.') || '(root)'}: ${issue.message}`)
    .join('; ');
}

/** The first value of the first tag named `name`. */
export function tagValue(envelope: Envelope, name: string): string | undefined {
  return envelope.tags.find((t) => t[0] === name)?.[1];
}

/** Envelopes travel in headers base64url-encoded. */
export function encodeEnvelopeHeader(envelope: Envelope): string {
  return base64UrlEncode(utf8Encode(JSON.stringify(envelope)));
}

export function decodeEnvelopeHeader(value: string): string {
  return utf8Decode(base64Decode(value));
}
