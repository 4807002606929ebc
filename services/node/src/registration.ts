// Registration and heartbeats: the node announces itself to each router with signed envelopes
// and keeps doing so. Transient failures back off exponentially with jitter; a refusal that cannot
// heal by waiting (private or taken endpoint, not admitted, banned...) is logged once with its fix
// and that router is not tried again. On stop, a last heartbeat says `ready: false`, so routers stop
// sending work at once. The loop never throws.
// Each contact with a router is one run of the `node_registration` job (kit's job-heartbeat.ts):
// a run that the router refused or that failed counts as an error, one past its timeout as a
// timeout, so a node whose heartbeats stopped reaching every router raises FedaiJobStopped.

import { randomBytes } from 'node:crypto';
import { beating, type JobHeartbeat, type JobHeartbeats } from '@fed-ai/kit';
import {
  createEnvelope,
  isReasonCode,
  KIND,
  type ModelOffer,
  type NodeHeartbeat,
  type NodeRegistration,
  REQUEST_AUTH,
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
  /** Heartbeats of the loop (job `node_registration`); none: the loop runs bare. */
  jobs?: JobHeartbeats;
}

interface RouterState {
  url: string;
  pubkey: string | undefined;
  registered: boolean;
  failures: number;
  timer: NodeJS.Timeout | null;
  /** Set when the router refused this node for good: no more tries. */
  refused: RegistrationRefusal | null;
}

export interface RegistrationRefusal {
  router: string;
  code: string;
  /** What the operator should do, in one sentence. */
  fix: string;
}

const REQUEST_TIMEOUT_MS = 5_000;
const FAREWELL_TIMEOUT_MS = 5_000;
/** One contact is at most two requests (learn the key, then register or beat), each bounded. */
const CONTACT_TIMEOUT_MS = 3 * REQUEST_TIMEOUT_MS;

/**
 * Refusals that waiting does not heal, with the fix to print. Anything else (network errors, 5xx,
 * RATE_LIMITED, OVERLOADED, ENDPOINT_UNVERIFIED while the endpoint may still be coming up, STALE
 * clocks) is retried with backoff.
 */
const PERMANENT_FIX: Readonly<Record<string, string>> = {
  PRIVATE_ENDPOINT:
    'the router refuses private endpoints: set ALLOW_PRIVATE_ENDPOINTS=true on the router, or give NODE_PUBLIC_URL a public address',
  BAD_ENDPOINT:
    'the router refuses the endpoint URL: set NODE_PUBLIC_URL to http(s)://host[:port][/path] without query, fragment or credentials',
  ENDPOINT_TAKEN:
    'another key already registered this endpoint at the router: give this node its own NODE_PUBLIC_URL, or start it with that key (NODE_KEY_FILE)',
  NODE_NOT_ALLOWED:
    "the router admits only nodes on its NODE_ALLOWLIST: ask its operator to add this node's key",
  NODE_BANNED: "the router's operator banned this node: contact the operator",
  FORBIDDEN: 'the router refuses this node: ask its operator for access',
  WRONG_AUDIENCE:
    "the router's key is not the one in ROUTER_PUBKEYS for this URL: fix ROUTER_PUBKEYS (same order as ROUTER_URLS) or leave it unset to learn the key on first contact",
  BAD_SIGNATURE:
    'the router cannot verify this node (different protocol version?): update fed-ai on the node or the router',
  BAD_SHAPE:
    'the router cannot read this node (different protocol version?): update fed-ai on the node or the router',
  BAD_PAYLOAD:
    'the router cannot read this node (different protocol version?): update fed-ai on the node or the router',
  UNKNOWN_KIND:
    'the router cannot read this node (different protocol version?): update fed-ai on the node or the router',
  NOT_FOUND: 'this URL has no node registration route: check that ROUTER_URLS names a fed-ai router',
  METHOD_NOT_ALLOWED: 'this URL has no node registration route: check that ROUTER_URLS names a fed-ai router',
};

/** The refusal's fix when `code` cannot heal by retrying, else null. */
function permanentRefusalFix(code: string | undefined): string | null {
  return code ? (PERMANENT_FIX[code] ?? null) : null;
}

