// Entry point: `fedai settlement start` or `node --import tsx services/settlement/src/main.ts`.
import { loadConfigOrExit } from '@fed-ai/kit';
import { settlementConfigSchema } from './config';
import { startSettlement } from './settlement';

const settlement = await startSettlement(loadConfigOrExit(settlementConfigSchema)).catch((error: unknown) => {
  process.stderr.write(
    `settlement failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});
let closing = false;
const shutdown = () => {
  if (closing) return;
  closing = true;
  settlement.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
  setTimeout(() => process.exit(1), 10_000).unref();
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
