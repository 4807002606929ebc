// Login and API calls through a NIP-07 extension (nos2x, Alby, ...): the page never holds a
// secret key. Every call is NIP-98: an event of kind 27235 over the absolute URL, the method and
// sha256 of the exact body, signed by the extension, checked here (id, signature, signer) before
// it is sent, and checked again by the service (time window, replay, allowed keys).
import {
  base64Encode,
  bytesToHex,
  eventHash,
  KIND,
  type SignedEvent,
  sha256Hex,
  type UnsignedEvent,
  utf8Encode,
  verifyEventSignature,
} from '@fed-ai/protocol';

interface Nip07 {
  getPublicKey(): Promise<string>;
  signEvent(event: UnsignedEvent): Promise<SignedEvent>;
}

declare global {
  interface Window {
    nostr?: Nip07;
  }
}

/** A refusal in the services' error shape `{error:{code,message,hint}}`. */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

const HEX64 = /^[0-9a-f]{64}$/;

function extension(): Nip07 {
  const nostr = window.nostr;
  if (!nostr)
    throw new ApiError(
      0,
      'NO_EXTENSION',
      'No Nostr signer found: install a NIP-07 extension (nos2x, Alby) and reload this page.',
    );
  return nostr;
}

/** Asks the extension for the operator's public key. */
export async function loginPubkey(): Promise<string> {
  const pubkey = await extension().getPublicKey();
  if (typeof pubkey !== 'string' || !HEX64.test(pubkey))
    throw new ApiError(0, 'BAD_EXTENSION', 'The Nostr extension gave no valid public key.');
  return pubkey;
}

async function nip98Header(pubkey: string, url: string, method: string, body: string | undefined) {
  const nonce = bytesToHex(crypto.getRandomValues(new Uint8Array(8)));
  const tags = [
    ['u', url],
    ['method', method],
    ['nonce', nonce],
  ];
  if (body !== undefined && body.length > 0) tags.push(['payload', sha256Hex(body)]);
  const event: UnsignedEvent = {
    kind: KIND.httpAuth,
    created_at: Math.floor(Date.now() / 1000),
    tags,
    content: '',
  };
  const signed = await extension().signEvent(event);
  // What goes out is what we asked for, signed by the key that logged in.
  const same =
    signed &&
    signed.pubkey === pubkey &&
    signed.kind === event.kind &&
    signed.created_at === event.created_at &&
    JSON.stringify(signed.tags) === JSON.stringify(tags) &&
    eventHash(signed) === signed.id &&
    verifyEventSignature(signed);
  if (!same)
    throw new ApiError(0, 'BAD_SIGNATURE', 'The Nostr extension returned an event that does not verify.');
  return `Nostr ${base64Encode(utf8Encode(JSON.stringify(signed)))}`;
}

/** One NIP-98-signed call to this page's own origin; JSON in, JSON out. */
export async function api<T>(
  pubkey: string,
  method: 'GET' | 'POST',
  path: string,
  body?: unknown,
): Promise<T> {
  const url = new URL(path, window.location.origin).href;
  const text = body === undefined ? undefined : JSON.stringify(body);
  const headers: Record<string, string> = { authorization: await nip98Header(pubkey, url, method, text) };
  if (text !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(url, {
    method,
    headers,
    credentials: 'omit',
    cache: 'no-store',
    ...(text === undefined ? {} : { body: text }),
  });
  const json: unknown = await response.json().catch(() => null);
  if (!response.ok) {
    const error = (json as { error?: { code?: unknown; message?: unknown } } | null)?.error;
    throw new ApiError(
      response.status,
      typeof error?.code === 'string' ? error.code : 'INTERNAL',
      typeof error?.message === 'string' ? error.message : `HTTP ${response.status}`,
    );
  }
  return json as T;
}
