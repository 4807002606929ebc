// This router's presence on the federation relays: signed capabilities (38100), one price sheet
// per model it serves (38101, `d` = model), status (38102) and a NIP-89 handler-information event
// (31990) so plain Nostr clients find the OpenAI-compatible URL. Every event carries a NIP-40
// expiration (`expiryFactor` x the refresh interval). Republished every `refreshS`, when what it
// says changed (a hash of models, prices and coarse status, checked every `changeCheckMs`), and
// when a relay comes back (a restarted relay may have lost its store).
// `buildAnnouncements` is the pure core; `Announcer` is the timer shell. Each check of the timer
// is one run of the `router_federation_announce` job (kit's job-heartbeat.ts); a check whose
// source throws, or whose round no relay took, counts as an error.
import { beating, type JobHeartbeat, type JobHeartbeats } from '@fed-ai/kit';
import {
  createEnvelope,
  finalizeEvent,
  KIND,
  type Price,
  type RouterCapabilities,
  type RouterStatus,
  type SignedEvent,
  sha256Hex,
} from '@fed-ai/protocol';
import type { Logger } from 'pino';
import type { Registry } from '../registry';

const ANNOUNCE_DEFAULTS = {
  refreshS: 300,
  expiryFactor: 3,
  changeCheckMs: 5000,
  maxModels: 256,
  /** The `d` tags of the singleton addressable events. */
  capabilitiesD: 'capabilities',
  statusD: 'status',
  handlerD: 'fed-ai-router',
  /** NIP-90 text generation: the job kind the OpenAI-compatible API answers. */
  textGenerationKind: 5050,
};

/** One model this router serves, as announced. */
export interface AnnounceModel {
  id: string;
  /** The honest ceiling: the most expensive serving node's price. */
  price: Price;
  context_window: number;
  nodes: number;
}

/** Where announcements come from (the registry in the router; a fixed source in tests). */
export interface AnnounceSource {
  models(): AnnounceModel[];
  status(): RouterStatus;
}

export interface AnnounceIdentity {
  secretKey: Uint8Array;
  name: string;
  /** The router's public base URL, e.g. https://router.example (the OpenAI API is at /v1). */
  publicUrl: string;
  about?: string | undefined;
  region?: string | undefined;
  features?: RouterCapabilities['features'];
}

export interface AnnounceSnapshot {
  models: AnnounceModel[];
  status: RouterStatus;
}

/** Reads the registry: per model the most expensive serving node's price, the largest context. */
export function registrySource(
  registry: Pick<Registry, 'all' | 'isServing' | 'models' | 'views'>,
  options: { acceptingOffload: () => boolean },
): AnnounceSource {
  return {
    models: () =>
      registry.models().map((m) => {
        const views = registry.views(m.id);
        const ceiling = views.reduce(
          (max, v) => ({
            input_msat_per_1k: Math.max(max.input_msat_per_1k, v.offer.price.input_msat_per_1k),
            output_msat_per_1k: Math.max(max.output_msat_per_1k, v.offer.price.output_msat_per_1k),
          }),
          m.price,
        );
        return { id: m.id, price: ceiling, context_window: m.context_window, nodes: m.nodes };
      }),
    status: () => {
      const serving = registry.all().filter((n) => registry.isServing(n));
      let free = 0;
      let capacity = 0;
      for (const node of serving) {
        const max = node.registration.capacity.max_concurrency;
        capacity += max;
        free += Math.max(0, Math.min(max, (node.heartbeat?.free_slots ?? max) - node.inFlight));
      }
      return {
        nodes_online: serving.length,
        free_slots: free,
        load: capacity === 0 ? 1 : Math.min(1, Math.max(0, 1 - free / capacity)),
        accepting_offload: options.acceptingOffload() && serving.length > 0,
      };
    },
  };
}

