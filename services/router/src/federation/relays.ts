// The router's connections to its federation relays: a thin shell over nostr-tools' SimplePool
// (its base class, for the options SimplePool's constructor hides).
// What nostr-tools already does: reconnect a relay that had connected once (backoff schedule
// `resubscribeBackoff`, shortened here) and re-send its open subscriptions with
// `since = lastEmitted + 1`; ping.
// What this adds:
// - retry of a relay that was down when we first asked (nostr-tools gives up on it);
// - after a reconnect, the subscription re-sent with `since = last seen - sinceMarginS`: nostr-tools'
//   +1 stays on the live subscription and drops events dated in the same second or by a peer
//   whose clock lags;
// - a "relay came back" hook (`onReconnect`) so announcements are republished (a restarted relay
//   may have lost its store);
// - a bounded LRU of (subscription, event id) so an event seen on several relays is delivered once
//   (nostr-tools' pool keeps an unbounded set per subscription, so relays are subscribed directly);
// - bounds: relays, subscriptions, WebSocket frame size.
// It satisfies the auction's RelayBus (bus.ts): publish(event), subscribe(filters, onEvent).
// The connection check is the `router_federation_relays` job (kit's job-heartbeat.ts): a check
// that finds no relay connected counts as an error, so a router cut off from every relay (no
// announcements, no discovery, no auction) is overdue within a couple of reconnect backoffs.
import { beating, type JobHeartbeat, type JobHeartbeats, relaySocketClass } from '@fed-ai/kit';
import { verifyNostrEvent } from '@fed-ai/protocol';
import type { Event, Filter } from 'nostr-tools';
import { type AbstractPoolConstructorOptions, AbstractSimplePool } from 'nostr-tools/abstract-pool';
import type { AbstractRelay, Subscription } from 'nostr-tools/abstract-relay';
import type { VerifiedEvent } from 'nostr-tools/pure';
import type { Logger } from 'pino';

const RELAYS_DEFAULTS = {
  maxRelays: 16,
  maxSubscriptions: 16,
  dedupeSize: 10_000,
  /** Catch-up after a reconnect asks from this many seconds before the last event seen. */
  sinceMarginS: 60,
  /** nostr-tools' reconnect schedule for a relay that dropped (ms per attempt, last repeats). */
  reconnectBackoffMs: [1000, 2000, 5000, 10_000, 30_000, 60_000],
  /** How often relay connections are looked at (came back? first connect still failing?). */
  checkIntervalMs: 500,
  connectTimeoutMs: 3000,
  /** Largest WebSocket frame taken from a relay; bigger closes the connection. */
  maxMessageBytes: 256 * 1024,
  publishTimeoutMs: 4000,
  reopenClosedMs: 5000,
} as const;

export interface FederationRelaysOptions {
  urls: readonly string[];
  logger: Logger;
  maxSubscriptions?: number;
  dedupeSize?: number;
  sinceMarginS?: number;
  reconnectBackoffMs?: readonly number[];
  checkIntervalMs?: number;
  connectTimeoutMs?: number;
  maxMessageBytes?: number;
  /** Heartbeats of the connection check (job `router_federation_relays`); none: it runs bare. */
  jobs?: JobHeartbeats | undefined;
}

/** A connection check that found no relay connected. */
class NoRelayConnectedError extends Error {
  constructor(readonly relays: number) {
    super(`none of the ${relays} federation relays is connected`);
  }
}

export interface PublishResult {
  /** Relays that answered OK true. */
  accepted: string[];
  /** Relays that refused, timed out or were unreachable, with the reason. */
  failed: { url: string; reason: string }[];
}

export interface Closer {
  close(): void;
}

/** A bounded set that forgets the least recently added or touched key first. */
export class LruSet {
  private readonly keys = new Map<string, true>();
  constructor(private readonly max: number) {
    if (!Number.isSafeInteger(max) || max < 1) throw new Error('LruSet size must be a positive integer');
  }
  has(key: string): boolean {
    return this.keys.has(key);
  }
  /** Adds the key; true when it was new. */
  add(key: string): boolean {
    const had = this.keys.delete(key);
    this.keys.set(key, true);
    while (this.keys.size > this.max) this.keys.delete(this.keys.keys().next().value as string);
    return !had;
  }
  get size(): number {
    return this.keys.size;
  }
}

interface SubEntry {
  id: number;
  filters: Filter[];
  onEvent: (event: Event, url: string) => void;
  /** Newest created_at delivered on this subscription (seconds). */
  lastSeenS: number;
  perRelay: Map<string, Subscription>;
}

interface RelayState {
  url: string;
  relay: AbstractRelay | undefined;
  connecting: boolean;
  wasConnected: boolean;
  /** First-connect retries (nostr-tools does not retry a relay that never connected). */
  attempt: number;
  retryAtMs: number;
  /** Earliest time to re-open subscriptions the relay closed (CLOSED), so a refusing relay is not hammered. */
  reopenAtMs: number;
}

