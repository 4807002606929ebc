// The operator dashboard: the page (GET /dashboard, public: it holds no data) and its JSON routes,
// each NIP-98-signed by a key in OPERATOR_PUBKEYS (the guard is the routes' own hooks, as in
// admin.ts). Output is bounded; query parameters are validated; nothing here holds a prompt or an
// output (the recent-requests ring keeps metadata only).
import {
  addOperatorGuard,
  type FederationAnswer,
  type MoneyAnswer,
  operatorOf,
  registerDashboard,
} from '@fed-ai/dashboard';
import { FedAiError, type ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { PeerSnapshot } from '../federation/peers';
import type { RecentRequests } from '../recent-requests';
import type { Registry } from '../registry';
import type { MoneyOverview } from '../settlement-client';

/** The federation as the dashboard shows it; null when FEDERATION_RELAYS is empty. */
interface FederationView {
  relays: { readonly urls: readonly string[]; connected(): string[] };
  peers: { snapshot(nowMs: number): PeerSnapshot[] };
}

export interface DashboardRouteDeps {
  registry: Registry;
  recent: RecentRequests;
  operators: Set<string>;
  replayStore: ReplayStore;
  publicUrl: string | undefined;
  routerPubkey: string;
  paymentsMode: string;
  /** Settlement's money overview, read with the router's key; absent without a settlement. */
  moneyOverview?: ((limit: number) => Promise<MoneyOverview>) | undefined;
  federation: () => FederationView | null;
}

const MAX_NODES_SHOWN = 500;
export const nodesQuery = z.strictObject({
  limit: z.coerce.number().int().min(1).max(MAX_NODES_SHOWN).optional(),
});
export const requestsQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(1000).optional() });
const moneyQuery = z.strictObject({ limit: z.coerce.number().int().min(1).max(100).optional() });
const MAX_PEERS_SHOWN = 200;
const noQuery = z.strictObject({});

export function registerDashboardRoutes(app: FastifyInstance, deps: DashboardRouteDeps): void {
  registerDashboard(app, { app: 'router' });
  app.register(async (scope) => {
    addOperatorGuard(scope, {
      allowed: deps.operators,
      replayStore: deps.replayStore,
      publicUrl: deps.publicUrl,
      signer: 'an operator key',
    });

    scope.get('/admin/dashboard/whoami', async (request) => {
      noQuery.parse(request.query);
      return {
        pubkey: operatorOf(request),
        role: 'operator',
        router_pubkey: deps.routerPubkey,
        payments: deps.paymentsMode,
      };
    });

    scope.get('/admin/dashboard/nodes', async (request) => {
      const { limit = MAX_NODES_SHOWN } = nodesQuery.parse(request.query);
      const now = Date.now();
      const served = deps.recent.perNode();
      const all = deps.registry.all();
      const nodes = all.slice(0, limit).map((n) => {
        const health = n.health.snapshot();
        const recent = served.get(n.id);
        return {
          id: n.id,
          endpoint: n.endpoint,
          region: n.registration.region ?? null,
          models: n.registration.models.map((m) => ({
            id: m.id,
            input_msat_per_1k: m.price.input_msat_per_1k,
            output_msat_per_1k: m.price.output_msat_per_1k,
            context_window: m.context_window,
          })),
          serving: deps.registry.isServing(n, now),
          banned: n.banned,
          on_probation: deps.registry.isOnProbation(n, now),
          breaker: health.state,
          success_rate: health.successRate,
          ttft_ms: health.ttftMs ?? null,
          tokens_per_s: health.tokensPerS ?? null,
          latency_ms: health.latencyMs ?? null,
          consecutive_failures: health.consecutiveFailures,
          in_flight: n.inFlight,
          free_slots: n.heartbeat?.free_slots ?? null,
          queue_depth: n.heartbeat?.queue_depth ?? null,
          last_seen_ms_ago: Math.max(0, now - n.lastSeenMs),
          recent_requests: recent?.requests ?? 0,
          recent_earned_msat: recent?.earnedMsat ?? 0,
        };
      });
      return { nodes, total: all.length };
    });

    scope.get('/admin/dashboard/requests', async (request) => {
      const { limit = 100 } = requestsQuery.parse(request.query);
      return { requests: deps.recent.list(limit), capacity: deps.recent.capacity };
    });

    scope.get('/admin/dashboard/money', async (request): Promise<MoneyAnswer> => {
      const { limit = 20 } = moneyQuery.parse(request.query);
      // Free mode has no money to show; a settlement that does not answer is the call's error.
      if (!deps.moneyOverview) return { payments: deps.paymentsMode, overview: null };
      try {
        return { payments: deps.paymentsMode, overview: await deps.moneyOverview(limit) };
      } catch (error) {
        // Settlement's own refusal (say FORBIDDEN: this router is not in its list) is not the
        // operator's: the page must not read it as "not an operator".
        const code = error instanceof FedAiError ? error.code : 'BAD_ANSWER';
        throw new FedAiError('SETTLEMENT_UNAVAILABLE', `Settlement did not give its overview (${code}).`);
      }
    });

    scope.get('/admin/dashboard/federation', async (request): Promise<FederationAnswer> => {
      noQuery.parse(request.query);
      const federation = deps.federation();
      if (!federation) return { enabled: false, relays: [], peers: [], total: 0 };
      const now = Date.now();
      const connected = new Set(federation.relays.connected());
      const peers = federation.peers.snapshot(now);
      return {
        enabled: true,
        relays: federation.relays.urls.map((url) => ({ url, connected: connected.has(url) })),
        peers: peers.slice(0, MAX_PEERS_SHOWN).map((p) => peerRow(p, now)),
        total: peers.length,
      };
    });
  });
}

function peerRow(peer: PeerSnapshot, nowMs: number): FederationAnswer['peers'][number] {
  return {
    pubkey: peer.pubkey,
    name: peer.capabilities?.name ?? null,
    url: peer.capabilities?.url ?? null,
    allowed: peer.allowed,
    trust: peer.trust,
    models: peer.prices.map((sheet) => ({
      id: sheet.model,
      input_msat_per_1k: sheet.price.input_msat_per_1k,
      output_msat_per_1k: sheet.price.output_msat_per_1k,
    })),
    status: peer.status ?? null,
    answered: peer.reputation.answered,
    failed: peer.reputation.failed,
    disputes: peer.reputation.disputes,
    latency_ms: peer.reputation.latencyEwmaMs ?? null,
    last_seen_ms_ago: Math.max(0, nowMs - peer.last_seen_ms),
  };
}
