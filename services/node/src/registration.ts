// Registration and heartbeats: the node announces itself to each router with signed envelopes
// and keeps doing so. Failures back off exponentially with jitter; the loop never throws.
import {
  createEnvelope,
  KIND,
  type ModelOffer,
  type NodeHeartbeat,
  type NodeRegistration,
} from '@fed-ai/protocol';
import type { Logger } from 'pino';
import { request } from 'undici';

export interface RegistrationDeps {
  secretKey: Uint8Array;
  routerUrls: string[];
  /** Known router keys by URL (from config); others are learned from GET /v1/router (trust on first use). */
  routerPubkeys: string[];
  endpoint: string;
  offers: () => ModelOffer[];
  capacity: NodeRegistration['capacity'];
  region?: string | undefined;
  heartbeat: () => NodeHeartbeat;
  intervalS: number;
  /** Called when a router key becomes known, so the server accepts its requests. */
  onRouterKey: (pubkey: string) => void;
  logger: Logger;
  maxBackoffMs?: number;
}

interface RouterState {
  url: string;
  pubkey: string | undefined;
  registered: boolean;
  failures: number;
  timer: NodeJS.Timeout | null;
}

const REQUEST_TIMEOUT_MS = 5_000;

export class RegistrationLoop {
  private readonly routers: RouterState[];
  private stopped = false;

  constructor(private readonly deps: RegistrationDeps) {
    this.routers = deps.routerUrls.map((url, i) => ({
      url: url.replace(/\/+$/, ''),
      pubkey: deps.routerPubkeys[i],
      registered: false,
      failures: 0,
      timer: null,
    }));
    for (const r of this.routers) if (r.pubkey) deps.onRouterKey(r.pubkey);
  }

  start(): void {
    for (const router of this.routers) this.schedule(router, 0);
  }

  stop(): void {
    this.stopped = true;
    for (const r of this.routers) if (r.timer) clearTimeout(r.timer);
  }

  /** True once every router accepted the registration at least once. */
  get allRegistered(): boolean {
    return this.routers.every((r) => r.registered);
  }

  private schedule(router: RouterState, delayMs: number): void {
    if (this.stopped) return;
    router.timer = setTimeout(() => void this.tick(router), delayMs);
    router.timer.unref();
  }

  private async tick(router: RouterState): Promise<void> {
    try {
      if (!router.pubkey) {
        router.pubkey = await this.learnRouterKey(router.url);
        this.deps.onRouterKey(router.pubkey);
        this.deps.logger.info(
          { router: router.url, pubkey: router.pubkey },
          'trusting router key on first contact',
        );
      }
      if (!router.registered) {
        const payload: NodeRegistration = {
          endpoint: this.deps.endpoint,
          models: this.deps.offers(),
          capacity: this.deps.capacity,
          ...(this.deps.region ? { region: this.deps.region } : {}),
          software: 'fed-ai-node/0.1.0',
        };
        await this.post(
          router,
          '/v1/nodes/register',
          createEnvelope(KIND.nodeRegistration, payload, { audience: router.pubkey }, this.deps.secretKey),
        );
        router.registered = true;
        this.deps.logger.info({ router: router.url }, 'registered');
      } else {
        await this.post(
          router,
          '/v1/nodes/heartbeat',
          createEnvelope(
            KIND.nodeHeartbeat,
            this.deps.heartbeat(),
            { audience: router.pubkey },
            this.deps.secretKey,
          ),
        );
      }
      router.failures = 0;
      this.schedule(router, this.deps.intervalS * 1000);
    } catch (error) {
      router.failures += 1;
      const status = (error as { status?: number }).status;
      // A router that forgot us (restart, TTL) answers 404: register again.
      if (status === 404) router.registered = false;
      const base = Math.min(this.deps.maxBackoffMs ?? 30_000, 500 * 2 ** Math.min(router.failures, 10));
      const delay = Math.round(base * (0.5 + Math.random() / 2));
      this.deps.logger.warn(
        { router: router.url, failures: router.failures, retry_ms: delay, err: (error as Error).message },
        'router contact failed',
      );
      this.schedule(router, delay);
    }
  }

  private async learnRouterKey(url: string): Promise<string> {
    const response = await request(`${url}/v1/router`, { signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS) });
    const body = (await response.body.json()) as { pubkey?: unknown };
    if (
      response.statusCode !== 200 ||
      typeof body.pubkey !== 'string' ||
      !/^[0-9a-f]{64}$/.test(body.pubkey)
    ) {
      throw Object.assign(new Error(`GET /v1/router answered ${response.statusCode}`), {
        status: response.statusCode,
      });
    }
    return body.pubkey;
  }

  private async post(router: RouterState, path: string, envelope: unknown): Promise<void> {
    const response = await request(`${router.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(envelope),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
    });
    const text = await response.body.text();
    if (response.statusCode >= 300) {
      throw Object.assign(new Error(`${path} answered ${response.statusCode}: ${text.slice(0, 200)}`), {
        status: response.statusCode,
      });
    }
  }
}
