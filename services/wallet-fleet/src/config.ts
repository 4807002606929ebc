// Wallet-fleet configuration from the environment (or .env / fedai.toml [wallet-fleet]), validated at
// start. Public keys may be 64-hex or npub1….
import { publicKeyList, relayUrlList } from '@fed-ai/kit';
import { z } from 'zod';

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
export const walletFleetConfigSchema = z.object({
  WALLET_FLEET_HOST: z.string().default('127.0.0.1'),
  WALLET_FLEET_PORT: z.coerce.number().int().min(0).max(65535).default(7300),
  WALLET_FLEET_PUBLIC_URL: z.string().url().optional(),
  /** The NWC service key (signs info, responses, notifications) and the settlement account's key. */
  WALLET_FLEET_KEY: z.string().optional(),
  WALLET_FLEET_KEY_FILE: z.string().optional(),
  /** Owners allowed to hold wallets here (NIP-98 on the owner API). */
  FLEET_OWNER_PUBKEYS: publicKeyList.default([]),
  /** Relays the NWC service listens and answers on. */
  RELAY_URLS: relayUrlList.pipe(z.array(z.string()).min(1, 'give at least one relay URL')),
  /** The settlement service holding the fleet's money (its account there). */
  SETTLEMENT_URL: z.string().url(),
  /** NIP-04 for old clients: off by default (NIP-44 v2 only; NIP-04 requests get UNSUPPORTED_ENCRYPTION). */
  NWC_ALLOW_NIP04: bool.default(false),
  NWC_REQUESTS_PER_MIN: z.coerce.number().int().min(1).max(100_000).default(120),
  NETWORK: z.enum(['mainnet', 'testnet', 'signet', 'regtest']).default('regtest'),
  APPROVAL_TTL_S: z.coerce
    .number()
    .int()
    .min(60)
    .max(7 * 86400)
    .default(3600),
  /** A payment with no known outcome this long is looked up at the backend (above its 10 s timeout). */
  PAYMENT_RECOVER_AFTER_S: z.coerce.number().int().min(11).max(86_400).default(30),
  SWEEP_INTERVAL_MS: z.coerce.number().int().min(100).max(600_000).default(1_000),
  DATA_DIR: z.string().default('./data/wallet-fleet'),
  DATABASE_URL: z.string().optional(),
});
export type WalletFleetConfig = z.infer<typeof walletFleetConfigSchema>;
