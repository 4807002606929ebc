// startRouter: wires config, identity, database, registry, dispatcher and routes together.
import { resolve } from 'node:path';
import {
  addMetricsRoute,
  addRawJsonParser,
  addReplayStoreMetrics,
  allowedMethods,
  createLogger,
  createMetricsRegistry,
  createSafeAgent,
  createServer,
  fetchWhenUp,
  initServiceCrypto,
  JobHeartbeats,
  type Lookup,
  loadServiceKey,
  openDb,
  openReplayStore,
  pathOf,
  toFedAiError,
} from '@fed-ai/kit';
import { ChannelKeys, publicKeyOf, REASONS, type ReasonCode } from '@fed-ai/protocol';
import type { FastifyReply } from 'fastify';
import { Gauge } from 'prom-client';
import { z } from 'zod';
import { type ApiKeyCreate, ApiKeys } from './apikeys';
import type { ChatContext } from './chat';
import type { RouterConfig } from './config';
import { migrateRouter } from './db';
import { Dispatcher } from './dispatch';
import { createEndpointProver, type EndpointProver } from './endpoint-proof';
import { setupFederation } from './federation/wire';
import { HeldReservations, migrateHeld } from './held-reservations';
import { L402Gate } from './l402';
import { openAiError } from './openai-errors';
import { FreePayments, type Payments, SettlementPayments } from './payments';
import { startProber } from './probes';
import { RecentRequests } from './recent-requests';
import { Registry } from './registry';
import { registerAdminRoutes } from './routes/admin';
import { registerDashboardRoutes } from './routes/dashboard';
import { registerDisputeRoutes } from './routes/disputes';
import { registerNativeRoutes } from './routes/native';
import { registerOpenAiRoutes } from './routes/openai';
import { registerTabRoutes } from './routes/tabs';
import { SettlementClient } from './settlement-client';
import { migrateOutbox, SettlementOutbox } from './settlement-outbox';
import { isLeaseId } from './spending-leases';

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
  /** Test seam: replaces the endpoint challenge (default: POST {endpoint}/v1/challenge). */
  proveEndpoint?: EndpointProver;
}

