// Entry point: `fedai router start` or `node --import tsx services/router/src/main.ts`.
// FEDAI_READY_FILE / FEDAI_PORT_FALLBACK (for supervisors such as `fedai up`): see kit's ready-file.ts.
import { runService } from '@fed-ai/kit';
import { routerConfigSchema } from './config';
import { startRouter } from './router';

await runService('router', routerConfigSchema, startRouter, {
  listen: { host: 'ROUTER_HOST', port: 'ROUTER_PORT' },
});