type SocketImplementation = AbstractPoolConstructorOptions['websocketImplementation'];

/** The relay socket class (frame bound, aborted connects never crash the process; see @fed-ai/kit). */
function boundedWebSocket(maxPayload: number): SocketImplementation {
  // ws implements the browser WebSocket surface nostr-tools uses; its types differ in details.
  return relaySocketClass(maxPayload) as unknown as SocketImplementation;
}

/** Normalises a relay URL the way nostr-tools does (trailing slash dropped). */
function normalise(url: string): string {
  const u = new URL(url);
  if (u.protocol !== 'ws:' && u.protocol !== 'wss:') throw new Error(`relay URL must be ws(s): ${url}`);
  u.hash = '';
  return u.toString().replace(/\/+$/, '');
}

export class FederationRelays {
  readonly urls: readonly string[];
  private readonly pool: AbstractSimplePool;
  private readonly states = new Map<string, RelayState>();
  private readonly subs = new Map<number, SubEntry>();
  private readonly seen: LruSet;
  private readonly reconnectListeners = new Set<(url: string) => void>();
  private readonly timer: NodeJS.Timeout;
  private readonly job: JobHeartbeat | undefined;
  private readonly o: Required<Omit<FederationRelaysOptions, 'urls' | 'logger' | 'jobs'>> & {
    logger: Logger;
  };
  private nextSubId = 1;
  private closed = false;

  constructor(options: FederationRelaysOptions) {
    this.o = {
      logger: options.logger,
      maxSubscriptions: options.maxSubscriptions ?? RELAYS_DEFAULTS.maxSubscriptions,
      dedupeSize: options.dedupeSize ?? RELAYS_DEFAULTS.dedupeSize,
      sinceMarginS: options.sinceMarginS ?? RELAYS_DEFAULTS.sinceMarginS,
      reconnectBackoffMs: options.reconnectBackoffMs ?? RELAYS_DEFAULTS.reconnectBackoffMs,
      checkIntervalMs: options.checkIntervalMs ?? RELAYS_DEFAULTS.checkIntervalMs,
      connectTimeoutMs: options.connectTimeoutMs ?? RELAYS_DEFAULTS.connectTimeoutMs,
      maxMessageBytes: options.maxMessageBytes ?? RELAYS_DEFAULTS.maxMessageBytes,
    };
    const urls = [...new Set(options.urls.map(normalise))];
    if (urls.length === 0) throw new Error('at least one federation relay is needed');
    if (urls.length > RELAYS_DEFAULTS.maxRelays)
      throw new Error(`at most ${RELAYS_DEFAULTS.maxRelays} federation relays`);
    this.urls = urls;
    this.seen = new LruSet(this.o.dedupeSize);
    // SimplePool's own base, so the options SimplePool's constructor hides (idle close, socket) can be set.
    this.pool = new AbstractSimplePool({
      // Our check on the active backend (native in services), not nostr-tools' pure-JS one.
      verifyEvent: (event): event is VerifiedEvent => verifyNostrEvent(event),
      enableReconnect: true,
      enablePing: true,
      // Connections are held for the router's life; the pool's 20 s idle close would look like a drop.
      idleTimeout: 24 * 3600 * 1000,
      maxWaitForConnection: this.o.connectTimeoutMs,
      websocketImplementation: boundedWebSocket(this.o.maxMessageBytes),
    });
    for (const url of urls) {
      this.states.set(url, {
        url,
        relay: undefined,
        connecting: false,
        wasConnected: false,
        attempt: 0,
        retryAtMs: 0,
        reopenAtMs: 0,
      });
    }
    // The check itself is synchronous (connects run on their own): a short timeout. Overdue once no
    // relay was connected for two of the longest reconnect backoffs (a restarted relay is back well within).
    const longestBackoffMs = Math.max(...this.o.reconnectBackoffMs, 1000);
    this.job = options.jobs?.job('router_federation_relays', {
      intervalMs: this.o.checkIntervalMs,
      timeoutMs: 10_000,
      overdueAfterMs: Math.max(60_000, 2 * longestBackoffMs + this.o.connectTimeoutMs),
    });
    this.timer = setInterval(() => void this.beat(), this.o.checkIntervalMs);
    this.timer.unref();
    this.check();
  }

  /** One run of the connection check; its error (none connected) is the job's, not logged here. */
  private async beat(): Promise<void> {
    try {
      await beating(this.job, async () => {
        this.check();
        if (!this.closed && this.connected().length === 0) throw new NoRelayConnectedError(this.urls.length);
      });
    } catch (error) {
      // Unreachable relays are logged by connect() (first attempt, then every tenth).
      if (!(error instanceof NoRelayConnectedError))
        this.o.logger.warn({ err: error }, 'federation relay check failed');
    }
  }