/** What counts as a change worth republishing: models, prices, and status at a coarse grain. */
export function announcementHash(snapshot: AnnounceSnapshot): string {
  const models = [...snapshot.models].sort((a, b) => a.id.localeCompare(b.id));
  const s = snapshot.status;
  return sha256Hex(
    JSON.stringify([
      models.map((m) => [
        m.id,
        m.price.input_msat_per_1k,
        m.price.output_msat_per_1k,
        m.context_window,
        m.nodes,
      ]),
      [s.nodes_online, s.accepting_offload, Math.round(s.load * 4) / 4],
    ]),
  );
}

/** The OpenAI-compatible base URL of a router. */
function openAiUrl(publicUrl: string): string {
  return `${publicUrl.replace(/\/+$/, '')}/v1`;
}

/** Signs every announcement for one snapshot (pure but for the signature). */
export function buildAnnouncements(
  snapshot: AnnounceSnapshot,
  identity: AnnounceIdentity,
  options: { nowS: number; expiresInS: number; maxModels?: number },
): SignedEvent[] {
  const { nowS, expiresInS } = options;
  const models = [...snapshot.models]
    .sort((a, b) => a.id.localeCompare(b.id))
    .slice(0, options.maxModels ?? ANNOUNCE_DEFAULTS.maxModels);
  const common = { nowS, expiresInS };
  const events: SignedEvent[] = [];
  const capabilities: RouterCapabilities = {
    name: identity.name,
    url: identity.publicUrl,
    models: models.map((m) => m.id),
    features: identity.features ?? ['openai', 'native', 'offload', 'auction'],
    ...(identity.region ? { region: identity.region } : {}),
  };
  events.push(
    createEnvelope(
      KIND.routerCapabilities,
      capabilities,
      { ...common, tags: [['d', ANNOUNCE_DEFAULTS.capabilitiesD]] },
      identity.secretKey,
    ),
  );
  for (const m of models) {
    events.push(
      createEnvelope(
        KIND.priceSheet,
        { model: m.id, price: m.price, context_window: m.context_window, nodes: m.nodes },
        { ...common, tags: [['d', m.id]] },
        identity.secretKey,
      ),
    );
  }
  events.push(
    createEnvelope(
      KIND.routerStatus,
      snapshot.status,
      { ...common, tags: [['d', ANNOUNCE_DEFAULTS.statusD]] },
      identity.secretKey,
    ),
  );
  // NIP-89 handler information: a standard kind with kind-0-style metadata, not a fed-ai payload.
  const url = openAiUrl(identity.publicUrl);
  events.push(
    finalizeEvent(
      {
        kind: KIND.handlerInfo,
        created_at: nowS,
        tags: [
          ['d', ANNOUNCE_DEFAULTS.handlerD],
          ['k', String(ANNOUNCE_DEFAULTS.textGenerationKind)],
          ['k', String(KIND.rfb)],
          ['web', url],
          ['r', url],
          ['expiration', String(nowS + expiresInS)],
        ],
        content: JSON.stringify({
          name: identity.name,
          about: identity.about ?? 'fed-ai router: OpenAI-compatible, paid per token in Lightning msat.',
          website: identity.publicUrl,
          openai_base_url: url,
        }),
      },
      identity.secretKey,
    ),
  );
  return events;
}

export interface Publisher {
  publish(event: SignedEvent): Promise<{ accepted: string[]; failed: { url: string; reason: string }[] }>;
  onReconnect(listener: (url: string) => void): () => void;
}

export interface AnnouncerOptions extends AnnounceIdentity {
  refreshS?: number;
  expiryFactor?: number;
  changeCheckMs?: number;
  logger: Logger;
  /** Heartbeats of the timer's checks (job `router_federation_announce`); none: they run bare. */
  jobs?: JobHeartbeats | undefined;
}

/** A publishing round that no relay took (not one event accepted). */
class NothingPublishedError extends Error {
  constructor(readonly events: number) {
    super(`no federation relay took any of the ${events} announcements`);
  }
}

