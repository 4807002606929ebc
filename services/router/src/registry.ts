// The node registry: who may serve, where, what, and how healthy. A node id IS its public key,
// so only the holder of that key can register or update it, and an endpoint belongs to one node
// (compared by its normalised uniqueness key). A new node, or a changed endpoint, must prove control
// of the endpoint (endpoint-proof.ts); registrations are bounded overall, per minute and per source
// IP; and new nodes start on probation, where the scheduler gives them a bounded share of traffic.
import type { Db } from '@fed-ai/kit';
import { checkEndpoint, type Lookup, normaliseEndpoint } from '@fed-ai/kit';
import {
  KIND,
  type NodeHeartbeat,
  type NodeRegistration,
  type ReasonCode,
  type ReplayStore,
  verifyEnvelope,
} from '@fed-ai/protocol';
import type { EndpointProver } from './endpoint-proof';
import { DEFAULT_HEALTH_CONFIG, type HealthConfig, isHeartbeatFresh, NodeHealth } from './health';
import type { NodeView } from './scheduler-types';

/**
 * A node's free slots as this router can tell (queue room counts too: a node with free queue
 * slots can still take work). The heartbeat's running count already held this router's requests
 * of that moment, so only the other routers' share of it is added to this router's own count now
 * (counting ours twice refused work from nodes with room: the simulator found it, docs/simulator.md).
 */
export function estimateFreeSlots(
  capacity: { max_concurrency: number; queue_max: number },
  reportedFree: number | undefined,
  inFlight: number,
  inFlightAtHeartbeat: number,
): number {
  const room = capacity.max_concurrency + capacity.queue_max;
  if (reportedFree === undefined) return Math.max(0, room - inFlight);
  const othersRunning = Math.max(0, capacity.max_concurrency - reportedFree - inFlightAtHeartbeat);
  return Math.max(0, room - othersRunning - inFlight);
}

export interface NodeRecord {
  id: string;
  endpoint: string;
  registration: NodeRegistration;
  heartbeat: NodeHeartbeat | undefined;
  lastSeenMs: number;
  health: NodeHealth;
  /** Requests this router has in flight to the node. */
  inFlight: number;
  /** This router's in-flight count when the last heartbeat arrived (the heartbeat counted them). */
  inFlightAtHeartbeat: number;
  banned: boolean;
  /** Uniqueness key of the endpoint (normaliseEndpoint). */
  endpointKey: string;
  /** On probation until this time unless it has served `probationRequests` successfully first. */
  probationUntilMs: number;
}

/** NodeHealth that also counts successful requests (what ends probation early). */
export class CountingHealth extends NodeHealth {
  successes = 0;

  constructor(config: HealthConfig = DEFAULT_HEALTH_CONFIG, nowMs = 0) {
    super(config, nowMs);
  }

  override recordSuccess(
    nowMs: number,
    sample: { ttftMs?: number; tokensPerS?: number; latencyMs?: number },
  ): void {
    this.successes = Math.min(Number.MAX_SAFE_INTEGER, this.successes + 1);
    super.recordSuccess(nowMs, sample);
  }
}

export const REGISTRATION_DEFAULTS = {
  registrationsPerIpPerHour: 30,
  registrationsPerMin: 60,
  probationMs: 24 * 3600 * 1000,
  probationRequests: 20,
  /** Source IPs remembered for the hourly limit; when full and none expired, new IPs are refused. */
  maxTrackedIps: 10_000,
} as const;

export interface RegistryOptions {
  db: Db;
  routerPubkey: string;
  replayStore: ReplayStore;
  allowPrivateEndpoints: boolean;
  nodeAllowlist: string[];
  heartbeatTtlMs: number;
  maxNodes: number;
  /** Proves endpoint control for new nodes and changed endpoints. Without one, none is accepted. */
  proveEndpoint?: EndpointProver;
  registrationsPerIpPerHour?: number;
  registrationsPerMin?: number;
  probationMs?: number;
  probationRequests?: number;
  maxTrackedIps?: number;
  lookup?: Lookup;
  now?: () => number;
}

/** Fixed-window counters for registration attempts: overall per minute and per source IP per hour. */
export class RegistrationLimiter {
  private minuteStartMs = 0;
  private minuteCount = 0;
  private readonly perIp = new Map<string, { startMs: number; count: number }>();

  constructor(private readonly limits: { perIpPerHour: number; perMin: number; maxTrackedIps: number }) {}

