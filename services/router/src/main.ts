// Entry point: `fedai router start` or `node --import tsx services/router/src/main.ts`.
import { runService } from '@fed-ai/kit';
import { routerConfigSchema } from './config';
import { startRouter } from './router';

await runService('router', routerConfigSchema, startRouter);