  /** Called with the relay's URL each time a relay that had dropped (or never connected) is up. */
  onReconnect(listener: (url: string) => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  /** Relays connected now. */
  connected(): string[] {
    return [...this.states.values()].filter((s) => s.relay?.connected === true).map((s) => s.url);
  }

  /**
   * Sends the event to every connected relay. Resolves as soon as one relay accepted it (the
   * others finish in the background), or when every relay answered. Never throws: a dead relay is a
   * `failed` entry; relays that are down get the announcements again from the reconnect hook.
   */
  publish(event: Event): Promise<PublishResult> {
    const result: PublishResult = { accepted: [], failed: [] };
    const states = [...this.states.values()];
    return new Promise((resolve) => {
      let pending = states.length;
      const settle = () => {
        pending -= 1;
        if (pending > 0) return;
        if (result.failed.length > 0) {
          this.o.logger.debug(
            { kind: event.kind, id: event.id, accepted: result.accepted.length, failed: result.failed },
            'federation publish not taken by every relay',
          );
        }
        resolve(result);
      };
      for (const state of states) {
        const relay = state.relay;
        if (!relay?.connected) {
          result.failed.push({ url: state.url, reason: 'not connected' });
          settle();
          continue;
        }
        relay.publish(event).then(
          () => {
            result.accepted.push(state.url);
            if (result.accepted.length === 1) resolve(result);
            settle();
          },
          (error: unknown) => {
            result.failed.push({
              url: state.url,
              reason: String(error instanceof Error ? error.message : error),
            });
            settle();
          },
        );
      }
    });
  }

  /**
   * Subscribes on every relay. `onEvent` gets each event once (signature checked by nostr-tools,
   * deduplicated across relays by id). Returns a closer.
   */
  subscribe(filters: Filter[], onEvent: (event: Event, url: string) => void): Closer {
    if (this.closed) throw new Error('federation relays are closed');
    if (filters.length === 0) throw new Error('a subscription needs a filter');
    if (this.subs.size >= this.o.maxSubscriptions)
      throw new Error(`at most ${this.o.maxSubscriptions} federation subscriptions`);
    const entry: SubEntry = {
      id: this.nextSubId++,
      filters: filters.map((f) => ({ ...f })),
      onEvent,
      lastSeenS: 0,
      perRelay: new Map(),
    };
    this.subs.set(entry.id, entry);
    for (const state of this.states.values()) {
      if (state.relay?.connected) this.openOn(state, entry, entry.filters);
    }
    return {
      close: () => {
        if (!this.subs.delete(entry.id)) return;
        for (const sub of entry.perRelay.values()) sub.close('closed by caller');
        entry.perRelay.clear();
      },
    };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.timer);
    for (const entry of this.subs.values()) {
      for (const sub of entry.perRelay.values()) sub.close('closing');
    }
    this.subs.clear();
    this.reconnectListeners.clear();
    for (const state of this.states.values()) state.relay?.close();
    this.pool.destroy();
  }

  private openOn(state: RelayState, entry: SubEntry, filters: Filter[]): void {
    const relay = state.relay;
    if (!relay) return;
    let sub: Subscription | undefined;
    try {
      // A copy per relay: nostr-tools writes `since` into the filters it holds on reconnect.
      sub = relay.subscribe(
        filters.map((f) => ({ ...f })),
        {
          // Per subscription: an event that matches two subscriptions reaches both, once each.
          alreadyHaveEvent: (id) => this.seen.has(`${entry.id}:${id}`),
          onevent: (event) => {
            // Signature and filter were checked by nostr-tools before this is called.
            if (!this.seen.add(`${entry.id}:${event.id}`)) return;
            if (event.created_at > entry.lastSeenS) entry.lastSeenS = event.created_at;
            if (!this.subs.has(entry.id)) return;
            try {
              entry.onEvent(event, state.url);
            } catch (error) {
              this.o.logger.warn({ err: error, relay: state.url }, 'federation event handler failed');
            }
          },
          onclose: (reason) => {
            if (this.closed) return;
            if (entry.perRelay.get(state.url) === sub) entry.perRelay.delete(state.url);
            if (reason !== 'closed by caller' && reason !== 'closing' && this.subs.has(entry.id)) {
              this.o.logger.info({ relay: state.url, reason }, 'federation subscription closed by relay');
            }
          },
        },
      );
    } catch (error) {
      this.o.logger.warn({ relay: state.url, err: error }, 'federation subscribe failed');
      return;
    }
    entry.perRelay.set(state.url, sub);
  }