export class Announcer {
  private lastHash: string | undefined;
  private lastPublishS = 0;
  private timer: NodeJS.Timeout | undefined;
  private unsubscribe: (() => void) | undefined;
  private running: Promise<void> = Promise.resolve();
  private readonly refreshS: number;
  private readonly expiryFactor: number;
  private readonly changeCheckMs: number;
  private readonly checkMs: number;
  private readonly job: JobHeartbeat | undefined;
  /** How many rounds were published (tests and metrics read it). */
  rounds = 0;

  constructor(
    private readonly publisher: Publisher,
    private readonly source: AnnounceSource,
    private readonly o: AnnouncerOptions,
  ) {
    this.refreshS = o.refreshS ?? ANNOUNCE_DEFAULTS.refreshS;
    this.expiryFactor = o.expiryFactor ?? ANNOUNCE_DEFAULTS.expiryFactor;
    this.changeCheckMs = o.changeCheckMs ?? ANNOUNCE_DEFAULTS.changeCheckMs;
    if (!(this.refreshS >= 1)) throw new Error('refreshS must be at least 1');
    this.checkMs = Math.min(this.changeCheckMs, this.refreshS * 1000);
    // A round waits on the relays' publish timeouts (a few seconds): the default timeout (1 min) fits.
    this.job = o.jobs?.job('router_federation_announce', { intervalMs: this.checkMs });
  }

  start(): void {
    this.unsubscribe = this.publisher.onReconnect(() => void this.publishNow());
    this.timer = setInterval(() => void this.tick(), this.checkMs);
    this.timer.unref();
    void this.publishNow();
  }

  /** Publishes every announcement now; rounds are serialised (never two at once). Never rejects. */
  publishNow(): Promise<void> {
    return this.publishRound().catch((error: unknown) => this.logFailure(error));
  }

  /** Republishes when what the announcements say changed, or when the refresh is due. Never throws. */
  async tick(): Promise<void> {
    try {
      await beating(this.job, () => this.check());
    } catch (error) {
      this.logFailure(error);
    }
  }

  private logFailure(error: unknown): void {
    // Relays that are down get the announcements again from the reconnect hook.
    if (error instanceof NothingPublishedError)
      this.o.logger.info({ events: error.events, accepted: 0 }, 'federation announcements not taken yet');
    else this.o.logger.warn({ err: error }, 'federation announcement round failed');
  }

  /** One check of the timer: rejects when the source throws or the round reached no relay. */
  private async check(): Promise<void> {
    const nowS = Math.floor(Date.now() / 1000);
    const hash = announcementHash(this.snapshot());
    if (hash !== this.lastHash || nowS - this.lastPublishS >= this.refreshS) await this.publishRound();
  }

  /** The round, queued after the one in progress; rejects with the round's error. */
  private publishRound(): Promise<void> {
    const round = this.running.then(() => this.round());
    this.running = round.catch(() => undefined);
    return round;
  }

  close(): void {
    if (this.timer) clearInterval(this.timer);
    this.unsubscribe?.();
  }

  private snapshot(): AnnounceSnapshot {
    return { models: this.source.models(), status: this.source.status() };
  }

  private async round(): Promise<void> {
    const snapshot = this.snapshot();
    const hash = announcementHash(snapshot);
    let nowS = Math.floor(Date.now() / 1000);
    // Addressable events of the same second keep the lower id (NIP-01): a change must be dated
    // after the version it replaces, or relays and peers might keep the old one.
    if (hash !== this.lastHash && nowS <= this.lastPublishS) nowS = this.lastPublishS + 1;
    const events = buildAnnouncements(snapshot, this.o, {
      nowS,
      expiresInS: this.refreshS * this.expiryFactor,
    });
    this.lastHash = hash;
    this.lastPublishS = Math.max(this.lastPublishS, nowS);
    const results = await Promise.all(events.map((e) => this.publisher.publish(e)));
    const accepted = results.filter((r) => r.accepted.length > 0).length;
    this.rounds += 1;
    if (accepted === 0 && events.length > 0) throw new NothingPublishedError(events.length);
    if (accepted < events.length) {
      this.o.logger.info({ events: events.length, accepted }, 'federation announcements not all taken yet');
    }
  }
}