export async function startRouter(
  config: RouterConfig,
  options: StartRouterOptions = {},
): Promise<RunningRouter> {
  const logger = createLogger('router');
  const signatures = await initServiceCrypto(logger);
  const dataDir = resolve(config.DATA_DIR);
  const secretKey = loadServiceKey(config.ROUTER_KEY, config.ROUTER_KEY_FILE, `${dataDir}/router.key`);
  const pubkey = publicKeyOf(secretKey);
  const db = await openDb({ url: config.DATABASE_URL, dataDir: resolve(dataDir, 'db') });
  await migrateRouter(db);
  await migrateOutbox(db);
  await migrateHeld(db);
  const replayStore = await openReplayStore(db);
  const jobs = new JobHeartbeats(); // background jobs' heartbeats, exported with the metrics below
  const agent = createSafeAgent({
    allowPrivate: config.ALLOW_PRIVATE_ENDPOINTS,
    connectTimeoutMs: config.CONNECT_TIMEOUT_MS,
  });
  const registry = new Registry({
    db,
    routerPubkey: pubkey,
    replayStore,
    allowPrivateEndpoints: config.ALLOW_PRIVATE_ENDPOINTS,
    nodeAllowlist: config.NODE_ALLOWLIST,
    heartbeatTtlMs: config.HEARTBEAT_TTL_S * 1000,
    maxNodes: config.MAX_NODES,
    proveEndpoint:
      options.proveEndpoint ??
      createEndpointProver({
        routerPubkey: pubkey,
        agent,
        timeoutMs: config.CHALLENGE_TIMEOUT_MS,
        maxConcurrent: config.MAX_CONCURRENT_CHALLENGES,
      }),
    registrationsPerIpPerHour: config.REGISTRATIONS_PER_IP_PER_HOUR,
    registrationsPerMin: config.REGISTRATIONS_PER_MIN,
    probationMs: config.PROBATION_S * 1000,
    probationRequests: config.PROBATION_REQUESTS,
    ...(options.lookup ? { lookup: options.lookup } : {}),
  });
  await registry.load();
  // Other replicas' registrations, bans and prices arrive within NODE_RELOAD_MS.
  let reloading = false; // one reload at a time, however slow the database
  const reload = setInterval(() => {
    if (reloading) return;
    reloading = true;
    jobs
      .job('router_nodes_reload', { intervalMs: config.NODE_RELOAD_MS })
      .run(() => registry.load())
      .catch((error: unknown) => logger.warn({ err: error }, 'nodes reload failed'))
      .finally(() => {
        reloading = false;
      });
  }, config.NODE_RELOAD_MS);
  reload.unref();
  const apiKeys = new ApiKeys(db, {
    cacheTtlMs: config.API_KEY_CACHE_TTL_MS,
    slotLeaseMs: config.KEY_SLOT_LEASE_MS,
    onError: (error) => logger.warn({ err: error }, 'key limit write failed'),
    jobs,
  });
  const dispatcher = new Dispatcher({
    secretKey,
    channelKeys: new ChannelKeys(secretKey, config.MAX_NODES),
    routerPubkey: pubkey,
    registry,
    agent,
    timeouts: { firstTokenMs: config.FIRST_TOKEN_TIMEOUT_MS, totalMs: config.TOTAL_TIMEOUT_MS },
    maxAttempts: config.MAX_ATTEMPTS,
    cancelGraceMs: config.CANCEL_GRACE_MS,
    logger,
  });
  let outbox: SettlementOutbox | null = null;
  let held: HeldReservations | null = null;
  let orphansReleased = 0;
  let payments: Payments;
  // Unknown (settlement unreachable at start): no offload, since reserve and charge could disagree.
  let offloadFeeBps: number | null = 0;
  if (options.payments) payments = options.payments;
  else if (config.SETTLEMENT_URL) {
    let settlement: SettlementPayments | null = null;
    outbox = new SettlementOutbox({
      db,
      logger,
      send: (row) => settlement!.sendOutboxRow(row),
      // One process owns an embedded database's folder: its outbox is a journal file beside it.
      ...(db.kind === 'pglite' ? { journalPath: resolve(dataDir, 'settlement-outbox.journal') } : {}),
      baseDelayMs: config.OUTBOX_RETRY_MS,
      jobs,
    });
    await outbox.open();
    const openedOutbox = outbox;
    held = new HeldReservations({
      db,
      outboxHolds: (opIds) => openedOutbox.holding(opIds),
      release: (opId) =>
        isLeaseId(opId) ? settlement!.closeLease(opId) : settlement!.release({ opId, amountMsat: 0 }),
      onSwept: (released) => {
        orphansReleased += released;
        logger.info({ released }, 'released reservations a stopped router held ahead');
      },
      onError: (error) => logger.warn({ err: error }, 'held reservations: sweep or write failed'),
      jobs,
    });
    const started = await settlementPayments(config, secretKey, outbox, held, logger);
    settlement = started.payments;
    offloadFeeBps = started.info.offload_fee_bps < 0 ? null : started.info.offload_fee_bps;
    payments = settlement;
    outbox.start(config.OUTBOX_RETRY_MS);
    // After the outbox's rows exist (they are read from the database): those ids are skipped.
    await held.start();
  } else payments = new FreePayments();
  const recent = new RecentRequests();
  const ctx: ChatContext = {
    registry,
    dispatcher,
    payments,
    recent,
    ...(options.rng ? { rng: options.rng } : {}),
  };

  const app = createServer({ name: 'router', logger, bodyLimitBytes: config.MAX_BODY_BYTES });
  addRawJsonParser(app);
  const metrics = createMetricsRegistry('router');
  addReplayStoreMetrics(metrics, replayStore);
  jobs.register(metrics);
  new Gauge({
    name: 'fedai_router_nodes_serving',
    help: 'Nodes fresh, healthy and not banned',
    registers: [metrics],
    collect() {
      this.set(registry.all().filter((n) => registry.isServing(n)).length);
    },
  });
  if (payments instanceof SettlementPayments) {
    const paid = payments;
    new Gauge({
      name: 'fedai_router_reservations',
      help: 'Reservations for requests since start, by source (drawn from a spending lease, or made on the spot)',
      labelNames: ['source'],
      registers: [metrics],
      collect() {
        this.set({ source: 'ahead' }, paid.reservations.ahead);
        this.set({ source: 'spot' }, paid.reservations.spot);
      },
    });
    new Gauge({
      name: 'fedai_router_orphan_reservations_released',
      help: 'Reservations held ahead by a stopped router (or replica) that this one released since start',
      registers: [metrics],
      collect() {
        this.set(orphansReleased);
      },
    });
    new Gauge({
      name: 'fedai_router_lease_held_msat',
      help: 'Money (msat) held in spending leases at settlement right now',
      registers: [metrics],
      collect() {
        this.set(paid.heldAhead);
      },
    });
  }
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
  // OpenAI-compatible routes: what the framework refuses (413, 415, bad JSON) in OpenAI's shape.
  app.register(async (scope) => {
    scope.setErrorHandler((error, request, reply) => {
      const e = toFedAiError(error);
      if (e.status >= 500) request.log.error({ err: error }, 'request failed');
      return sendOpenAiShaped(reply, e.code, e.message);
    });
    registerOpenAiRoutes(scope, {
      ctx,
      apiKeys,
      defaultMaxTokens: config.DEFAULT_MAX_TOKENS,
      // L402 needs paid mode: the token's credit is a settlement tab.
      ...(config.L402_ENABLED && config.SETTLEMENT_URL && payments.mode === 'settlement'
        ? {
            l402: new L402Gate({
              routerSecretKey: secretKey,
              settlementUrl: config.SETTLEMENT_URL.replace(/\/+$/, ''),
              minCreditMsat: config.L402_MIN_CREDIT_MSAT,
              tokenTtlS: config.L402_TOKEN_TTL_S,
              challengesPerIpPerMin: config.L402_CHALLENGES_PER_IP_PER_MIN,
              requestsPerMin: config.L402_REQUESTS_PER_MIN,
              maxParallel: config.L402_MAX_PARALLEL,
            }),
          }
        : {}),
    });
    if (config.SETTLEMENT_URL)
      registerTabRoutes(scope, {
        apiKeys,
        settlementUrl: config.SETTLEMENT_URL.replace(/\/+$/, ''),
        secretKey,
        replayStore,
        publicUrl: config.ROUTER_PUBLIC_URL,
        releaseAhead: (payer) => payments.releaseAhead(payer),
      });
    if (config.SETTLEMENT_URL)
      registerDisputeRoutes(scope, {
        apiKeys,
        settlementUrl: config.SETTLEMENT_URL.replace(/\/+$/, ''),
        secretKey,
      });
  });
  // Unknown paths and methods under /v1/ answer 404/405 in OpenAI's shape.
  app.register(
    async (scope) => {
      scope.setNotFoundHandler((request, reply) => {
        const allow = allowedMethods(app, request.url);
        if (allow.length === 0)
          return sendOpenAiShaped(reply, 'NOT_FOUND', `No route ${request.method} ${pathOf(request.url)}`);
        reply.header('allow', allow.join(', '));
        return sendOpenAiShaped(
          reply,
          'METHOD_NOT_ALLOWED',
          `${pathOf(request.url)} accepts ${allow.join(', ')}`,
        );
      });
    },
    { prefix: '/v1' },
  );
  const federation = setupFederation(app, {
    config,
    secretKey,
    pubkey,
    ctx,
    replayStore,
    agent,
    logger,
    offloadFeeBps,
    jobs,
  });
  registerAdminRoutes(app, {
    apiKeys,
    registry,
    operators: new Set(config.OPERATOR_PUBKEYS),
    replayStore,
    publicUrl: config.ROUTER_PUBLIC_URL,
  });
  // The dashboard's money page reads settlement's overview with the router's key.
  const moneyClient =
    config.SETTLEMENT_URL && payments.mode === 'settlement'
      ? new SettlementClient(config.SETTLEMENT_URL.replace(/\/+$/, ''), secretKey)
      : undefined;
  registerDashboardRoutes(app, {
    registry,
    recent,
    operators: new Set(config.OPERATOR_PUBKEYS),
    replayStore,
    publicUrl: config.ROUTER_PUBLIC_URL,
    routerPubkey: pubkey,
    paymentsMode: payments.mode,
    moneyOverview: moneyClient && ((limit) => moneyClient.overview(limit)),
    federation: () => federation?.presence() ?? null,
  });

  const url = await app.listen({ host: config.ROUTER_HOST, port: config.ROUTER_PORT });
  const prober = startProber({
    targets: registry,
    agent,
    intervalS: config.PROBE_INTERVAL_S,
    logger,
    jobs,
    maxNodes: config.MAX_NODES,
  });
  federation?.start(url);
  logger.info({ url, pubkey, nodes: registry.size, payments: ctx.payments.mode, signatures }, 'router ready');
  return {
    url,
    pubkey,
    registry,
    createApiKey: (o) => apiKeys.create(o),
    revokeApiKey: (id) => apiKeys.revoke(id),
    async close() {
      clearInterval(reload);
      apiKeys.close();
      prober.stop();
      await federation?.close();
      await payments.close(); // gives back reservations held ahead (their releases may need the outbox)
      await held?.close();
      await outbox?.stop();
      await app.close();
      await agent.close();
      replayStore.close();
      await db.close();
    },
  };
}

