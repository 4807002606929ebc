// NIP-98 HTTP auth: an event of kind 27235 signed over the absolute URL, the method and (for
// bodies) sha256 of the body, sent as `Authorization: Nostr <base64(event)>`. Used for admin and
// service-to-service endpoints. Replay-protected like every signed message.
import { randomBytes } from '@noble/hashes/utils.js';
import {
  bytesToHex,
  eventHash,
  finalizeEvent,
  type SignedEvent,
  sha256Hex,
  verifyEventSignature,
} from './crypto';
import { base64Decode, base64Encode, utf8Decode, utf8Encode } from './encoding';
import { KIND } from './kinds';
import type { ReasonCode } from './reasons';
import type { ReplayStore } from './replay';

export const NIP98_WINDOW_S = 60;
const MAX_HEADER_CHARS = 8192;

export function createNip98Header(
  url: string,
  method: string,
  body: string | Uint8Array | undefined,
  secretKey: Uint8Array,
  nowS = Math.floor(Date.now() / 1000),
): string {
  // The nonce makes two identical requests in the same second two different events (else the
  // second would be refused as a replay).
  const tags = [
    ['u', url],
    ['method', method.toUpperCase()],
    ['nonce', bytesToHex(randomBytes(8))],
  ];
  if (body !== undefined && body.length > 0) tags.push(['payload', sha256Hex(body)]);
  const event = finalizeEvent({ kind: KIND.httpAuth, created_at: nowS, tags, content: '' }, secretKey);
  return `Nostr ${base64Encode(utf8Encode(JSON.stringify(event)))}`;
}

export interface Nip98Check {
  url: string;
  method: string;
  body?: string | Uint8Array | undefined;
  replayStore: ReplayStore;
  /**
   * Signers allowed to call. Checked before the event id is recorded, so a stranger's events
   * leave nothing in the replay store.
   */
  allowed?: ReadonlySet<string> | undefined;
  nowS?: number;
  windowS?: number;
}

export type Nip98Result = { ok: true; pubkey: string } | { ok: false; code: ReasonCode; detail: string };

export async function verifyNip98(header: string | undefined, check: Nip98Check): Promise<Nip98Result> {
  const fail = (code: ReasonCode, detail: string): Nip98Result => ({ ok: false, code, detail });
  if (!header?.startsWith('Nostr '))
    return fail('UNAUTHORIZED', 'missing "Authorization: Nostr <base64>" header');
  if (header.length > MAX_HEADER_CHARS) return fail('ENVELOPE_TOO_LARGE', 'authorization header too large');
  let event: SignedEvent;
  try {
    event = JSON.parse(utf8Decode(base64Decode(header.slice(6)))) as SignedEvent;
  } catch {
    return fail('BAD_JSON', 'authorization event is not base64 JSON');
  }
  if (
    typeof event !== 'object' ||
    event === null ||
    typeof event.id !== 'string' ||
    typeof event.pubkey !== 'string' ||
    typeof event.sig !== 'string' ||
    !Array.isArray(event.tags) ||
    typeof event.created_at !== 'number' ||
    typeof event.content !== 'string'
  ) {
    return fail('BAD_SHAPE', 'authorization event is malformed');
  }
  if (event.kind !== KIND.httpAuth) return fail('UNKNOWN_KIND', 'authorization event must be kind 27235');
  const nowS = check.nowS ?? Math.floor(Date.now() / 1000);
  const windowS = check.windowS ?? NIP98_WINDOW_S;
  if (Math.abs(nowS - event.created_at) > windowS)
    return fail('STALE', 'authorization event is too old or new');
  const tag = (name: string) => event.tags.find((t) => Array.isArray(t) && t[0] === name)?.[1];
  if (tag('u') !== check.url) return fail('AUTH_URL_MISMATCH', `signed for ${String(tag('u'))}`);
  if (tag('method') !== check.method.toUpperCase()) return fail('AUTH_METHOD_MISMATCH', 'method differs');
  // A body must be signed (payload = sha256 of its exact bytes). Without a body the payload tag
  // may be left out (the plain NIP-98 header); when present it must be sha256 of the empty string.
  const body = check.body ?? '';
  const payloadTag = tag('payload');
  if (body.length > 0 || payloadTag !== undefined) {
    if (payloadTag !== sha256Hex(body))
      return fail('AUTH_PAYLOAD_MISMATCH', 'payload hash differs from body');
  }
  if (eventHash(event) !== event.id) return fail('BAD_ID', 'id mismatch');
  if (!verifyEventSignature({ ...event })) return fail('BAD_SIGNATURE', 'signature does not verify');
  if (check.allowed && !check.allowed.has(event.pubkey))
    return fail('FORBIDDEN', 'this key may not call this endpoint');
  if (!(await check.replayStore.checkAndRecord(event.id, event.created_at + windowS + 1, event.created_at))) {
    return fail('REPLAYED', 'authorization event already used');
  }
  return { ok: true, pubkey: event.pubkey };
}
