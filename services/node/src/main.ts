// Entry point: `fedai node start` or `node --import tsx services/node/src/main.ts`.
import { loadConfigOrExit } from '@fed-ai/kit';
import { nodeConfigSchema } from './config';
import { startNode } from './node';

const node = await startNode(loadConfigOrExit(nodeConfigSchema)).catch((error: unknown) => {
  process.stderr.write(`node failed to start: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
let closing = false;
const shutdown = () => {
  if (closing) return;
  closing = true;
  node.close().then(
    () => process.exit(0),
    () => process.exit(1),
  );
  setTimeout(() => process.exit(1), 10_000).unref();
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