/**
 * OpenAI's error shape `{error:{message,type,param,code}}` with our reason code as `code`, plus
 * our `hint` (OpenAI clients ignore it; fed-ai clients read code, message and hint as usual).
 */
function sendOpenAiShaped(reply: FastifyReply, code: ReasonCode, message?: string): FastifyReply {
  if (code === 'RATE_LIMITED' || code === 'OVERLOADED') reply.header('retry-after', '1');
  const body = openAiError(code, message);
  return reply.code(REASONS[code].status).send({ error: { ...body.error, hint: REASONS[code].hint } });
}

const settlementInfoSchema = z
  .object({
    pubkey: z.string().regex(/^[0-9a-f]{64}$/),
    offload_fee_bps: z.number().int().min(0).max(10_000).default(0),
    /** How settlement takes operations besides signatures ('mac-v1': channel-mac.ts); older ones omit it. */
    auth: z.array(z.string().max(32)).max(8).default([]),
  })
  .loose();
type SettlementInfo = z.infer<typeof settlementInfoSchema>;

async function settlementPayments(
  config: RouterConfig,
  secretKey: Uint8Array,
  outbox: SettlementOutbox,
  held: HeldReservations,
  logger: ReturnType<typeof createLogger>,
): Promise<{ payments: SettlementPayments; info: SettlementInfo }> {
  const url = config.SETTLEMENT_URL!.replace(/\/+$/, '');
  const response = await fetchWhenUp(`${url}/v1/info`);
  const body: unknown = await response?.json().catch(() => null);
  const parsed = settlementInfoSchema.safeParse(body);
  if (!parsed.success && !config.SETTLEMENT_PUBKEY)
    throw new Error(
      `SETTLEMENT_URL: ${url}/v1/info gave no settlement pubkey (is settlement running there? or set SETTLEMENT_PUBKEY)`,
    );
  const info = parsed.success
    ? parsed.data
    : { pubkey: config.SETTLEMENT_PUBKEY!, offload_fee_bps: -1, auth: [] };
  if (config.SETTLEMENT_PUBKEY && parsed.success && parsed.data.pubkey !== config.SETTLEMENT_PUBKEY)
    throw new Error(`SETTLEMENT_PUBKEY: ${url} answers with another key`);
  const payments = new SettlementPayments({
    url,
    settlementPubkey: config.SETTLEMENT_PUBKEY ?? info.pubkey,
    secretKey,
    channelKeys: info.auth.includes('mac-v1') ? new ChannelKeys(secretKey) : undefined,
    reservationTimeoutS: config.RESERVATION_TIMEOUT_S,
    outbox,
    held,
    reserveAheadSlots: config.RESERVE_AHEAD_SLOTS,
    batchLingerMs: config.SETTLEMENT_BATCH_LINGER_MS,
    onError: (error) => logger.warn({ err: error }, 'reservation held ahead: settlement call failed'),
  });
  return { payments, info };
}
