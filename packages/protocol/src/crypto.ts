// Schnorr (BIP-340) signing and verification of NIP-01 event ids, with interchangeable backends:
// a native libsecp256k1 binding that a Node service installs (kit's native-crypto.ts; this package
// stays browser-safe and never imports it), nostr-wasm (libsecp256k1 in WASM, ~5x faster than
// JS) where it loads, and @noble/curves (audited pure JS) as the fallback. All are held to the
// same tests.
import { schnorr } from '@noble/curves/secp256k1.js';
import { hmac } from '@noble/hashes/hmac.js';
import { sha256, sha512 } from '@noble/hashes/sha2.js';
import { bytesToHex, hexToBytes, randomBytes } from '@noble/hashes/utils.js';
import type { Nostr } from 'nostr-wasm';
import { HEX64, HEX128 } from './encoding';

export type CryptoBackendName = 'native' | 'wasm' | 'pure';

/**
 * A native BIP-340 implementation over lowercase hex, installed by a Node service
 * (installNativeCrypto). Each function must refuse (false or throw) anything malformed.
 */
export interface NativeCrypto {
  /** The signature of a 32-byte message, with this call's own auxiliary randomness (BIP-340). */
  signHex(messageHex: string, secretKey: Uint8Array, auxRand: Uint8Array): string;
  verifyHex(signatureHex: string, messageHex: string, publicKeyHex: string): boolean;
  /** The x-only public key. */
  publicKeyHex(secretKey: Uint8Array): string;
  /** sha256 of the text's UTF-8 bytes. */
  sha256Hex(text: string): string;
  /** HMAC-SHA512 under `key` of the bytes the hex gives (channel MACs: channel-mac.ts). */
  hmacSha512Hex(key: Uint8Array, messageHex: string): string;
}

/** A complete, signed NIP-01 event. */
export interface SignedEvent {
  id: string;
  pubkey: string;
  created_at: number;
  kind: number;
  tags: string[][];
  content: string;
  sig: string;
}

export type UnsignedEvent = Omit<SignedEvent, 'id' | 'sig' | 'pubkey'>;

interface Backend {
  name: CryptoBackendName;
  /** Fills id, pubkey and sig. */
  finalize(event: UnsignedEvent, secretKey: Uint8Array): SignedEvent;
  /** True when sig is a valid BIP-340 signature of id by pubkey. Assumes id was already recomputed. */
  verifySignature(event: SignedEvent): boolean;
  publicKey(secretKey: Uint8Array): string;
  /** sha256 of the text's UTF-8 bytes, hex. */
  hashText(text: string): string;
  hmacSha512Hex(key: Uint8Array, messageHex: string): string;
}

const textEncoder = new TextEncoder();
const hashTextJs = (text: string): string => bytesToHex(sha256(textEncoder.encode(text)));
const hmacSha512Js = (key: Uint8Array, messageHex: string): string =>
  bytesToHex(hmac(sha512, key, hexToBytes(messageHex)));

/** NIP-01: sha256 over the UTF-8 JSON of [0, pubkey, created_at, kind, tags, content]. */
export function eventHash(event: Omit<SignedEvent, 'id' | 'sig'>): string {
  const serialized = JSON.stringify([
    0,
    event.pubkey,
    event.created_at,
    event.kind,
    event.tags,
    event.content,
  ]);
  return active.hashText(serialized);
}

const pureBackend: Backend = {
  name: 'pure',
  finalize(event, secretKey) {
    const pubkey = bytesToHex(schnorr.getPublicKey(secretKey));
    const withKey = { ...event, pubkey };
    const id = eventHash(withKey);
    const sig = bytesToHex(schnorr.sign(hexToBytes(id), secretKey));
    return { ...withKey, id, sig };
  },
  verifySignature(event) {
    try {
      return schnorr.verify(hexToBytes(event.sig), hexToBytes(event.id), hexToBytes(event.pubkey));
    } catch {
      return false;
    }
  },
  publicKey(secretKey) {
    return bytesToHex(schnorr.getPublicKey(secretKey));
  },
  hashText: hashTextJs,
  hmacSha512Hex: hmacSha512Js,
};

function wasmBackend(wasm: Nostr): Backend {
  return {
    name: 'wasm',
    finalize(event, secretKey) {
      const draft = { ...event, id: '', pubkey: '', sig: '' };
      wasm.finalizeEvent(draft, secretKey);
      return draft;
    },
    verifySignature(event) {
      try {
        // nostr-wasm recomputes the id as well; our caller already checked it, so a throw here is the signature.
        wasm.verifyEvent({ ...event, tags: event.tags });
        return true;
      } catch {
        return false;
      }
    },
    publicKey(secretKey) {
      return bytesToHex(wasm.getPublicKey(secretKey));
    },
    hashText: hashTextJs,
    hmacSha512Hex: hmacSha512Js,
  };
}

/** Bytes of CSPRNG output drawn at once for BIP-340's auxiliary randomness: 128 signatures' worth. */
const AUX_POOL_BYTES = 4096;
let auxPool = new Uint8Array(0);
let auxOffsetBytes = 0;

/**
 * 32 fresh bytes of auxiliary randomness for one signature. One getRandomValues call of 32 bytes
 * cost ~5 µs (a node's profile: ~1.5-2 % of its CPU per request); drawn from a 4 kB pool it is
 * ~20 ns. Every byte is handed out once: a spent pool is dropped, never refilled in place, so a
 * signature that still holds its view of it keeps its own bytes.
 */
