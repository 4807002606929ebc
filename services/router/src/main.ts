// Entry point: `fedai router start` or `node --import tsx services/router/src/main.ts`.
import { loadConfigOrExit } from '@fed-ai/kit';
import { routerConfigSchema } from './config';
import { startRouter } from './router';

const router = await startRouter(loadConfigOrExit(routerConfigSchema)).catch((error: unknown) => {
  process.stderr.write(`router failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
let closing = false;
const shutdown = () => {
  if (closing) return;
  closing = true;
  router.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
  setTimeout(() => process.exit(1), 10_000).unref();
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
