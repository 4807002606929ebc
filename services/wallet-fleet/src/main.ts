// Entry point: `node --import tsx services/wallet-fleet/src/main.ts` (or `fedai` once wired).
// Settings: environment, then .env / fedai.toml [wallet-fleet] (or FEDAI_CONFIG); see kit's config-file.ts.
import { runService } from '@fed-ai/kit';
import { walletFleetConfigSchema } from './config';
import { startWalletFleet } from './wallet-fleet';

await runService('wallet-fleet', walletFleetConfigSchema, startWalletFleet, {
  listen: { host: 'WALLET_FLEET_HOST', port: 'WALLET_FLEET_PORT' },
  dataDir: 'DATA_DIR',
});