  /** Counts one attempt from `ip`; returns why it is refused, or null when admitted. */
  admit(ip: string, nowMs: number): string | null {
    if (nowMs - this.minuteStartMs >= 60_000) {
      this.minuteStartMs = nowMs;
      this.minuteCount = 0;
    }
    if (this.minuteCount >= this.limits.perMin) return `over ${this.limits.perMin} registrations a minute`;
    let entry = this.perIp.get(ip);
    if (entry && nowMs - entry.startMs >= 3_600_000) entry = undefined;
    if (!entry) {
      if (this.perIp.size >= this.limits.maxTrackedIps) {
        for (const [key, value] of this.perIp) if (nowMs - value.startMs >= 3_600_000) this.perIp.delete(key);
        if (this.perIp.size >= this.limits.maxTrackedIps) return 'too many registering addresses';
      }
      entry = { startMs: nowMs, count: 0 };
      this.perIp.set(ip, entry);
    }
    if (entry.count >= this.limits.perIpPerHour)
      return `over ${this.limits.perIpPerHour} registrations an hour from this address`;
    entry.count += 1;
    this.minuteCount += 1;
    return null;
  }

  get trackedIps(): number {
    return this.perIp.size;
  }
}

export type RegistryResult = { ok: true; node: NodeRecord } | { ok: false; code: ReasonCode; detail: string };

export class Registry {
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly byModel = new Map<string, Map<string, NodeRecord>>();
  private readonly byEndpoint = new Map<string, string>();
  readonly now: () => number;
  private readonly limiter: RegistrationLimiter;
  private readonly probationMs: number;
  private readonly probationRequests: number;

  constructor(private readonly options: RegistryOptions) {
    this.now = options.now ?? Date.now;
    this.limiter = new RegistrationLimiter({
      perIpPerHour: options.registrationsPerIpPerHour ?? REGISTRATION_DEFAULTS.registrationsPerIpPerHour,
      perMin: options.registrationsPerMin ?? REGISTRATION_DEFAULTS.registrationsPerMin,
      maxTrackedIps: options.maxTrackedIps ?? REGISTRATION_DEFAULTS.maxTrackedIps,
    });
    this.probationMs = options.probationMs ?? REGISTRATION_DEFAULTS.probationMs;
    this.probationRequests = options.probationRequests ?? REGISTRATION_DEFAULTS.probationRequests;
  }

  /**
   * Loads registered nodes from the database; new ones count as unseen until their next heartbeat.
   * Run again periodically (router.ts, NODE_RELOAD_MS), it takes in what other replicas wrote:
   * new registrations, changed endpoints, models and prices, and bans. Health, heartbeats and
   * in-flight counts stay this replica's own.
   */
  async load(): Promise<void> {
    const rows = await this.options.db.query<{
      id: string;
      endpoint: string;
      registration: NodeRegistration;
      banned: boolean;
      registered_ms: string | number;
    }>(
      `SELECT id, endpoint, registration, banned,
              (EXTRACT(EPOCH FROM registered_at) * 1000)::BIGINT AS registered_ms FROM nodes`,
    );
    for (const row of rows.rows) {
      const current = this.nodes.get(row.id);
      // No unban exists: a reload that read before a local ban committed must not undo it.
      if (current && (row.banned || current.banned)) current.banned = true;
      if (current && current.endpoint === row.endpoint && sameJson(current.registration, row.registration))
        continue;
      const form = normaliseEndpoint(row.endpoint);
      const endpointKey = form.ok ? form.key : row.endpoint;
      if (current) {
        this.update(current, row.endpoint, row.registration, endpointKey);
        continue;
      }
      this.put({
        id: row.id,
        endpoint: row.endpoint,
        registration: row.registration,
        banned: row.banned,
        heartbeat: undefined,
        lastSeenMs: 0,
        health: new CountingHealth(DEFAULT_HEALTH_CONFIG),
        inFlight: 0,
        inFlightAtHeartbeat: 0,
        endpointKey,
        probationUntilMs: Number(row.registered_ms) + this.probationMs,
      });
    }
  }

  /** Changes a known node in place: leases in flight hold this object and count on it. */
  private update(
    node: NodeRecord,
    endpoint: string,
    registration: NodeRegistration,
    endpointKey: string,
  ): void {
    this.nodes.set(node.id, { ...node }); // what put() unindexes
    node.endpoint = endpoint;
    node.registration = registration;
    node.endpointKey = endpointKey;
    this.put(node);
  }

  get size(): number {
    return this.nodes.size;
  }

  get(id: string): NodeRecord | undefined {
    return this.nodes.get(id);
  }

  all(): NodeRecord[] {
    return [...this.nodes.values()];
  }

  /** Whether the node is still on probation (new, and has not yet served enough requests). */
  isOnProbation(node: NodeRecord, nowMs = this.now()): boolean {
    const successes = node.health instanceof CountingHealth ? node.health.successes : 0;
    return nowMs < node.probationUntilMs && successes < this.probationRequests;
  }

