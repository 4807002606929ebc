// The peer table (pure: the clock is an argument): what discovery learned about other routers.
// Per peer: the newest capabilities (38100), one price sheet per model (38101, `d` = model),
// the newest status (38102), first/last seen, and reputation counters this router keeps itself.
// Addressable events follow NIP-01: per (pubkey, kind, d) only the newest is kept (same second:
// the lower id wins). Expired items are dropped. Bounded: when full, the least useful peer (lowest
// trust, then longest unseen) is evicted, and a newcomer less useful than all is refused.
import { KIND, type PriceSheet, type RouterCapabilities, type RouterStatus } from '@fed-ai/protocol';

const PEERS_DEFAULTS = {
  maxPeers: 1000,
  maxPriceSheetsPerPeer: 256,
  /** Weight of the newest sample in the latency moving average. */
  latencyAlpha: 0.2,
};

export interface PeerTrust {
  trustOf(pubkey: string): number;
  mayPeer(pubkey: string): boolean;
}

export interface PeerTableOptions {
  policy: PeerTrust;
  maxPeers?: number;
  maxPriceSheetsPerPeer?: number;
  latencyAlpha?: number;
}

interface Item<T> {
  id: string;
  createdAtS: number;
  /** NIP-40 expiration; undefined = none. */
  expiresAtS: number | undefined;
  payload: T;
}

interface Reputation {
  answered: number;
  failed: number;
  /** Moving average of answered requests' latency; undefined until one answered. */
  latencyEwmaMs: number | undefined;
  disputes: number;
}

interface Peer {
  pubkey: string;
  capabilities: Item<RouterCapabilities> | undefined;
  prices: Map<string, Item<PriceSheet>>;
  status: Item<RouterStatus> | undefined;
  firstSeenMs: number;
  lastSeenMs: number;
  reputation: Reputation;
}

/** One announcement that passed the inbound gate. */
export type Announcement =
  | { kind: typeof KIND.routerCapabilities; payload: RouterCapabilities }
  | { kind: typeof KIND.priceSheet; payload: PriceSheet }
  | { kind: typeof KIND.routerStatus; payload: RouterStatus };

export type IngestMeta = { id: string; pubkey: string; createdAtS: number; expiresAtS: number | undefined };

export type IngestOutcome = 'added' | 'replaced' | 'older' | 'expired' | 'refused' | 'bad_d';

/** What the auction needs about a peer that announces a model. */
export interface PeerOffer {
  pubkey: string;
  name: string;
  url: string;
  region: string | undefined;
  price: PriceSheet['price'];
  context_window: number;
  nodes: number;
  status: RouterStatus | undefined;
  trust: number;
  reputation: Reputation;
}

export interface PeerSnapshot {
  pubkey: string;
  /** Whether the peer policy lets it peer now. */
  allowed: boolean;
  trust: number;
  capabilities: RouterCapabilities | undefined;
  prices: PriceSheet[];
  status: RouterStatus | undefined;
  first_seen_ms: number;
  last_seen_ms: number;
  reputation: Reputation;
}

const live = <T>(item: Item<T> | undefined, nowS: number): item is Item<T> =>
  item !== undefined && (item.expiresAtS === undefined || nowS < item.expiresAtS);

/** NIP-01: newer created_at wins; in the same second the lower id. */
function isNewer(candidate: { createdAtS: number; id: string }, current: { createdAtS: number; id: string }) {
  return (
    candidate.createdAtS > current.createdAtS ||
    (candidate.createdAtS === current.createdAtS && candidate.id < current.id)
  );
}

export class PeerTable {
  private readonly peers = new Map<string, Peer>();
  private readonly policy: PeerTrust;
  private readonly maxPeers: number;
  private readonly maxPriceSheets: number;
  private readonly alpha: number;

  constructor(options: PeerTableOptions) {
    this.policy = options.policy;
    this.maxPeers = options.maxPeers ?? PEERS_DEFAULTS.maxPeers;
    this.maxPriceSheets = options.maxPriceSheetsPerPeer ?? PEERS_DEFAULTS.maxPriceSheetsPerPeer;
    this.alpha = options.latencyAlpha ?? PEERS_DEFAULTS.latencyAlpha;
  }

