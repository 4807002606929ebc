// Discovery: subscribes to other routers' announcements (38100-38102) and, when an operator key
// is configured, to its contact list (kind 3), its NIP-51 mute list (kind 10000) and the contact
// lists of the keys it follows (follows of follows). Every event goes through the inbound gate,
// then the peer policy, then into the peer table. Our own events are ignored. The table's prune
// timer is the `router_federation_peer_prune` job (kit's job-heartbeat.ts).
import { beating, type JobHeartbeat, type JobHeartbeats } from '@fed-ai/kit';
import { tagValue } from '@fed-ai/protocol';
import type { Filter } from 'nostr-tools';
import type { Logger } from 'pino';
import { ANNOUNCEMENT_KINDS, expirationOf, type InboundGate, STANDARD_KINDS } from './inbound';
import { listedKeys, type PeerPolicy } from './peer-policy';
import type { Announcement, PeerTable } from './peers';
import type { Closer, FederationRelays } from './relays';

const DISCOVERY_DEFAULTS = {
  /** Stored announcements asked for when subscribing. */
  limit: 2000,
  /** Contact lists of direct follows subscribed to (follows of follows). */
  maxFollowListsWatched: 200,
  pruneIntervalMs: 30_000,
};

export interface DiscoveryOptions {
  relays: FederationRelays;
  gate: InboundGate;
  policy: PeerPolicy;
  peers: PeerTable;
  /** This router's key: its own announcements are not peers. */
  self: string;
  logger: Logger;
  now?: () => number;
  /** How often expired peers are pruned (default 30 s). */
  pruneIntervalMs?: number | undefined;
  /** Heartbeats of the prune timer (job `router_federation_peer_prune`); none: it runs bare. */
  jobs?: JobHeartbeats | undefined;
}

export interface DiscoveryStats {
  accepted: number;
  /** Refusals by reason code (gate codes, `POLICY`, and peer-table outcomes). */
  refused: Record<string, number>;
}

export class Discovery {
  readonly stats: DiscoveryStats = { accepted: 0, refused: {} };
  private readonly closers: Closer[] = [];
  private followsCloser: Closer | undefined;
  private watchedFollows = '';
  private pruneTimer: NodeJS.Timeout | undefined;
  private readonly pruneJob: JobHeartbeat | undefined;
  private readonly pruneIntervalMs: number;
  private readonly now: () => number;
  /** Newest contact/mute list handled per (kind, author), so an older one cannot undo a newer. */
  private readonly listAt = new Map<string, number>();

  constructor(private readonly o: DiscoveryOptions) {
    this.now = o.now ?? Date.now;
    this.pruneIntervalMs = o.pruneIntervalMs ?? DISCOVERY_DEFAULTS.pruneIntervalMs;
    this.pruneJob = o.jobs?.job('router_federation_peer_prune', { intervalMs: this.pruneIntervalMs });
  }

  start(): void {
    this.closers.push(
      this.o.relays.subscribe(
        [{ kinds: [...ANNOUNCEMENT_KINDS], limit: DISCOVERY_DEFAULTS.limit }],
        (e) => void this.handle(e),
      ),
    );
    const operator = this.o.policy.operator;
    if (operator) {
      this.closers.push(
        this.o.relays.subscribe(
          [{ kinds: [STANDARD_KINDS.contacts, STANDARD_KINDS.muteList], authors: [operator] }],
          (e) => void this.handle(e),
        ),
      );
    }
    this.pruneTimer = setInterval(() => void this.prune(), this.pruneIntervalMs);
    this.pruneTimer.unref();
  }

  close(): void {
    for (const c of this.closers) c.close();
    this.closers.length = 0;
    this.followsCloser?.close();
    if (this.pruneTimer) clearInterval(this.pruneTimer);
  }

  /** Forgets expired peers (one run of the prune job). Never throws. */
  async prune(): Promise<void> {
    try {
      await beating(this.pruneJob, async () => this.o.peers.prune(this.now()));
    } catch (error) {
      this.o.logger.warn({ err: error }, 'federation peer prune failed');
    }
  }

  /** One event from a relay (or anywhere): gate, policy, table. Never throws. */
  async handle(raw: unknown): Promise<void> {
    // Our own announcements come back from the relays: skip them before the signature check.
    if (typeof raw === 'object' && raw !== null && (raw as { pubkey?: unknown }).pubkey === this.o.self)
      return;
    const nowMs = this.now();
    const checked = await this.o.gate.check(raw, nowMs);
    if (!checked.ok) return this.refuse(checked.code);
    const { event } = checked;
    if (event.pubkey === this.o.self) return;
    if (checked.kind === STANDARD_KINDS.contacts || checked.kind === STANDARD_KINDS.muteList) {
      this.onList(checked.kind, event.pubkey, event.created_at, event.tags);
      return;
    }
    if (checked.kind === STANDARD_KINDS.handlerInfo) return;
    if (!this.o.policy.mayIngest(event.pubkey)) return this.refuse('POLICY');
    const outcome = this.o.peers.ingest(
      { kind: checked.kind, payload: checked.payload } as Announcement,
      { id: event.id, pubkey: event.pubkey, createdAtS: event.created_at, expiresAtS: expirationOf(event) },
      tagValue(event, 'd'),
      nowMs,
    );
    if (outcome === 'added' || outcome === 'replaced') this.stats.accepted += 1;
    else this.refuse(outcome.toUpperCase());
  }

  private refuse(code: string): void {
    this.stats.refused[code] = (this.stats.refused[code] ?? 0) + 1;
  }

  private onList(kind: number, author: string, createdAtS: number, tags: string[][]): void {
    const key = `${kind}:${author}`;
    if ((this.listAt.get(key) ?? -1) >= createdAtS) return;
    const policy = this.o.policy;
    if (kind === STANDARD_KINDS.muteList) {
      if (author !== policy.operator) return;
      this.listAt.set(key, createdAtS);
      const muted = listedKeys(tags, 10_000);
      policy.setMuted(muted);
      for (const pubkey of muted) this.o.peers.remove(pubkey);
      return;
    }
    if (!policy.setFollows(author, listedKeys(tags, 2000))) return;
    // Bounded: only the operator's and its direct follows' lists are ever stored.
    if (this.listAt.size < 4 * DISCOVERY_DEFAULTS.maxFollowListsWatched) this.listAt.set(key, createdAtS);
    if (author === policy.operator) this.watchFollowLists();
  }

  /** Follows of follows: subscribe to the contact lists of the keys the operator follows. */
  private watchFollowLists(): void {
    const authors = [...this.o.policy.directFollows()]
      .filter((k) => k !== this.o.self)
      .sort()
      .slice(0, DISCOVERY_DEFAULTS.maxFollowListsWatched);
    const key = authors.join(',');
    if (key === this.watchedFollows) return;
    this.watchedFollows = key;
    this.followsCloser?.close();
    this.followsCloser = undefined;
    if (authors.length === 0) return;
    const filter: Filter = { kinds: [STANDARD_KINDS.contacts], authors };
    try {
      this.followsCloser = this.o.relays.subscribe([filter], (e) => void this.handle(e));
    } catch (error) {
      this.o.logger.warn({ err: error }, 'cannot watch follows of follows');
    }
  }
}
