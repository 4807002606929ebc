// Entry point: `fedai settlement start` or `node --import tsx services/settlement/src/main.ts`.
// Settings: environment, then .env / fedai.toml [settlement] (or FEDAI_CONFIG); see kit's config-file.ts.
// FEDAI_READY_FILE / FEDAI_PORT_FALLBACK (for supervisors such as `fedai up`): see kit's ready-file.ts.
import { runService, startTracing } from '@fed-ai/kit';
import { settlementConfigSchema } from './config';
import { startSettlement } from './settlement';

const tracing = await startTracing('settlement'); // off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
await runService(
  'settlement',
  settlementConfigSchema,
  async (config) => tracing.flushOnClose(await startSettlement(config)),
  {
    listen: { host: 'SETTLEMENT_HOST', port: 'SETTLEMENT_PORT' },
    dataDir: 'DATA_DIR',
  },
);