  get size(): number {
    return this.peers.size;
  }

  /** Takes one verified announcement. `d` is the event's `d` tag (the model for price sheets). */
  ingest(announcement: Announcement, meta: IngestMeta, d: string | undefined, nowMs: number): IngestOutcome {
    const nowS = Math.floor(nowMs / 1000);
    if (meta.expiresAtS !== undefined && nowS >= meta.expiresAtS) return 'expired';
    // A price sheet's `d` must name its model, or two sheets could fight over one address.
    if (announcement.kind === KIND.priceSheet && d !== announcement.payload.model) return 'bad_d';
    let peer = this.peers.get(meta.pubkey);
    if (!peer) {
      if (!this.makeRoom(meta.pubkey, nowS)) return 'refused';
      peer = {
        pubkey: meta.pubkey,
        capabilities: undefined,
        prices: new Map(),
        status: undefined,
        firstSeenMs: nowMs,
        lastSeenMs: nowMs,
        reputation: { answered: 0, failed: 0, latencyEwmaMs: undefined, disputes: 0 },
      };
      this.peers.set(meta.pubkey, peer);
    }
    peer.lastSeenMs = Math.max(peer.lastSeenMs, nowMs);
    const base = { id: meta.id, createdAtS: meta.createdAtS, expiresAtS: meta.expiresAtS };
    switch (announcement.kind) {
      case KIND.routerCapabilities: {
        if (peer.capabilities && !isNewer(base, peer.capabilities)) return 'older';
        const had = peer.capabilities !== undefined;
        peer.capabilities = { ...base, payload: announcement.payload };
        return had ? 'replaced' : 'added';
      }
      case KIND.routerStatus: {
        if (peer.status && !isNewer(base, peer.status)) return 'older';
        const had = peer.status !== undefined;
        peer.status = { ...base, payload: announcement.payload };
        return had ? 'replaced' : 'added';
      }
      case KIND.priceSheet: {
        const model = announcement.payload.model;
        const current = peer.prices.get(model);
        if (current && !isNewer(base, current)) return 'older';
        if (!current && peer.prices.size >= this.maxPriceSheets) {
          this.pruneItems(peer, nowS);
          if (peer.prices.size >= this.maxPriceSheets) return 'refused';
        }
        peer.prices.set(model, { ...base, payload: announcement.payload });
        return current ? 'replaced' : 'added';
      }
    }
  }

  /** Counts one offloaded request's outcome against the peer (ignored for unknown peers). */
  recordOutcome(pubkey: string, outcome: { ok: boolean; latencyMs?: number; disputed?: boolean }): void {
    const peer = this.peers.get(pubkey);
    if (!peer) return;
    const r = peer.reputation;
    if (outcome.ok) {
      r.answered += 1;
      if (outcome.latencyMs !== undefined && Number.isFinite(outcome.latencyMs) && outcome.latencyMs >= 0) {
        r.latencyEwmaMs =
          r.latencyEwmaMs === undefined
            ? outcome.latencyMs
            : r.latencyEwmaMs + this.alpha * (outcome.latencyMs - r.latencyEwmaMs);
      }
    } else r.failed += 1;
    if (outcome.disputed) r.disputes += 1;
  }

  /** Trust and record of a peer for bid scoring (the auction's PeerRecord). */
  peerRecord(pubkey: string): { trust: number; successRate: number; latencyMs?: number | undefined } {
    const r = this.peers.get(pubkey)?.reputation;
    const done = r ? r.answered + r.failed : 0;
    return {
      trust: this.policy.trustOf(pubkey),
      // Laplace smoothing: an unknown peer starts at 0.5, not 0 or 1.
      successRate: r ? (r.answered + 1) / (done + 2) : 0.5,
      latencyMs: r?.latencyEwmaMs,
    };
  }

