// Entry point: `fedai node start` or `node --import tsx services/node/src/main.ts`.
// Settings: environment, then .env / fedai.toml [node] (or FEDAI_CONFIG); see kit's config-file.ts.
// FEDAI_READY_FILE / FEDAI_PORT_FALLBACK (for supervisors such as `fedai up`): see kit's ready-file.ts.
import { runService, startTracing } from '@fed-ai/kit';
import { nodeConfigSchema } from './config';
import { startNode } from './node';

const tracing = await startTracing('node'); // off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
await runService('node', nodeConfigSchema, async (config) => tracing.flushOnClose(await startNode(config)), {
  listen: { host: 'NODE_HOST', port: 'NODE_PORT' },
  dataDir: 'DATA_DIR',
});
