// Settlement configuration from the environment (or .env / fedai.toml [settlement]), validated at
// start. Public keys may be given as 64-hex or npub1….
import { publicKeyList } from '@fed-ai/kit';
import { z } from 'zod';

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

const settlementFields = z.object({
  SETTLEMENT_HOST: z.string().default('127.0.0.1'),
  SETTLEMENT_PORT: z.coerce.number().int().min(0).max(65535).default(7200),
  SETTLEMENT_PUBLIC_URL: z.string().url().optional(),
  SETTLEMENT_KEY: z.string().optional(),
  SETTLEMENT_KEY_FILE: z.string().optional(),
  /** Routers allowed to move money (their pubkeys). */
  SETTLEMENT_ROUTER_PUBKEYS: publicKeyList.default([]),
  /**
   * Services (the wallet fleet) that keep an account here (NIP-98, `/v1/account/*`): each key
   * holds the account `svc:<pubkey>` and sees only its own invoices and payments. A federating
   * router is listed here too: its account is the float it pays peer routers from, and offload
   * captures credit the peer's cost back to it.
   */
  SETTLEMENT_WALLET_PUBKEYS: publicKeyList.default([]),
  /** Operators allowed to run ledger checks over HTTP (NIP-98). */
  SETTLEMENT_OPERATOR_PUBKEYS: publicKeyList.default([]),
  ROUTER_FEE_BPS: z.coerce.number().int().min(0).max(10_000).default(500),
  /** Fee, on top of a peer router's cost, for a request offloaded to that peer (federation). */
  OFFLOAD_FEE_BPS: z.coerce.number().int().min(0).max(10_000).default(500),
  FAUCET: bool.default(false),
  /**
   * `internal` (default: invoices settle between accounts of this system) or `lnbits` (one LNbits
   * wallet, LNBITS_URL + LNBITS_ADMIN_KEY; on a devnet, services/lightning-devnet). LND, CLN and
   * NWC adapters come later (refused until then).
   */
  LIGHTNING_BACKEND: z
    .enum(['internal', 'lnbits'], {
      error:
        'expected "internal" or "lnbits" (lnd, cln and nwc are not built yet; only "internal" is available without an LNbits server)',
    })
    .default('internal'),
  /** The LNbits server (required when LIGHTNING_BACKEND=lnbits). */
  LNBITS_URL: z
    .string()
    .url('expected an http(s) URL')
    .refine((u) => /^https?:\/\//i.test(u), 'expected an http(s) URL')
    .optional(),
  /**
   * The admin key of settlement's LNbits wallet (required when LIGHTNING_BACKEND=lnbits). Not
   * checked for form here: a config error line shows the value, and a key must never be printed;
   * LNbits refuses a wrong key at start (the balance check).
   */
  LNBITS_ADMIN_KEY: z.string().optional(),
  /**
   * Devnet faucet with the lnbits backend: the admin key of the devnet mint wallet. The faucet
   * pays top-up invoices from it, so real devnet Lightning money arrives (required when
   * LIGHTNING_BACKEND=lnbits and FAUCET=true).
   */
  LNBITS_FAUCET_KEY: z.string().optional(),
  SWEEP_INTERVAL_MS: z.coerce.number().int().min(100).max(600_000).default(2_000),
  DATA_DIR: z.string().default('./data/settlement'),
  DATABASE_URL: z.string().optional(),
});

/** LNbits settings are required with the lnbits backend (one line naming the variable). */
export const settlementConfigSchema = settlementFields.superRefine((c, ctx) => {
  if (c.LIGHTNING_BACKEND !== 'lnbits') return;
  if (!c.LNBITS_URL)
    ctx.addIssue({
      code: 'custom',
      path: ['LNBITS_URL'],
      message: 'required when LIGHTNING_BACKEND=lnbits',
    });
  if (!c.LNBITS_ADMIN_KEY)
    ctx.addIssue({
      code: 'custom',
      path: ['LNBITS_ADMIN_KEY'],
      message: "required when LIGHTNING_BACKEND=lnbits (the admin key of settlement's LNbits wallet)",
    });
  if (c.FAUCET && !c.LNBITS_FAUCET_KEY)
    ctx.addIssue({
      code: 'custom',
      path: ['LNBITS_FAUCET_KEY'],
      message:
        'required when LIGHTNING_BACKEND=lnbits and FAUCET=true (the admin key of the devnet mint wallet)',
    });
});
export type SettlementConfig = z.infer<typeof settlementConfigSchema>;
