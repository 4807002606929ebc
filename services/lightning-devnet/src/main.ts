// Entry point: `node --import tsx services/lightning-devnet/src/main.ts`. Settings from the
// environment (config.ts); a bad value is one line and exit 2, a start failure one line and exit 1.
// Prints one ready line (JSON, with the URL) once it listens; SIGINT/SIGTERM close it cleanly.
import { createLogger, describeStartError, loadConfigOrExit, lockDataDir } from '@fed-ai/kit';
import { devnetConfigSchema } from './config';
import { startLightningDevnet } from './server';

const config = loadConfigOrExit(devnetConfigSchema);
const logger = createLogger('lightning-devnet');
let lock: { release(): void };
try {
  lock = lockDataDir(config.DATA_DIR);
} catch (error) {
  process.stderr.write(`lightning-devnet failed to start: ${describeStartError(error)}\n`);
  process.exit(1);
}
const running = await startLightningDevnet(config).catch((error: unknown) => {
  process.stderr.write(
    `lightning-devnet failed to start: ${describeStartError(error, { dataDir: config.DATA_DIR })}\n`,
  );
  process.exit(1);
});
logger.info({ url: running.url }, 'lightning-devnet ready (devnet stand-in: settles only its own wallets)');
let closing = false;
const shutdown = () => {
  if (closing) return;
  closing = true;
  setTimeout(() => process.exit(1), 10_000).unref();
  running.close().then(
    () => {
      lock.release();
      process.exit(0);
    },
    () => process.exit(1),
  );
};
process.on('SIGINT', shutdown);
process.on('SIGTERM', shutdown);
