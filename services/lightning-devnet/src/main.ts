// Entry point: `node --import tsx services/lightning-devnet/src/main.ts`. Settings from the
// environment (config.ts); a bad value is one line and exit 2, a start failure one line and exit 1.
// FEDAI_READY_FILE / FEDAI_PORT_FALLBACK (for supervisors such as `fedai up --routers 3`): see
// kit's ready-file.ts. SIGINT/SIGTERM close it cleanly.
import { createLogger, runService } from '@fed-ai/kit';
import { devnetConfigSchema } from './config';
import { startLightningDevnet } from './server';

await runService(
  'lightning-devnet',
  devnetConfigSchema,
  async (config) => {
    const running = await startLightningDevnet(config);
    createLogger('lightning-devnet').info(
      { url: running.url },
      'lightning-devnet ready (devnet stand-in: settles only its own wallets)',
    );
    return running;
  },
  { listen: { host: 'LIGHTNING_DEVNET_HOST', port: 'LIGHTNING_DEVNET_PORT' }, dataDir: 'DATA_DIR' },
);
