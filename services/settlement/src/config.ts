// Settlement configuration from the environment (or .env / fedai.toml [settlement]), validated at
// start. Public keys may be given as 64-hex or npub1….
import { publicKeyList } from '@fed-ai/kit';
import { z } from 'zod';

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

export const settlementConfigSchema = z.object({
  SETTLEMENT_HOST: z.string().default('127.0.0.1'),
  SETTLEMENT_PORT: z.coerce.number().int().min(0).max(65535).default(7200),
  SETTLEMENT_PUBLIC_URL: z.string().url().optional(),
  SETTLEMENT_KEY: z.string().optional(),
  SETTLEMENT_KEY_FILE: z.string().optional(),
  /** Routers allowed to move money (their pubkeys). */
  SETTLEMENT_ROUTER_PUBKEYS: publicKeyList.default([]),
  /**
   * Services (the wallet fleet) that keep an account here (NIP-98, `/v1/account/*`): each key
   * holds the account `svc:<pubkey>` and sees only its own invoices and payments.
   */
  SETTLEMENT_WALLET_PUBKEYS: publicKeyList.default([]),
  /** Operators allowed to run ledger checks over HTTP (NIP-98). */
  SETTLEMENT_OPERATOR_PUBKEYS: publicKeyList.default([]),
  ROUTER_FEE_BPS: z.coerce.number().int().min(0).max(10_000).default(500),
  FAUCET: bool.default(false),
  /** Only `internal` is built; LND, CLN, LNbits and NWC adapters come later (refused until then). */
  LIGHTNING_BACKEND: z
    .enum(['internal'], {
      error: 'only "internal" is available (lnd, cln, lnbits and nwc are not built yet)',
    })
    .default('internal'),
  SWEEP_INTERVAL_MS: z.coerce.number().int().min(100).max(600_000).default(2_000),
  DATA_DIR: z.string().default('./data/settlement'),
  DATABASE_URL: z.string().optional(),
});
export type SettlementConfig = z.infer<typeof settlementConfigSchema>;
