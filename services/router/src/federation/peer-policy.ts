// Who counts as a peer router: the operator's choice (pure, no I/O). Inputs are the configured
// allowlist, mute and block lists, and the follow graph learned from kind-3 contact lists (NIP-02)
// and the operator's kind-10000 mute list (NIP-51). Muted and blocked keys are always excluded.
//
// Trust (0..1) from the follow graph: 1 for keys the operator follows directly (and for the
// operator and allowlisted keys), `decay` for keys followed by a key the operator follows, 0 for
// anyone else. The graph keeps at most `maxLists` contact lists of `maxFollowsPerList` keys each.

export type PeerMode = 'follows' | 'allowlist' | 'open';

const PEER_POLICY_DEFAULTS = {
  mode: 'follows' as PeerMode,
  /** Trust of a follow-of-a-follow. */
  decay: 0.5,
  /** Trust needed to peer in `follows` mode: 1 = only keys the operator follows directly. */
  minTrust: 1,
  maxLists: 256,
  maxFollowsPerList: 2000,
  maxMuted: 10_000,
};

export interface PeerPolicyOptions {
  mode?: PeerMode;
  /** If non-empty, only these keys peer (in every mode). */
  allowlist?: readonly string[];
  /** Always excluded (with the keys of the operator's NIP-51 mute list). */
  mute?: readonly string[];
  block?: readonly string[];
  /** The operator's key: its contact list (kind 3) and mute list (kind 10000) steer the policy. */
  operator?: string | undefined;
  /** This router's own key: never a peer. */
  self?: string | undefined;
  decay?: number;
  minTrust?: number;
  maxLists?: number;
  maxFollowsPerList?: number;
  maxMuted?: number;
}

const HEX64 = /^[0-9a-f]{64}$/;

/** The `p` tag values of a contact or mute list event (valid keys only, bounded, first seen kept). */
export function listedKeys(tags: readonly (readonly string[])[], max: number): string[] {
  const out = new Set<string>();
  for (const tag of tags) {
    if (out.size >= max) break;
    if (tag[0] === 'p' && typeof tag[1] === 'string' && HEX64.test(tag[1])) out.add(tag[1]);
  }
  return [...out];
}

export class PeerPolicy {
  readonly mode: PeerMode;
  readonly operator: string | undefined;
  private readonly allow: Set<string>;
  private readonly configuredMute: Set<string>;
  private listedMute = new Set<string>();
  /** owner -> keys it follows; the operator's list plus those of keys it follows. */
  private readonly lists = new Map<string, Set<string>>();
  /** Cached trust from the graph; rebuilt when a list changes. */
  private trustCache = new Map<string, number>();
  private readonly self: string | undefined;
  private readonly decay: number;
  private readonly minTrust: number;
  private readonly maxLists: number;
  private readonly maxFollowsPerList: number;
  private readonly maxMuted: number;

  constructor(options: PeerPolicyOptions = {}) {
    this.mode = options.mode ?? PEER_POLICY_DEFAULTS.mode;
    this.operator = options.operator;
    this.self = options.self;
    this.allow = new Set(options.allowlist ?? []);
    this.configuredMute = new Set([...(options.mute ?? []), ...(options.block ?? [])]);
    this.decay = options.decay ?? PEER_POLICY_DEFAULTS.decay;
    this.minTrust = options.minTrust ?? PEER_POLICY_DEFAULTS.minTrust;
    this.maxLists = options.maxLists ?? PEER_POLICY_DEFAULTS.maxLists;
    this.maxFollowsPerList = options.maxFollowsPerList ?? PEER_POLICY_DEFAULTS.maxFollowsPerList;
    this.maxMuted = options.maxMuted ?? PEER_POLICY_DEFAULTS.maxMuted;
    if (!(this.decay >= 0 && this.decay <= 1)) throw new Error('decay must be in 0..1');
    if (!(this.minTrust >= 0 && this.minTrust <= 1)) throw new Error('minTrust must be in 0..1');
  }

  /** Stores `owner`'s contact list. Only the operator's and those of keys it follows are kept. */
  setFollows(owner: string, follows: readonly string[]): boolean {
    const isOperator = owner === this.operator;
    if (!isOperator && !this.directFollows().has(owner)) return false;
    if (!isOperator && !this.lists.has(owner) && this.lists.size >= this.maxLists) return false;
    this.lists.set(owner, new Set(follows.slice(0, this.maxFollowsPerList)));
    if (isOperator) {
      // Lists of keys the operator no longer follows are forgotten.
      const direct = this.directFollows();
      for (const key of this.lists.keys()) if (key !== owner && !direct.has(key)) this.lists.delete(key);
    }
    this.rebuild();
    return true;
  }

  /** The operator's NIP-51 mute list (kind 10000 `p` tags), replacing the previous one. */
  setMuted(keys: readonly string[]): void {
    this.listedMute = new Set(keys.slice(0, this.maxMuted));
  }

  /** Keys the operator follows directly (whose contact lists feed follows-of-follows). */
  directFollows(): Set<string> {
    return (this.operator && this.lists.get(this.operator)) || new Set();
  }

  isMuted(pubkey: string): boolean {
    return this.configuredMute.has(pubkey) || this.listedMute.has(pubkey);
  }

  /** 0..1: 1 followed by the operator (or allowlisted), `decay` a follow of a follow, 0 unknown or muted. */
  trustOf(pubkey: string): number {
    if (pubkey === this.self || this.isMuted(pubkey)) return 0;
    if (this.allow.has(pubkey) || pubkey === this.operator) return 1;
    return this.trustCache.get(pubkey) ?? 0;
  }

  /** Whether this key may be a peer now. */
  mayPeer(pubkey: string): boolean {
    if (pubkey === this.self || this.isMuted(pubkey)) return false;
    if (this.allow.size > 0 || this.mode === 'allowlist') return this.allow.has(pubkey);
    if (this.mode === 'open') return true;
    return this.trustOf(pubkey) >= this.minTrust && this.trustOf(pubkey) > 0;
  }

  /**
   * Whether an announcement by this key is worth keeping. In `follows` mode the follow list may
   * arrive after a peer's announcements, so anyone not excluded for good is kept (the peer table
   * is bounded and evicts the least trusted first) and `mayPeer` decides at use.
   */
  mayIngest(pubkey: string): boolean {
    if (pubkey === this.self || this.isMuted(pubkey)) return false;
    if (this.allow.size > 0 || this.mode === 'allowlist') return this.allow.has(pubkey);
    return true;
  }

  private rebuild(): void {
    const trust = new Map<string, number>();
    const direct = this.directFollows();
    for (const [owner, follows] of this.lists) {
      if (owner === this.operator) continue;
      for (const key of follows) if (!trust.has(key)) trust.set(key, this.decay);
    }
    for (const key of direct) trust.set(key, 1);
    this.trustCache = trust;
  }
}