  /** Looks at every relay: first connects (with our own backoff), comebacks, lost subscriptions. */
  private check(): void {
    if (this.closed) return;
    const nowMs = Date.now();
    for (const state of this.states.values()) {
      const relay = state.relay;
      if (!relay) {
        if (!state.connecting && nowMs >= state.retryAtMs) void this.connect(state);
        continue;
      }
      if (relay.connected && !state.wasConnected) {
        state.wasConnected = true;
        this.cameBack(state);
      } else if (!relay.connected && state.wasConnected) {
        state.wasConnected = false;
        this.o.logger.info({ relay: state.url }, 'federation relay connection lost; reconnecting');
      } else if (relay.connected && nowMs >= state.reopenAtMs) {
        // A subscription the relay closed (CLOSED) is opened again, at most every few seconds.
        let reopened = false;
        for (const entry of this.subs.values()) {
          if (entry.perRelay.has(state.url)) continue;
          this.openOn(state, entry, entry.filters);
          reopened = true;
        }
        if (reopened) state.reopenAtMs = nowMs + RELAYS_DEFAULTS.reopenClosedMs;
      }
    }
  }

  private async connect(state: RelayState): Promise<void> {
    state.connecting = true;
    try {
      const relay = await this.pool.ensureRelay(state.url, { connectionTimeout: this.o.connectTimeoutMs });
      if (this.closed) {
        relay.close();
        return;
      }
      // Jittered per relay and connection: routers that lost the same relay do not all come back at once.
      relay.resubscribeBackoff = this.o.reconnectBackoffMs.map(jittered);
      relay.publishTimeout = RELAYS_DEFAULTS.publishTimeoutMs;
      const previous = relay.onclose;
      // A final close (not a drop that nostr-tools reconnects): connect anew on a later check.
      relay.onclose = () => {
        previous?.();
        if (state.relay === relay) {
          state.relay = undefined;
          state.wasConnected = false;
          state.retryAtMs = Date.now() + this.backoff(0);
          for (const entry of this.subs.values()) entry.perRelay.delete(state.url);
        }
      };
      // nostr-tools reconnects by calling `this.connect()` again; wrapping it tells us the moment a
      // dropped relay is back (a poll alone could miss a drop and return between two looks).
      // While connected, connect() hands back the same promise; a new one is a new connection.
      const connect = relay.connect.bind(relay);
      let current: Promise<void> = connect();
      relay.connect = (opts) => {
        const opened = connect(opts);
        if (opened !== current) {
          current = opened;
          opened.then(
            () => {
              if (state.relay !== relay || this.closed) return;
              state.wasConnected = true;
              this.cameBack(state);
            },
            () => undefined,
          );
        }
        return opened;
      };
      state.relay = relay;
      state.attempt = 0;
      this.check();
    } catch (error) {
      state.attempt += 1;
      state.retryAtMs = Date.now() + this.backoff(state.attempt - 1);
      if (state.attempt === 1 || state.attempt % 10 === 0) {
        this.o.logger.warn(
          { relay: state.url, attempt: state.attempt, reason: String(error) },
          'federation relay unreachable; retrying',
        );
      }
    } finally {
      state.connecting = false;
    }
  }

  private backoff(attempt: number): number {
    const schedule = this.o.reconnectBackoffMs;
    return jittered(schedule[Math.min(attempt, schedule.length - 1)] ?? 1000);
  }

  private cameBack(state: RelayState): void {
    for (const entry of this.subs.values()) {
      const live = entry.perRelay.get(state.url);
      if (!live) {
        // First connection of this relay for this subscription.
        this.openOn(state, entry, entry.filters);
      } else {
        // nostr-tools re-sent the subscription with `since = lastEmitted + 1`, and that since stays
        // on the live subscription: an event dated at or before the last one seen (same second, a
        // peer whose clock lags) would be dropped for good. Re-send it (same id: the relay
        // replaces it) from the last event seen minus a margin; duplicates are dropped by id.
        live.filters = entry.filters.map((f) =>
          entry.lastSeenS > 0
            ? { ...f, since: Math.max(f.since ?? 0, entry.lastSeenS - this.o.sinceMarginS) }
            : { ...f },
        );
        try {
          // The EOSE timer of nostr-tools' own re-send is replaced, not left to run out.
          live.receivedEose();
          live.eosed = false;
          live.fire();
        } catch (error) {
          this.o.logger.warn({ relay: state.url, err: error }, 'federation resubscribe failed');
        }
      }
    }
    for (const listener of this.reconnectListeners) {
      try {
        listener(state.url);
      } catch (error) {
        this.o.logger.warn({ err: error, relay: state.url }, 'federation reconnect hook failed');
      }
    }
  }
}

/** A delay spread over ±25 % so that many clients of one relay do not retry in step. */
function jittered(ms: number): number {
  return Math.round(ms * (0.75 + Math.random() * 0.5));
}
