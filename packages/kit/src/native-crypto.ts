// Native BIP-340 for the services: bcrypto's binding of libsecp256k1 (bcoin-org/bcrypto, MIT),
// the one npm package we found with a native Schnorr (BIP-340) binding. Here it signs an event in
// ~65 µs and verifies one in ~55 µs, against ~460 / ~300 µs for nostr-wasm (docs/benchmarks.md,
// "Session 16"). It is an optional dependency built by node-gyp: where it did not build, the
// services run on nostr-wasm as before, and say so in their start log.
import { createHash, createHmac } from 'node:crypto';
import { createRequire } from 'node:module';
import {
  type CryptoBackendName,
  HEX64,
  HEX128,
  initCrypto,
  installNativeCrypto,
  type NativeCrypto,
} from '@fed-ai/protocol';

/** The part of bcrypto's `schnorr` module (BIP-340) used here. */
interface BcryptoSchnorr {
  native: number;
  sign(message: Buffer, secretKey: Buffer, auxRand: Buffer): Buffer;
  verify(message: Buffer, signature: Buffer, publicKey: Buffer): boolean;
  publicKeyCreate(secretKey: Buffer): Buffer;
}

const HEX = /^[0-9a-f]*$/;
/** bcrypto's `native` field: 2 when the whole module runs in the C binding. */
const FULLY_NATIVE = 2;

/** A NativeCrypto over bcrypto; malformed hex is refused before it reaches the binding. */
export function bcryptoNativeCrypto(schnorr: BcryptoSchnorr): NativeCrypto {
  // Deriving the public key is a scalar multiplication: services sign with one long-lived key.
  const publicKeys = new WeakMap<Uint8Array, { secret: Buffer; publicKeyHex: string }>();
  const asBuffer = (bytes: Uint8Array) => Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  return {
    signHex(messageHex, secretKey, auxRand) {
      if (!HEX64.test(messageHex)) throw new Error('message must be 32 bytes of lowercase hex');
      return schnorr
        .sign(Buffer.from(messageHex, 'hex'), asBuffer(secretKey), asBuffer(auxRand))
        .toString('hex');
    },
    verifyHex(signatureHex, messageHex, publicKeyHex) {
      if (!HEX128.test(signatureHex) || !HEX64.test(messageHex) || !HEX64.test(publicKeyHex)) return false;
      return schnorr.verify(
        Buffer.from(messageHex, 'hex'),
        Buffer.from(signatureHex, 'hex'),
        Buffer.from(publicKeyHex, 'hex'),
      );
    },
    publicKeyHex(secretKey) {
      const cached = publicKeys.get(secretKey);
      // The bytes are compared too: a key array changed in place must not keep its old public key.
      if (cached?.secret.equals(secretKey)) return cached.publicKeyHex;
      const secret = Buffer.from(secretKey);
      const publicKeyHex = schnorr.publicKeyCreate(secret).toString('hex');
      publicKeys.set(secretKey, { secret, publicKeyHex });
      return publicKeyHex;
    },
    sha256Hex: (text) => createHash('sha256').update(text, 'utf8').digest('hex'),
    hmacSha512Hex(key, messageHex) {
      // As @noble/hashes' hexToBytes: malformed hex throws (Buffer.from would drop it silently).
      if (messageHex.length % 2 !== 0 || !HEX.test(messageHex))
        throw new Error('message must be lowercase hex');
      return createHmac('sha512', key).update(Buffer.from(messageHex, 'hex')).digest('hex');
    },
  };
}

/** bcrypto's native schnorr module, or why it is not at hand. */
function loadBcrypto(): { schnorr: BcryptoSchnorr } | { error: string } {
  try {
    const schnorr = createRequire(import.meta.url)('bcrypto/lib/schnorr') as BcryptoSchnorr;
    if (schnorr.native !== FULLY_NATIVE) return { error: 'bcrypto runs without its native binding' };
    return { schnorr };
  } catch (error) {
    return {
      error: `bcrypto did not load: ${error instanceof Error ? error.message.split('\n')[0] : error}`,
    };
  }
}

interface CryptoLog {
  warn(fields: object, message: string): void;
}

/**
 * Makes the fastest signature backend active for a service: native where bcrypto built, else
 * nostr-wasm, else pure JS; a fallback is logged with the reason the faster one was passed over.
 */
export async function initServiceCrypto(logger: CryptoLog): Promise<CryptoBackendName> {
  const loaded = loadBcrypto();
  if ('schnorr' in loaded) {
    installNativeCrypto(bcryptoNativeCrypto(loaded.schnorr));
    return 'native';
  }
  const fallback = await initCrypto('wasm');
  const reason = [loaded.error, fallback.error].filter(Boolean).join('; ');
  logger.warn({ backend: fallback.backend, reason }, 'signatures run without the native backend (slower)');
  return fallback.backend;
}
