// startNode: wires config, identity, database, runner, HTTP server and registration together.
import { resolve } from 'node:path';
import {
  addReplayStoreMetrics,
  createLogger,
  createMetricsRegistry,
  initServiceCrypto,
  JobHeartbeats,
  loadServiceKey,
  migrate,
  openDb,
  openReplayStore,
  REPLAY_MIGRATIONS,
  StartError,
} from '@fed-ai/kit';
import { type ModelOffer, publicKeyOf } from '@fed-ai/protocol';
import { Admission } from './admission';
import type { NodeConfig } from './config';
import { DEMO_MODEL_ID, ensureDemoModel } from './demo-model';
import { NodeStats } from './metering';
import { MeteringLog } from './metering-log';
import { RegistrationLoop } from './registration';
import { EmbeddedGgufRunner } from './runners/embedded';
import { OpenAiHttpRunner } from './runners/openai-http';
import type { Runner } from './runners/runner';
import { createNodeServer } from './server';

export interface RunningNode {
  url: string;
  pubkey: string;
  runner: Runner;
  admission: Admission;
  close(): Promise<void>;
}

export interface StartNodeOptions {
  /** Use this runner instead of building one from config (tests, embedding). */
  runner?: Runner;
}

export async function startNode(config: NodeConfig, options: StartNodeOptions = {}): Promise<RunningNode> {
  const logger = createLogger('node');
  const signatures = await initServiceCrypto(logger);
  const dataDir = resolve(config.DATA_DIR);
  const secretKey = loadServiceKey(config.NODE_KEY, config.NODE_KEY_FILE, `${dataDir}/node.key`);
  const pubkey = publicKeyOf(secretKey);

  const db = await openDb({ url: config.DATABASE_URL, dataDir: resolve(dataDir, 'db') });
  await migrate(db, 'node', REPLAY_MIGRATIONS);
  // In memory with a restart epoch on the node's own PGlite: no database write per request.
  const replayStore = await openReplayStore(db);

  const meteringLog = new MeteringLog(resolve(dataDir, 'metering'), {
    retentionDays: config.METERING_LOG_DAYS,
  });
  const runner = options.runner ?? buildRunner(config, dataDir);
  let ready = false;
  const admission = new Admission({
    maxConcurrent: config.MAX_CONCURRENCY,
    queueMax: config.QUEUE_MAX,
    queueTimeoutMs: config.QUEUE_TIMEOUT_MS,
  });
  const offers = new Map<string, ModelOffer>();
  const runnerModelIds = new Map<string, string>();
  const allowedRouters = new Set<string>();
  const stats = new NodeStats();
  const metrics = createMetricsRegistry('node');
  addReplayStoreMetrics(metrics, replayStore);
  const jobs = new JobHeartbeats(); // the registration loop's heartbeats (job-heartbeat.ts)
  jobs.register(metrics);
  const capacity = { max_concurrency: config.MAX_CONCURRENCY, queue_max: config.QUEUE_MAX };
  let registration: RegistrationLoop | null = null;
  const app = createNodeServer({
    secretKey,
    runner,
    offers,
    runnerModelIds,
    admission,
    replayStore,
    allowedRouters,
    stats,
    metrics,
    capacity,
    meteringLog,
    isReady: () => ready,
    notReadyReason: () => {
      const refused = registration?.refusals() ?? [];
      if (refused.length === 0 || refused.length < config.ROUTER_URLS.length) return null;
      return `not registered: every router refused this node (${refused.map((r) => r.code).join(', ')}); see the node log`;
    },
  });
  const url = await app.listen({ host: config.NODE_HOST, port: config.NODE_PORT });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : config.NODE_PORT;
  const endpoint = config.NODE_PUBLIC_URL ?? `http://${config.NODE_HOST}:${port}`;

  // Loading can take a while; /ready says 503 until it is done.
  logger.info({ runner: runner.kind }, 'loading model');
  let models: Awaited<ReturnType<Runner['listModels']>>;
  try {
    await runner.start();
    if (runner.kind === 'openai-http' && !(await runner.health()).ok) throw new Error('no answer');
    models = await runner.listModels();
  } catch (error) {
    await app.close().catch(() => {});
    await runner.stop().catch(() => {});
    await meteringLog.close();
    replayStore.close();
    await db.close().catch(() => {});
    throw runnerStartError(config, error);
  }
  for (const model of models) {
    const publicId =
      runner.kind === 'openai-http' && config.MODEL_ID && !offers.size ? config.MODEL_ID : model.id;
    offers.set(publicId, {
      id: publicId,
      context_window: model.contextWindow,
      max_output_tokens: Math.min(config.MAX_OUTPUT_TOKENS, model.contextWindow),
      price: {
        input_msat_per_1k: config.PRICE_INPUT_MSAT_PER_1K,
        output_msat_per_1k: config.PRICE_OUTPUT_MSAT_PER_1K,
      },
      ...(model.demo ? { demo: true } : {}),
    });
    runnerModelIds.set(publicId, model.id);
  }
  ready = true;

  registration = new RegistrationLoop({
    secretKey,
    routerUrls: config.ROUTER_URLS,
    routerPubkeys: config.ROUTER_PUBKEYS,
    endpoint,
    offers: () => [...offers.values()],
    capacity,
    region: config.REGION,
    heartbeat: () => ({
      free_slots: admission.freeSlots,
      queue_depth: admission.queued,
      models_loaded: [...offers.keys()],
      ready,
      ...(stats.snapshot() ? { stats: stats.snapshot()! } : {}),
    }),
    intervalS: config.HEARTBEAT_INTERVAL_S,
    onRouterKey: (key) => allowedRouters.add(key),
    logger,
    jobs,
  });
  registration.start();
  logger.info({ url, pubkey, endpoint, models: [...offers.keys()], signatures }, 'node ready');

  return {
    url: url.replace('[::1]', '127.0.0.1'),
    pubkey,
    runner,
    admission,
    async close() {
      // Routers stop sending work before the server goes away.
      await registration?.stopAndSayGoodbye();
      await app.close();
      await runner.stop();
      await meteringLog.close();
      replayStore.close();
      await db.close();
    },
  };
}