export function auxRandom32(): Uint8Array {
  if (auxOffsetBytes + 32 > auxPool.length) {
    auxPool = randomBytes(AUX_POOL_BYTES);
    auxOffsetBytes = 0;
  }
  const aux = auxPool.subarray(auxOffsetBytes, auxOffsetBytes + 32);
  auxOffsetBytes += 32;
  return aux;
}

function nativeBackend(native: NativeCrypto): Backend {
  return {
    name: 'native',
    finalize(event, secretKey) {
      const withKey = { ...event, pubkey: native.publicKeyHex(secretKey) };
      const id = eventHash(withKey);
      return { ...withKey, id, sig: native.signHex(id, secretKey, auxRandom32()) };
    },
    verifySignature(event) {
      try {
        return native.verifyHex(event.sig, event.id, event.pubkey);
      } catch {
        return false;
      }
    },
    publicKey: (secretKey) => native.publicKeyHex(secretKey),
    hashText: (text) => native.sha256Hex(text),
    hmacSha512Hex: (key, messageHex) => native.hmacSha512Hex(key, messageHex),
  };
}

let active: Backend = pureBackend;
let wasmLoaded: Backend | null = null;
let wasmAttempted = false;
let nativeInstalled: Backend | null = null;

/** Makes a native implementation the active backend (Node services: kit's initServiceCrypto). */
export function installNativeCrypto(native: NativeCrypto): void {
  nativeInstalled = nativeBackend(native);
  active = nativeInstalled;
}

/**
 * Makes the fastest backend at hand active: the native one where it was installed, else the WASM
 * one (loading it). Safe to call many times; when WASM fails to load the pure backend stays active
 * and the error is returned (never thrown) so services can log it.
 */
export async function initCrypto(
  prefer: CryptoBackendName = 'native',
): Promise<{ backend: CryptoBackendName; error?: string }> {
  if (prefer === 'pure') {
    active = pureBackend;
    return { backend: 'pure' };
  }
  if (prefer === 'native' && nativeInstalled) {
    active = nativeInstalled;
    return { backend: 'native' };
  }
  if (!wasmAttempted) {
    wasmAttempted = true;
    try {
      const { initNostrWasm } = await import('nostr-wasm');
      wasmLoaded = wasmBackend(await initNostrWasm());
    } catch (error) {
      active = pureBackend;
      return { backend: 'pure', error: error instanceof Error ? error.message : String(error) };
    }
  }
  if (wasmLoaded) active = wasmLoaded;
  return { backend: active.name };
}

export function cryptoBackend(): CryptoBackendName {
  return active.name;
}

/**
 * Switches backend for tests and benchmarks; 'wasm' requires initCrypto() to have loaded it,
 * 'native' installNativeCrypto() to have installed it.
 */
export function useCryptoBackend(name: CryptoBackendName): void {
  if (name === 'wasm') {
    if (!wasmLoaded) throw new Error('wasm backend not loaded: await initCrypto() first');
    active = wasmLoaded;
  } else if (name === 'native') {
    if (!nativeInstalled) throw new Error('native backend not installed: installNativeCrypto() first');
    active = nativeInstalled;
  } else {
    active = pureBackend;
  }
}

export function finalizeEvent(event: UnsignedEvent, secretKey: Uint8Array): SignedEvent {
  return active.finalize(event, secretKey);
}

export function verifyEventSignature(event: SignedEvent): boolean {
  return active.verifySignature(event);
}

const isStringArray = (value: unknown) => Array.isArray(value) && value.every((v) => typeof v === 'string');

/**
 * NIP-01 check of any signed event (relay traffic, NWC): its shape, its id recomputed and its
 * signature, on the active backend. Unlike nostr-tools' verifyEvent it keeps no verdict on the
 * object, so an event changed after a check is checked again.
 */
export function verifyNostrEvent(event: unknown): event is SignedEvent {
  if (typeof event !== 'object' || event === null) return false;
  const e = event as Record<string, unknown>;
  if (typeof e.id !== 'string' || !HEX64.test(e.id)) return false;
  if (typeof e.pubkey !== 'string' || !HEX64.test(e.pubkey)) return false;
  if (typeof e.sig !== 'string' || !HEX128.test(e.sig)) return false;
  if (!Number.isSafeInteger(e.kind) || !Number.isSafeInteger(e.created_at)) return false;
  if (typeof e.content !== 'string' || !Array.isArray(e.tags) || !e.tags.every(isStringArray)) return false;
  const signed = event as SignedEvent;
  return eventHash(signed) === signed.id && active.verifySignature(signed);
}

export function publicKeyHex(secretKey: Uint8Array): string {
  return active.publicKey(secretKey);
}

/** Raw BIP-340 on arbitrary messages (pure backend; nostr-wasm only exposes event-level calls). */
export const bip340 = {
  sign(message: Uint8Array, secretKey: Uint8Array, auxRand?: Uint8Array): Uint8Array {
    return schnorr.sign(message, secretKey, auxRand);
  },
  verify(signature: Uint8Array, message: Uint8Array, publicKey: Uint8Array): boolean {
    try {
      return schnorr.verify(signature, message, publicKey);
    } catch {
      return false;
    }
  },
  publicKey(secretKey: Uint8Array): Uint8Array {
    return schnorr.getPublicKey(secretKey);
  },
};

/** HMAC-SHA512 under `key` of the bytes the hex gives, hex (throws on malformed hex). */
export function hmacSha512Hex(key: Uint8Array, messageHex: string): string {
  return active.hmacSha512Hex(key, messageHex);
}

export function sha256Hex(data: string | Uint8Array): string {
  return typeof data === 'string' ? active.hashText(data) : bytesToHex(sha256(data));
}

export { bytesToHex, hexToBytes };
