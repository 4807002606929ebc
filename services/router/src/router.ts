// startRouter: wires config, identity, database, registry, dispatcher and routes together.
import { resolve } from 'node:path';
import {
  addMetricsRoute,
  addRawJsonParser,
  createLogger,
  createMetricsRegistry,
  createServer,
  DbReplayStore,
  loadServiceKey,
  openDb,
} from '@fed-ai/kit';
import { initCrypto, publicKeyOf } from '@fed-ai/protocol';
import { Gauge } from 'prom-client';
import { request } from 'undici';
import { type ApiKeyCreate, ApiKeys } from './apikeys';
import type { ChatContext } from './chat';
import type { RouterConfig } from './config';
import { migrateRouter } from './db';
import { Dispatcher } from './dispatch';
import { createSafeAgent, type Lookup } from './endpoint-safety';
import { FreePayments, type Payments, SettlementPayments } from './payments';
import { Registry } from './registry';
import { registerAdminRoutes } from './routes/admin';
import { registerNativeRoutes } from './routes/native';
import { registerOpenAiRoutes } from './routes/openai';
import { registerTabRoutes } from './routes/tabs';

export interface RunningRouter {
  url: string;
  pubkey: string;
  registry: Registry;
  createApiKey(options: ApiKeyCreate): Promise<{ id: string; key: string }>;
  revokeApiKey(id: string): Promise<boolean>;
  close(): Promise<void>;
}

export interface StartRouterOptions {
  payments?: Payments;
  lookup?: Lookup;
  rng?: () => number;
}

export async function startRouter(
  config: RouterConfig,
  options: StartRouterOptions = {},
): Promise<RunningRouter> {
  const logger = createLogger('router');
  await initCrypto();
  const dataDir = resolve(config.DATA_DIR);
  const secretKey = loadServiceKey(config.ROUTER_KEY, config.ROUTER_KEY_FILE, `${dataDir}/router.key`);
  const pubkey = publicKeyOf(secretKey);
  const db = await openDb({ url: config.DATABASE_URL, dataDir: resolve(dataDir, 'db') });
  await migrateRouter(db);
  const replayStore = new DbReplayStore(db);
  const registry = new Registry({
    db,
    routerPubkey: pubkey,
    replayStore,
    allowPrivateEndpoints: config.ALLOW_PRIVATE_ENDPOINTS,
    nodeAllowlist: config.NODE_ALLOWLIST,
    heartbeatTtlMs: config.HEARTBEAT_TTL_S * 1000,
    maxNodes: config.MAX_NODES,
    ...(options.lookup ? { lookup: options.lookup } : {}),
  });
  await registry.load();
  const apiKeys = new ApiKeys(db);
  const agent = createSafeAgent({
    allowPrivate: config.ALLOW_PRIVATE_ENDPOINTS,
    connectTimeoutMs: config.CONNECT_TIMEOUT_MS,
  });
  const dispatcher = new Dispatcher({
    secretKey,
    routerPubkey: pubkey,
    registry,
    agent,
    timeouts: { firstTokenMs: config.FIRST_TOKEN_TIMEOUT_MS, totalMs: config.TOTAL_TIMEOUT_MS },
    maxAttempts: config.MAX_ATTEMPTS,
    logger,
  });
  const payments =
    options.payments ??
    (config.SETTLEMENT_URL ? await settlementPayments(config, secretKey) : new FreePayments());
  const ctx: ChatContext = {
    registry,
    dispatcher,
    payments,
    ...(options.rng ? { rng: options.rng } : {}),
  };

  const app = createServer({ name: 'router', logger, bodyLimitBytes: config.MAX_BODY_BYTES });
  addRawJsonParser(app);
  const metrics = createMetricsRegistry('router');
  new Gauge({
    name: 'fedai_router_nodes_serving',
    help: 'Nodes fresh, healthy and not banned',
    registers: [metrics],
    collect() {
      this.set(registry.all().filter((n) => registry.isServing(n)).length);
    },
  });
  addMetricsRoute(app, metrics);
  app.get('/health', async () => ({ ok: true }));
  app.get('/ready', async () => ({ ok: true, nodes: registry.size }));
  registerNativeRoutes(app, {
    ctx,
    secretKey,
    pubkey,
    name: config.ROUTER_NAME,
    replayStore,
    heartbeatIntervalS: Math.max(1, Math.floor(config.HEARTBEAT_TTL_S / 3)),
  });
  registerOpenAiRoutes(app, { ctx, apiKeys, defaultMaxTokens: config.DEFAULT_MAX_TOKENS });
  registerAdminRoutes(app, {
    apiKeys,
    registry,
    operators: new Set(config.OPERATOR_PUBKEYS),
    replayStore,
    publicUrl: config.ROUTER_PUBLIC_URL,
  });

  if (config.SETTLEMENT_URL)
    registerTabRoutes(app, { apiKeys, settlementUrl: config.SETTLEMENT_URL.replace(/\/+$/, ''), secretKey });

  const url = await app.listen({ host: config.ROUTER_HOST, port: config.ROUTER_PORT });
  let probing = false;
  const prober =
    config.PROBE_INTERVAL_S > 0
      ? setInterval(() => {
          if (probing) return;
          probing = true;
          registry
            .probeAll(async (endpoint) => {
              const response = await request(`${endpoint}/health`, {
                dispatcher: agent,
                signal: AbortSignal.timeout(2_000),
              });
              await response.body.dump();
              return response.statusCode === 200;
            })
            .catch((error: unknown) => logger.warn({ err: error }, 'probe round failed'))
            .finally(() => {
              probing = false;
            });
        }, config.PROBE_INTERVAL_S * 1000)
      : null;
  prober?.unref();
  logger.info({ url, pubkey, nodes: registry.size, payments: ctx.payments.mode }, 'router ready');
  return {
    url,
    pubkey,
    registry,
    createApiKey: (o) => apiKeys.create(o),
    revokeApiKey: (id) => apiKeys.revoke(id),
    async close() {
      if (prober) clearInterval(prober);
      await app.close();
      await agent.close();
      await db.close();
    },
  };
}

async function settlementPayments(config: RouterConfig, secretKey: Uint8Array): Promise<SettlementPayments> {
  const url = config.SETTLEMENT_URL!.replace(/\/+$/, '');
  let settlementPubkey = config.SETTLEMENT_PUBKEY;
  if (!settlementPubkey) {
    const info = (await (await fetch(`${url}/v1/info`, { signal: AbortSignal.timeout(5_000) })).json()) as {
      pubkey?: string;
    };
    if (!info.pubkey || !/^[0-9a-f]{64}$/.test(info.pubkey))
      throw new Error(`${url}/v1/info gave no settlement pubkey`);
    settlementPubkey = info.pubkey;
  }
  return new SettlementPayments({
    url,
    settlementPubkey,
    secretKey,
    reservationTimeoutS: config.RESERVATION_TIMEOUT_S,
  });
}