  async register(raw: string, context: { sourceIp?: string } = {}): Promise<RegistryResult> {
    const verified = await verifyEnvelope(raw, {
      me: this.options.routerPubkey,
      kinds: [KIND.nodeRegistration],
      replayStore: this.options.replayStore,
    });
    if (!verified.ok) return { ok: false, code: verified.code, detail: verified.detail };
    const id = verified.envelope.pubkey;
    const registration = verified.payload;
    // A challenge answer is not a registration, even though it has the same kind.
    if (verified.envelope.tags.some((t) => t[0] === 'challenge'))
      return { ok: false, code: 'BAD_PAYLOAD', detail: 'a challenge answer is not a registration' };
    if (this.options.nodeAllowlist.length > 0 && !this.options.nodeAllowlist.includes(id)) {
      return { ok: false, code: 'NODE_NOT_ALLOWED', detail: 'not on NODE_ALLOWLIST' };
    }
    const existing = this.nodes.get(id);
    if (existing?.banned) return { ok: false, code: 'NODE_BANNED', detail: 'banned' };
    const endpointCheck = await checkEndpoint(registration.endpoint, {
      allowPrivate: this.options.allowPrivateEndpoints,
      ...(this.options.lookup ? { lookup: this.options.lookup } : {}),
    });
    if (!endpointCheck.ok) return { ok: false, code: endpointCheck.code, detail: endpointCheck.detail };
    const { endpoint, key: endpointKey } = endpointCheck;
    const ownerId = this.byEndpoint.get(endpointKey);
    if (ownerId !== undefined && ownerId !== id)
      return { ok: false, code: 'ENDPOINT_TAKEN', detail: `endpoint belongs to ${ownerId.slice(0, 16)}…` };
    if (!existing && this.nodes.size >= this.options.maxNodes)
      return { ok: false, code: 'OVERLOADED', detail: 'registry full' };
    if (!existing || existing.endpointKey !== endpointKey) {
      // New node or moved endpoint: count the attempt, then make it prove the endpoint is its own.
      const limited = this.limiter.admit(context.sourceIp ?? 'unknown', this.now());
      if (limited) return { ok: false, code: 'RATE_LIMITED', detail: limited };
      if (!this.options.proveEndpoint)
        return { ok: false, code: 'ENDPOINT_UNVERIFIED', detail: 'this router cannot verify endpoints' };
      const proof = await this.options.proveEndpoint(endpoint, id);
      if (!proof.ok) return proof;
      // The proof took time: someone else may have taken the endpoint or the last slot meanwhile.
      const raced = this.byEndpoint.get(endpointKey);
      if (raced !== undefined && raced !== id)
        return { ok: false, code: 'ENDPOINT_TAKEN', detail: `endpoint belongs to ${raced.slice(0, 16)}…` };
      if (!this.nodes.has(id) && this.nodes.size >= this.options.maxNodes)
        return { ok: false, code: 'OVERLOADED', detail: 'registry full' };
    }

    await this.options.db.query(
      `INSERT INTO nodes (id, endpoint, registration) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET endpoint = EXCLUDED.endpoint, registration = EXCLUDED.registration, registered_at = now()`,
      [id, endpoint, JSON.stringify(registration)],
    );
    const current = this.nodes.get(id);
    const record: NodeRecord = {
      id,
      endpoint,
      registration,
      heartbeat: current?.heartbeat,
      lastSeenMs: this.now(),
      health: current?.health ?? new CountingHealth(DEFAULT_HEALTH_CONFIG, this.now()),
      inFlight: current?.inFlight ?? 0,
      inFlightAtHeartbeat: current?.inFlightAtHeartbeat ?? 0,
      banned: false,
      endpointKey,
      probationUntilMs: current?.probationUntilMs ?? this.now() + this.probationMs,
    };
    this.put(record);
    return { ok: true, node: record };
  }

  async heartbeat(raw: string): Promise<RegistryResult> {
    const verified = await verifyEnvelope(raw, {
      me: this.options.routerPubkey,
      kinds: [KIND.nodeHeartbeat],
      replayStore: this.options.replayStore,
    });
    if (!verified.ok) return { ok: false, code: verified.code, detail: verified.detail };
    const node = this.nodes.get(verified.envelope.pubkey);
    if (!node) return { ok: false, code: 'NODE_NOT_REGISTERED', detail: 'register first' };
    if (node.banned) return { ok: false, code: 'NODE_BANNED', detail: 'banned' };
    node.heartbeat = verified.payload;
    node.inFlightAtHeartbeat = node.inFlight;
    node.lastSeenMs = this.now();
    return { ok: true, node };
  }