/** One line an operator can act on when the runner cannot start. */
function runnerStartError(config: NodeConfig, error: unknown): StartError {
  const detail = error instanceof Error ? error.message.split('\n')[0]!.slice(0, 200) : String(error);
  if (config.RUNNER === 'openai')
    return new StartError(
      'RUNNER_UNAVAILABLE',
      `OPENAI_BASE_URL ${config.OPENAI_BASE_URL} does not answer as an OpenAI-compatible server`,
      'start the model server first or fix the URL',
    );
  return new StartError(
    'RUNNER_UNAVAILABLE',
    `the embedded model ${config.MODEL_PATH ?? '(demo)'} did not load (${detail})`,
    'check MODEL_PATH (a readable .gguf file), CONTEXT_SIZE and free memory',
  );
}

function buildRunner(config: NodeConfig, dataDir: string): Runner {
  if (config.RUNNER === 'openai') {
    return new OpenAiHttpRunner({
      baseUrl: config.OPENAI_BASE_URL!,
      apiKey: config.OPENAI_API_KEY,
      ...(config.MODEL_ID ? { models: [{ id: config.MODEL_ID, contextWindow: config.CONTEXT_SIZE }] } : {}),
      timeouts: {
        firstTokenMs: config.RUNNER_FIRST_TOKEN_TIMEOUT_MS,
        totalMs: config.RUNNER_TOTAL_TIMEOUT_MS,
      },
    });
  }
  const demo = config.DEMO_MODEL && !config.MODEL_PATH;
  const modelPath = demo ? ensureDemoModel(resolve(dataDir, 'models')) : config.MODEL_PATH!;
  return new EmbeddedGgufRunner({
    modelPath,
    modelsDir: resolve(dataDir, 'models'),
    // A demo node may serve the demo weights under another id (a federated devnet's second model).
    modelId: demo ? (config.MODEL_ID ?? DEMO_MODEL_ID) : config.MODEL_ID,
    contextSize: config.CONTEXT_SIZE,
    threads: config.THREADS,
    parallel: config.MAX_CONCURRENCY,
    demo,
  });
}
