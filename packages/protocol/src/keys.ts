// Keys: secp256k1 secret keys and x-only public keys, as hex or NIP-19 (nsec/npub).
import { schnorr } from '@noble/curves/secp256k1.js';
// The subpath, not the package index: the index loads every NIP's code (AES tables built at import).
import * as nip19 from 'nostr-tools/nip19';
import { bytesToHex, hexToBytes, publicKeyHex } from './crypto';
import { HEX64 } from './encoding';
import { FedAiError } from './reasons';

export function generateSecretKey(): Uint8Array {
  return schnorr.utils.randomSecretKey();
}

/** Accepts 64 hex characters or `nsec1...`; rejects anything else, including keys out of range. */
export function parseSecretKey(input: string): Uint8Array {
  const text = input.trim();
  let bytes: Uint8Array;
  if (text.startsWith('nsec1')) {
    try {
      const decoded = nip19.decode(text as `nsec1${string}`);
      if (decoded.type !== 'nsec') throw new Error('not nsec');
      bytes = decoded.data;
    } catch {
      throw new FedAiError('BAD_KEY', 'The secret key is not a valid nsec (bad checksum or length).');
    }
  } else if (HEX64.test(text.toLowerCase())) {
    bytes = hexToBytes(text.toLowerCase());
  } else {
    throw new FedAiError('BAD_KEY', 'A secret key must be 64 hex characters or an nsec1... string.');
  }
  try {
    schnorr.getPublicKey(bytes);
  } catch {
    throw new FedAiError('BAD_KEY', 'The secret key is out of range for secp256k1.');
  }
  return bytes;
}

/** Accepts 64 hex characters or `npub1...`; returns lower-case hex of a point on the curve. */
export function parsePublicKey(input: string): string {
  const text = input.trim();
  let hex: string;
  if (text.startsWith('npub1')) {
    try {
      const decoded = nip19.decode(text as `npub1${string}`);
      if (decoded.type !== 'npub') throw new Error('not npub');
      hex = decoded.data;
    } catch {
      throw new FedAiError('BAD_KEY', 'The public key is not a valid npub (bad checksum or length).');
    }
  } else if (HEX64.test(text.toLowerCase())) {
    hex = text.toLowerCase();
  } else {
    throw new FedAiError('BAD_KEY', 'A public key must be 64 hex characters or an npub1... string.');
  }
  if (!isValidPublicKey(hex)) throw new FedAiError('BAD_KEY', 'The public key is not a point on secp256k1.');
  return hex;
}

export function isValidPublicKey(hex: string): boolean {
  if (!HEX64.test(hex)) return false;
  try {
    schnorr.utils.lift_x(BigInt(`0x${hex}`));
    return true;
  } catch {
    return false;
  }
}

export function publicKeyOf(secretKey: Uint8Array): string {
  return publicKeyHex(secretKey);
}

export const toNsec = (secretKey: Uint8Array): string => nip19.nsecEncode(secretKey);
export const toNpub = (publicKey: string): string => nip19.npubEncode(publicKey);
export const secretKeyHex = (secretKey: Uint8Array): string => bytesToHex(secretKey);
