// Envelopes between two parties that already share a key (a router and a node it registered)
// carried with a MAC in `sig` instead of a BIP-340 signature: the same event, id and checks, but
// HMAC-SHA512 costs microseconds where signing and verifying cost a fraction of a millisecond each
// on every request. The key is the pair's NIP-44 conversation key (ECDH of their Nostr keys),
// expanded for this one use; only the two holders can make or check the MAC.
//
// A MAC envelope carries the tag ["auth", "mac-v1"] (inside the id, so it cannot be stripped), and
// a verifier without the pair's key refuses it: its `sig` is no valid signature (fail closed).
// What a MAC does not give is proof to a third party: anything that must stay evidence (metering
// records, receipts, statements) is signed as before.
import { hkdf } from '@noble/hashes/hkdf.js';
import { sha256 } from '@noble/hashes/sha2.js';
import { eventHash, hmacSha512Hex, publicKeyHex, type SignedEvent, type UnsignedEvent } from './crypto';
import { HEX64 } from './encoding';
import { conversationKey } from './nip44';

export const MAC_AUTH_TAG = ['auth', 'mac-v1'] as const;
/** What a node says it accepts in its registration (`auth`): routers use a MAC only then. */
export const REQUEST_AUTH = ['mac-v1'] as const;
const MAC_KEY_INFO = new TextEncoder().encode('fed-ai channel mac v1');

/** Whether an event says it carries a MAC (the tag, anywhere in its tags). */
export function isMacEnvelope(event: { tags: string[][] }): boolean {
  return event.tags.some((t) => t.length === 2 && t[0] === MAC_AUTH_TAG[0] && t[1] === MAC_AUTH_TAG[1]);
}

/** The MAC key of `secretKey` with `peerPubkey` (both sides derive the same one). */
function channelKey(secretKey: Uint8Array, peerPubkey: string): Uint8Array {
  return hkdf(sha256, conversationKey(secretKey, peerPubkey), undefined, MAC_KEY_INFO, 32);
}

/** Constant time over equal-length hex strings. */
function sameHex(a: string, b: string): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a.charCodeAt(i) ^ b.charCodeAt(i);
  return diff === 0;
}

/**
 * One party's channel keys, one per peer, derived once (an ECDH each) and kept up to `maxPeers`
 * (the oldest derived is dropped first). Makes and checks MAC envelopes.
 */
export class ChannelKeys {
  readonly pubkey: string;
  private readonly keys = new Map<string, Uint8Array>();

  constructor(
    private readonly secretKey: Uint8Array,
    private readonly maxPeers = 4096,
  ) {
    this.pubkey = publicKeyHex(secretKey);
  }

  private keyFor(peerPubkey: string): Uint8Array {
    let key = this.keys.get(peerPubkey);
    if (!key) {
      key = channelKey(this.secretKey, peerPubkey);
      if (this.keys.size >= this.maxPeers) this.keys.delete(this.keys.keys().next().value as string);
      this.keys.set(peerPubkey, key);
    }
    return key;
  }

  /** Completes `event` for `peerPubkey` with the MAC tag, id and MAC (in `sig`). */
  seal(event: UnsignedEvent, peerPubkey: string): SignedEvent {
    const withKey = { ...event, tags: [...event.tags, [...MAC_AUTH_TAG]], pubkey: this.pubkey };
    const id = eventHash(withKey);
    return { ...withKey, id, sig: hmacSha512Hex(this.keyFor(peerPubkey), id) };
  }

  /** True when `event` (id already checked) carries the MAC its author's channel with me gives. */
  opens(event: SignedEvent): boolean {
    return this.attests(event.id, event.pubkey, event.sig);
  }

  /**
   * The MAC of an event id for `peerPubkey`, sent beside an event that stays signed (a metering
   * record): the peer checks this instead of the signature when someone after it checks that.
   */
  attest(id: string, peerPubkey: string): string {
    return hmacSha512Hex(this.keyFor(peerPubkey), id);
  }

  /** True when `mac` is what `authorPubkey`'s channel with me gives for the event id `id`. */
  attests(id: string, authorPubkey: string, mac: string): boolean {
    if (!HEX64.test(authorPubkey) || !HEX64.test(id)) return false;
    try {
      return sameHex(mac, hmacSha512Hex(this.keyFor(authorPubkey), id));
    } catch {
      // Not a point on the curve: no channel with it.
      return false;
    }
  }
}
