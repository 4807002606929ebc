// Devnet Lightning configuration from the environment (or .env / fedai.toml [lightning-devnet]),
// validated at start.
//   LIGHTNING_DEVNET_HOST (default 127.0.0.1), LIGHTNING_DEVNET_PORT (default 7400, 0 = random),
//   DATA_DIR (default ./data/lightning-devnet), DATABASE_URL (PostgreSQL instead of PGlite),
//   DEVNET_ADMIN_KEY or DEVNET_ADMIN_KEY_FILE: guards the devnet-only `/devnet/*` routes (creating
//   wallets). Without either, a key is created in DATA_DIR/admin.key (0600).
//   LIGHTNING_DEVNET_KEY: the node key that signs invoices (hex); default DATA_DIR/node.key.
import { z } from 'zod';

export const devnetConfigSchema = z.object({
  LIGHTNING_DEVNET_HOST: z.string().min(1).default('127.0.0.1'),
  LIGHTNING_DEVNET_PORT: z.coerce.number().int().min(0).max(65535).default(7400),
  DATA_DIR: z.string().default('./data/lightning-devnet'),
  DATABASE_URL: z.string().optional(),
  DEVNET_ADMIN_KEY: z.string().min(16, 'at least 16 characters').max(200).optional(),
  DEVNET_ADMIN_KEY_FILE: z.string().optional(),
  LIGHTNING_DEVNET_KEY: z
    .string()
    .regex(/^[0-9a-fA-F]{64}$/, 'expected a 64-hex secret key')
    .optional(),
});
export type DevnetConfig = z.infer<typeof devnetConfigSchema>;
