// Entry point: `fedai router start` or `node --import tsx services/router/src/main.ts`.
// Settings: environment, then .env / fedai.toml [router] (or FEDAI_CONFIG); see kit's config-file.ts.
// FEDAI_READY_FILE / FEDAI_PORT_FALLBACK (for supervisors such as `fedai up`): see kit's ready-file.ts.
import { requireReachable, runService, startTracing } from '@fed-ai/kit';
import { type RouterConfig, routerConfigSchema } from './config';
import { startRouter } from './router';

const tracing = await startTracing('router'); // off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
await runService(
  'router',
  routerConfigSchema,
  async (config: RouterConfig) => {
    // Without SETTLEMENT_PUBKEY the router asks settlement for its key at start: say plainly
    // when it is not there.
    if (config.SETTLEMENT_URL && !config.SETTLEMENT_PUBKEY)
      await requireReachable('SETTLEMENT_URL', config.SETTLEMENT_URL, {
        path: '/v1/info',
        fix: 'start settlement first or fix the URL',
        waitMs: config.STARTUP_WAIT_S * 1000,
      });
    return tracing.flushOnClose(await startRouter(config));
  },
  { listen: { host: 'ROUTER_HOST', port: 'ROUTER_PORT' }, dataDir: 'DATA_DIR' },
);