  async ban(id: string): Promise<boolean> {
    const node = this.nodes.get(id);
    await this.options.db.query('UPDATE nodes SET banned = true WHERE id = $1', [id]);
    if (!node) return false;
    node.banned = true;
    return true;
  }

  /** Whether the node is fresh, not banned, and its breaker lets requests through. */
  isServing(node: NodeRecord, nowMs = this.now()): boolean {
    return (
      !node.banned &&
      isHeartbeatFresh(node.lastSeenMs, nowMs, this.options.heartbeatTtlMs) &&
      node.heartbeat?.ready !== false &&
      node.health.wouldAccept(nowMs)
    );
  }

  /** Scheduler views of the serving nodes that offer `model` (only that model's nodes are visited). */
  views(model: string, nowMs = this.now()): NodeView[] {
    const views: NodeView[] = [];
    for (const node of this.byModel.get(model)?.values() ?? []) {
      if (!this.isServing(node, nowMs)) continue;
      const offer = node.registration.models.find((m) => m.id === model)!;
      const snap = node.health.snapshot();
      views.push({
        id: node.id,
        endpoint: node.endpoint,
        region: node.registration.region,
        offer,
        maxConcurrency: node.registration.capacity.max_concurrency,
        freeSlots: estimateFreeSlots(
          node.registration.capacity,
          node.heartbeat?.free_slots,
          node.inFlight,
          node.inFlightAtHeartbeat,
        ),
        stats: {
          ttftMs: snap.ttftMs ?? node.heartbeat?.stats?.ttft_ms,
          tokensPerS: snap.tokensPerS ?? node.heartbeat?.stats?.tokens_per_s,
          latencyMs: snap.latencyMs,
          successRate: snap.successRate,
        },
        trust: trustOf(
          this.isOnProbation(node, nowMs),
          node.health instanceof CountingHealth ? node.health.successes : 0,
          this.probationRequests,
        ),
        probation: this.isOnProbation(node, nowMs),
      });
    }
    return views;
  }

  /** Models on the network: serving nodes, cheapest price, largest context. */
  models(nowMs = this.now()): {
    id: string;
    nodes: number;
    context_window: number;
    price: { input_msat_per_1k: number; output_msat_per_1k: number };
    demo: boolean;
  }[] {
    const out = [];
    for (const [model, nodes] of this.byModel) {
      const serving = [...nodes.values()].filter((n) => this.isServing(n, nowMs));
      if (serving.length === 0) continue;
      const offers = serving.map((n) => n.registration.models.find((m) => m.id === model)!);
      const cheapest = offers.reduce((a, b) =>
        a.price.input_msat_per_1k + a.price.output_msat_per_1k <=
        b.price.input_msat_per_1k + b.price.output_msat_per_1k
          ? a
          : b,
      );
      out.push({
        id: model,
        nodes: serving.length,
        context_window: Math.max(...offers.map((o) => o.context_window)),
        price: cheapest.price,
        demo: offers.some((o) => o.demo === true),
      });
    }
    return out.sort((a, b) => a.id.localeCompare(b.id));
  }

  private put(record: NodeRecord): void {
    const previous = this.nodes.get(record.id);
    if (previous) {
      for (const m of previous.registration.models) this.byModel.get(m.id)?.delete(record.id);
      if (this.byEndpoint.get(previous.endpointKey) === record.id)
        this.byEndpoint.delete(previous.endpointKey);
    }
    this.nodes.set(record.id, record);
    this.byEndpoint.set(record.endpointKey, record.id);
    for (const m of record.registration.models) {
      let map = this.byModel.get(m.id);
      if (!map) {
        map = new Map();
        this.byModel.set(m.id, map);
      }
      map.set(record.id, record);
    }
  }
}

/** Equal as JSON values, whatever the key order (JSONB comes back with its own key order). */
function sameJson(a: unknown, b: unknown): boolean {
  return canonical(a) === canonical(b);
}

function canonical(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value && typeof value === 'object')
    return `{${Object.keys(value)
      .filter((k) => (value as Record<string, unknown>)[k] !== undefined)
      .sort()
      .map((k) => `${JSON.stringify(k)}:${canonical((value as Record<string, unknown>)[k])}`)
      .join(',')}}`;
  return JSON.stringify(value) ?? 'null';
}

/**
 * How much the router trusts a node, 0..1 (the scheduler's trust term and `min_trust` filter): an
 * established node 1; a node on probation 0.25, rising with each verified answer to 0.75. The
 * scheduler further scales it by the node's recent success rate.
 */
export function trustOf(probation: boolean, successes: number, probationRequests: number): number {
  if (!probation) return 1;
  const earned = probationRequests > 0 ? Math.min(1, successes / probationRequests) : 1;
  return 0.25 + 0.5 * earned;
}