class RouterRefusedError extends Error {
  constructor(
    readonly status: number,
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

export class RegistrationLoop {
  private readonly routers: RouterState[];
  private stopped = false;
  private readonly job: JobHeartbeat | undefined;

  constructor(private readonly deps: RegistrationDeps) {
    const intervalMs = deps.intervalS * 1000;
    // One job for every router: each contact beats. Retries back off up to maxBackoffMs, so the
    // job is overdue only after a few intervals (and backoffs) without any router answering.
    this.job = deps.jobs?.job('node_registration', {
      intervalMs,
      timeoutMs: CONTACT_TIMEOUT_MS,
      overdueAfterMs: Math.max(3 * intervalMs, 2 * (deps.maxBackoffMs ?? 30_000)) + CONTACT_TIMEOUT_MS,
    });
    this.routers = deps.routerUrls.map((url, i) => ({
      url: url.replace(/\/+$/, ''),
      pubkey: deps.routerPubkeys[i],
      registered: false,
      failures: 0,
      timer: null,
      refused: null,
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

  /**
   * Stops the loop and tells every router that accepted us that we are going: one signed heartbeat
   * with `ready: false` (the router stops routing to us at once instead of after its TTL). Waits
   * at most FAREWELL_TIMEOUT_MS per router, all in parallel; failures are only logged.
   */
  async stopAndSayGoodbye(): Promise<void> {
    this.stop();
    await Promise.all(
      this.routers
        .filter((r) => r.registered && r.pubkey)
        .map(async (router) => {
          const payload: NodeHeartbeat = { ...this.deps.heartbeat(), ready: false, free_slots: 0 };
          try {
            await this.post(
              router,
              '/v1/nodes/heartbeat',
              createEnvelope(
                KIND.nodeHeartbeat,
                payload,
                heartbeatOptions(router.pubkey),
                this.deps.secretKey,
              ),
              { timeoutMs: FAREWELL_TIMEOUT_MS },
            );
          } catch (error) {
            this.deps.logger.warn(
              { router: router.url, err: (error as Error).message },
              'could not tell the router this node is stopping',
            );
          }
        }),
    );
  }

  /** Routers that refused this node for good (each logged once with its fix). */
  refusals(): RegistrationRefusal[] {
    return this.routers.flatMap((r) => (r.refused ? [r.refused] : []));
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
      const done = await beating(this.job, (signal) => this.contact(router, signal));
      // Skipped: earlier contacts still hang past their timeout; try again after a backoff.
      if (done === undefined) throw new Error('earlier router contacts still hang; contact skipped');
      router.failures = 0;
      this.schedule(router, this.deps.intervalS * 1000);
    } catch (error) {
      this.failed(router, error);
    }
  }

  /** One contact: learn the router's key if needed, then register or send a heartbeat. */
  private async contact(router: RouterState, signal: AbortSignal): Promise<true> {
    if (!router.pubkey) {
      router.pubkey = await this.learnRouterKey(router.url, signal);
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
        auth: [...REQUEST_AUTH],
      };
      await this.post(
        router,
        '/v1/nodes/register',
        createEnvelope(KIND.nodeRegistration, payload, { audience: router.pubkey }, this.deps.secretKey),
        { signal },
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
          heartbeatOptions(router.pubkey),
          this.deps.secretKey,
        ),
        { signal },
      );
    }
    return true;
  }

  private failed(router: RouterState, error: unknown): void {
    router.failures += 1;
    const status = (error as { status?: number }).status;
    const code = error instanceof RouterRefusedError ? error.code : undefined;
    // A router that forgot us (restart, TTL) answers 404 NODE_NOT_REGISTERED: register again.
    if (router.registered && status === 404) {
      router.registered = false;
    } else {
      const fix = error instanceof RouterRefusedError ? permanentRefusalFix(code ?? notFound(status)) : null;
      if (fix) {
        router.refused = { router: router.url, code: code ?? 'NOT_FOUND', fix };
        this.deps.logger.error(
          { router: router.url, code: router.refused.code },
          `router ${router.url} refuses this node (${router.refused.code}), not retrying: ${fix}`,
        );
        return;
      }
    }
    const base = Math.min(this.deps.maxBackoffMs ?? 30_000, 500 * 2 ** Math.min(router.failures, 10));
    const delay = Math.round(base * (0.5 + Math.random() / 2));
    this.deps.logger.warn(
      { router: router.url, failures: router.failures, retry_ms: delay, err: (error as Error).message },
      'router contact failed',
    );
    this.schedule(router, delay);
  }

  private async learnRouterKey(url: string, signal: AbortSignal): Promise<string> {
    const response = await request(`${url}/v1/router`, {
      signal: AbortSignal.any([signal, AbortSignal.timeout(REQUEST_TIMEOUT_MS)]),
    });
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

  private async post(
    router: RouterState,
    path: string,
    envelope: unknown,
    options: { timeoutMs?: number; signal?: AbortSignal } = {},
  ): Promise<void> {
    const timeout = AbortSignal.timeout(options.timeoutMs ?? REQUEST_TIMEOUT_MS);
    const response = await request(`${router.url}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(envelope),
      // The job's signal aborts a contact abandoned past its timeout.
      signal: options.signal ? AbortSignal.any([options.signal, timeout]) : timeout,
    });
    const text = await response.body.text();
    if (response.statusCode >= 300) {
      const code = reasonCodeOf(text);
      throw new RouterRefusedError(
        response.statusCode,
        code,
        `${path} answered ${response.statusCode}${code ? ` ${code}` : ''}`,
      );
    }
  }
}

/** The reason code of a fed-ai error body `{error:{code}}`, if the text is one. */
function reasonCodeOf(text: string): string | undefined {
  try {
    const code = (JSON.parse(text) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' && isReasonCode(code) ? code : undefined;
  } catch {
    return undefined;
  }
}

/** A bare 404/405 (no fed-ai error body) on registration: the URL is not a fed-ai router. */
function notFound(status: number | undefined): string | undefined {
  return status === 404 ? 'NOT_FOUND' : status === 405 ? 'METHOD_NOT_ALLOWED' : undefined;
}

/**
 * A heartbeat carries a nonce: replicas of one router share its key and replay store, so two
 * identical heartbeats signed in one second (one to each replica) would otherwise be one event.
 */
function heartbeatOptions(routerPubkey: string | undefined) {
  return { audience: routerPubkey, tags: [['nonce', randomBytes(8).toString('hex')]] };
}