  /** Peers allowed by the policy whose capabilities and live price sheet announce `model`. */
  peersFor(model: string, nowMs: number): PeerOffer[] {
    const nowS = Math.floor(nowMs / 1000);
    const out: PeerOffer[] = [];
    for (const peer of this.peers.values()) {
      if (!this.policy.mayPeer(peer.pubkey)) continue;
      const caps = peer.capabilities;
      const sheet = peer.prices.get(model);
      if (!live(caps, nowS) || !live(sheet, nowS)) continue;
      // The capabilities list is authoritative: a sheet for a model no longer listed is stale.
      if (!caps.payload.models.includes(model)) continue;
      out.push({
        pubkey: peer.pubkey,
        name: caps.payload.name,
        url: caps.payload.url,
        region: caps.payload.region,
        price: sheet.payload.price,
        context_window: sheet.payload.context_window,
        nodes: sheet.payload.nodes,
        status: live(peer.status, nowS) ? peer.status.payload : undefined,
        trust: this.policy.trustOf(peer.pubkey),
        reputation: { ...peer.reputation },
      });
    }
    return out.sort((a, b) => b.trust - a.trust || a.pubkey.localeCompare(b.pubkey));
  }

  /** Every peer with its live announcements (for `GET /v1/federation/peers` and `fedai peers`). */
  snapshot(nowMs: number): PeerSnapshot[] {
    const nowS = Math.floor(nowMs / 1000);
    return [...this.peers.values()]
      .map((peer) => ({
        pubkey: peer.pubkey,
        allowed: this.policy.mayPeer(peer.pubkey),
        trust: this.policy.trustOf(peer.pubkey),
        capabilities: live(peer.capabilities, nowS) ? peer.capabilities.payload : undefined,
        prices: [...peer.prices.values()]
          .filter((s) => live(s, nowS))
          .map((s) => s.payload)
          .sort((a, b) => a.model.localeCompare(b.model)),
        status: live(peer.status, nowS) ? peer.status.payload : undefined,
        first_seen_ms: peer.firstSeenMs,
        last_seen_ms: peer.lastSeenMs,
        reputation: { ...peer.reputation },
      }))
      .sort((a, b) => b.trust - a.trust || a.pubkey.localeCompare(b.pubkey));
  }

  /** Drops expired items, and peers with no live announcement and no record of ours. */
  prune(nowMs: number): void {
    const nowS = Math.floor(nowMs / 1000);
    for (const peer of this.peers.values()) {
      this.pruneItems(peer, nowS);
      const r = peer.reputation;
      if (
        !peer.capabilities &&
        !peer.status &&
        peer.prices.size === 0 &&
        r.answered + r.failed + r.disputes === 0
      )
        this.peers.delete(peer.pubkey);
    }
  }

  remove(pubkey: string): boolean {
    return this.peers.delete(pubkey);
  }

  has(pubkey: string): boolean {
    return this.peers.has(pubkey);
  }

  /** The router URL a peer announces in its live capabilities (one lookup, on the offload path). */
  routerUrl(pubkey: string, nowMs: number): string | undefined {
    const caps = this.peers.get(pubkey)?.capabilities;
    return live(caps, Math.floor(nowMs / 1000)) ? caps.payload.url : undefined;
  }

  private pruneItems(peer: Peer, nowS: number): void {
    if (peer.capabilities && !live(peer.capabilities, nowS)) peer.capabilities = undefined;
    if (peer.status && !live(peer.status, nowS)) peer.status = undefined;
    for (const [model, sheet] of peer.prices) if (!live(sheet, nowS)) peer.prices.delete(model);
  }

  /** Frees a slot for `pubkey` if the table is full; false when the newcomer is the least useful. */
  private makeRoom(pubkey: string, nowS: number): boolean {
    if (this.peers.size < this.maxPeers) return true;
    this.prune(nowS * 1000);
    if (this.peers.size < this.maxPeers) return true;
    let worst: Peer | undefined;
    let worstTrust = Number.POSITIVE_INFINITY;
    for (const peer of this.peers.values()) {
      const trust = this.policy.trustOf(peer.pubkey);
      if (trust < worstTrust || (trust === worstTrust && worst && peer.lastSeenMs < worst.lastSeenMs)) {
        worst = peer;
        worstTrust = trust;
      }
    }
    // A newcomer must be strictly more trusted than the worst peer to take its place: a flood of
    // unknown keys cannot churn out peers we already know.
    if (!worst || this.policy.trustOf(pubkey) <= worstTrust) return false;
    this.peers.delete(worst.pubkey);
    return true;
  }
}
