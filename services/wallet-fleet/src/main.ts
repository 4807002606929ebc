// Entry point: `node --import tsx services/wallet-fleet/src/main.ts` (or `fedai` once wired).
// Settings: environment, then .env / fedai.toml [wallet-fleet] (or FEDAI_CONFIG); see kit's config-file.ts.
import { runService, startTracing } from '@fed-ai/kit';
import { walletFleetConfigSchema } from './config';
import { startWalletFleet } from './wallet-fleet';

const tracing = await startTracing('wallet-fleet'); // off unless OTEL_EXPORTER_OTLP_ENDPOINT is set
await runService(
  'wallet-fleet',
  walletFleetConfigSchema,
  async (config) => tracing.flushOnClose(await startWalletFleet(config)),
  {
    listen: { host: 'WALLET_FLEET_HOST', port: 'WALLET_FLEET_PORT' },
    dataDir: 'DATA_DIR',
  },
);
