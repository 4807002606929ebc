// The node registry: who may serve, where, what, and how healthy. A node id IS its public key,
// so only the holder of that key can register or update it, and an endpoint belongs to one node.
import type { Db } from '@fed-ai/kit';
import {
  KIND,
  type NodeHeartbeat,
  type NodeRegistration,
  type ReasonCode,
  type ReplayStore,
  verifyEnvelope,
} from '@fed-ai/protocol';
import { checkEndpoint, type Lookup } from './endpoint-safety';
import { DEFAULT_HEALTH_CONFIG, isHeartbeatFresh, NodeHealth } from './health';
import type { NodeView } from './scheduler-types';

export interface NodeRecord {
  id: string;
  endpoint: string;
  registration: NodeRegistration;
  heartbeat: NodeHeartbeat | undefined;
  lastSeenMs: number;
  health: NodeHealth;
  /** Requests this router has in flight to the node. */
  inFlight: number;
  banned: boolean;
}

export interface RegistryOptions {
  db: Db;
  routerPubkey: string;
  replayStore: ReplayStore;
  allowPrivateEndpoints: boolean;
  nodeAllowlist: string[];
  heartbeatTtlMs: number;
  maxNodes: number;
  lookup?: Lookup;
  now?: () => number;
}

export type RegistryResult = { ok: true; node: NodeRecord } | { ok: false; code: ReasonCode; detail: string };

export class Registry {
  private readonly nodes = new Map<string, NodeRecord>();
  private readonly byModel = new Map<string, Map<string, NodeRecord>>();
  private readonly now: () => number;

  constructor(private readonly options: RegistryOptions) {
    this.now = options.now ?? Date.now;
  }

  /** Loads registered nodes from the database; they count as unseen until their next heartbeat. */
  async load(): Promise<void> {
    const rows = await this.options.db.query<{
      id: string;
      endpoint: string;
      registration: NodeRegistration;
      banned: boolean;
    }>('SELECT id, endpoint, registration, banned FROM nodes');
    for (const row of rows.rows)
      this.put({
        ...row,
        heartbeat: undefined,
        lastSeenMs: 0,
        health: new NodeHealth(DEFAULT_HEALTH_CONFIG),
        inFlight: 0,
      });
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

  async register(raw: string): Promise<RegistryResult> {
    const verified = await verifyEnvelope(raw, {
      me: this.options.routerPubkey,
      kinds: [KIND.nodeRegistration],
      replayStore: this.options.replayStore,
    });
    if (!verified.ok) return { ok: false, code: verified.code, detail: verified.detail };
    const id = verified.envelope.pubkey;
    const registration = verified.payload;
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
    const endpoint = endpointCheck.url.href.replace(/\/+$/, '');
    const owner = [...this.nodes.values()].find((n) => n.endpoint === endpoint && n.id !== id);
    if (owner)
      return { ok: false, code: 'ENDPOINT_TAKEN', detail: `endpoint belongs to ${owner.id.slice(0, 16)}…` };
    if (!existing && this.nodes.size >= this.options.maxNodes)
      return { ok: false, code: 'OVERLOADED', detail: 'registry full' };

    await this.options.db.query(
      `INSERT INTO nodes (id, endpoint, registration) VALUES ($1, $2, $3)
       ON CONFLICT (id) DO UPDATE SET endpoint = EXCLUDED.endpoint, registration = EXCLUDED.registration, registered_at = now()`,
      [id, endpoint, JSON.stringify(registration)],
    );
    const record: NodeRecord = {
      id,
      endpoint,
      registration,
      heartbeat: existing?.heartbeat,
      lastSeenMs: this.now(),
      health: existing?.health ?? new NodeHealth(DEFAULT_HEALTH_CONFIG, this.now()),
      inFlight: existing?.inFlight ?? 0,
      banned: false,
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
    node.lastSeenMs = this.now();
    return { ok: true, node };
  }

  /**
   * Active probes: GET /health of every registered node, at most `concurrency` at a time. A failed
   * probe counts against the node's breaker like a failed request, so a dead node stops receiving
   * work even before its heartbeat goes stale.
   */
  async probeAll(
    probe: (endpoint: string) => Promise<boolean>,
    concurrency = 16,
  ): Promise<{ ok: number; failed: number }> {
    const nodes = this.all().filter((n) => !n.banned);
    let ok = 0;
    let failed = 0;
    for (let i = 0; i < nodes.length; i += concurrency) {
      await Promise.all(
        nodes.slice(i, i + concurrency).map(async (node) => {
          const healthy = await probe(node.endpoint).catch(() => false);
          if (healthy) ok += 1;
          else {
            failed += 1;
            node.health.recordFailure(this.now());
          }
        }),
      );
    }
    return { ok, failed };
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
      const reportedFree = node.heartbeat?.free_slots ?? node.registration.capacity.max_concurrency;
      const snap = node.health.snapshot();
      views.push({
        id: node.id,
        endpoint: node.endpoint,
        region: node.registration.region,
        offer,
        maxConcurrency: node.registration.capacity.max_concurrency,
        // Queue room counts as capacity too: a node with free queue slots can still take work.
        freeSlots: Math.max(0, reportedFree + node.registration.capacity.queue_max - node.inFlight),
        stats: {
          ttftMs: snap.ttftMs ?? node.heartbeat?.stats?.ttft_ms,
          tokensPerS: snap.tokensPerS ?? node.heartbeat?.stats?.tokens_per_s,
          latencyMs: snap.latencyMs,
          successRate: snap.successRate,
        },
        trust: 1,
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
    if (previous) for (const m of previous.registration.models) this.byModel.get(m.id)?.delete(record.id);
    this.nodes.set(record.id, record);
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
