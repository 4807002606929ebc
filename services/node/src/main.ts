// Entry point: `fedai node start` or `node --import tsx services/node/src/main.ts`.
// Settings: environment, then .env / fedai.toml [node] (or FEDAI_CONFIG); see kit's config-file.ts.
// FEDAI_READY_FILE / FEDAI_PORT_FALLBACK (for supervisors such as `fedai up`): see kit's ready-file.ts.
import { runService } from '@fed-ai/kit';
import { nodeConfigSchema } from './config';
import { startNode } from './node';

await runService('node', nodeConfigSchema, startNode, {
  listen: { host: 'NODE_HOST', port: 'NODE_PORT' },
  dataDir: 'DATA_DIR',
});
