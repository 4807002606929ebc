// Settlement configuration from the environment (or .env / fedai.toml [settlement]), validated at
// start. Public keys may be given as 64-hex or npub1….
import { publicKeyList } from '@fed-ai/kit';
import { z } from 'zod';

const httpUrl = z
  .string()
  .url('expected an http(s) URL')
  .refine((u) => /^https?:\/\//i.test(u), 'expected an http(s) URL');

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
  /** How long after a charge a payer or node may dispute it (docs/disputes.md). */
  DISPUTE_WINDOW_S: z.coerce
    .number()
    .int()
    .min(60)
    .max(90 * 86_400)
    .default(86_400),
  /**
   * How long start waits for an unreachable Lightning backend (still starting, as in compose or
   * under a supervisor) before it stops with one line; 0: fail at once.
   */
  STARTUP_WAIT_S: z.coerce.number().int().min(0).max(600).default(15),
  /**
   * `internal` (default: invoices settle between accounts of this system), `lnbits` (one LNbits
   * wallet; on a devnet, services/lightning-devnet), `lnd` (LND's REST API), `cln` (Core
   * Lightning's clnrest) or `nwc` (a NIP-47 wallet). Each external backend's variables are
   * required with it, and its balance is asked at start (docs/lightning.md, "Choosing a backend").
   */
  LIGHTNING_BACKEND: z
    .enum(['internal', 'lnbits', 'lnd', 'cln', 'nwc'], {
      error:
        'expected one of "internal", "lnbits", "lnd", "cln", "nwc" (only "internal" is available without a Lightning node or wallet)',
    })
    .default('internal'),
  /**
   * The Bitcoin network the backend's invoices are on. Default `regtest` (a devnet; the internal
   * backend makes regtest invoices). `mainnet` with the internal backend or FAUCET=true is refused
   * at start (kit's safe-start.ts: DEVNET_BACKEND_ON_MAINNET, FAUCET_ON_MAINNET).
   */
  LIGHTNING_NETWORK: z.enum(['mainnet', 'testnet', 'signet', 'regtest']).default('regtest'),
  /** The LNbits server (required when LIGHTNING_BACKEND=lnbits). */
  LNBITS_URL: httpUrl.optional(),
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
  /** LND's REST URL, e.g. `https://127.0.0.1:8080` (required when LIGHTNING_BACKEND=lnd). */
  LND_REST_URL: httpUrl.optional(),
  /**
   * The macaroon (hex) or the file holding it (binary `admin.macaroon`, or hex text); one is
   * required with lnd. Never shown: checked at start, refused without the value.
   */
  LND_MACAROON_HEX: z.string().optional(),
  LND_MACAROON_FILE: z.string().optional(),
  /** LND's `tls.cert` (PEM), for its self-signed certificate. */
  LND_TLS_CERT_FILE: z.string().optional(),
  /** clnrest's URL, e.g. `https://127.0.0.1:3010` (required when LIGHTNING_BACKEND=cln). */
  CLN_REST_URL: httpUrl.optional(),
  /** A rune, or the file holding it; one is required with cln. Never shown. */
  CLN_RUNE: z.string().optional(),
  CLN_RUNE_FILE: z.string().optional(),
  /** clnrest's certificate (PEM), for its self-signed certificate. */
  CLN_TLS_CERT_FILE: z.string().optional(),
  /**
   * The `nostr+walletconnect://…` URI of a NIP-47 wallet (required when LIGHTNING_BACKEND=nwc).
   * It holds the connection's secret: never shown; its form is checked at start.
   */
  NWC_URL: z.string().optional(),
  SWEEP_INTERVAL_MS: z.coerce.number().int().min(100).max(600_000).default(2_000),
  /**
   * How often settlement reconciles its ledger with the Lightning backend (reconcile.ts: credits
   * top-ups settled behind its back, resolves pending payments, reports the balance difference);
   * 0 = off (`POST /v1/admin/reconcile` and `fedai reconcile` still run it on demand).
   */
  RECONCILE_INTERVAL_S: z.coerce.number().int().min(0).max(86_400).default(300),
  /** How often settlement runs `ledger verify` itself and exports the outcome as metrics; 0 = off. */
  LEDGER_VERIFY_INTERVAL_S: z.coerce.number().int().min(0).max(86_400).default(900),
  /** How often settlement pays nodes their earnings (payouts.ts); 0 = only on demand. */
  PAYOUT_INTERVAL_S: z.coerce
    .number()
    .int()
    .min(0)
    .max(7 * 86_400)
    .default(3_600),
  /** A node is paid once its payable earnings reach this (msat). */
  PAYOUT_THRESHOLD_MSAT: z.coerce.number().int().min(1_000).max(Number.MAX_SAFE_INTEGER).default(100_000),
  /** The routing-fee budget of a payout, in basis points of it (the node bears the fee). */
  PAYOUT_MAX_FEE_BPS: z.coerce.number().int().min(0).max(1_000).default(100),
  /** The least routing-fee budget of a payout (msat), whatever its size. */
  PAYOUT_MIN_FEE_MSAT: z.coerce.number().int().min(0).max(1_000_000).default(1_000),
  /**
   * Charges younger than this are not paid out yet, so a dispute on them can still be settled from
   * the node's earnings (never shorter than the dispute window).
   */
  PAYOUT_HOLD_BACK_S: z.coerce
    .number()
    .int()
    .min(0)
    .max(90 * 86_400)
    .default(86_400),
  /** Lightning addresses over http:// and on private addresses (a devnet on 127.0.0.1 only). */
  PAYOUT_ALLOW_PRIVATE: bool.default(false),
  DATA_DIR: z.string().default('./data/settlement'),
  DATABASE_URL: z.string().optional(),
});

type Fields = z.infer<typeof settlementFields>;

/**
 * What each external backend needs: a group is satisfied by any one of its variables. None of a
 * backend's variables set: the line names LIGHTNING_BACKEND and all it needs; some set: the line
 * names the one that is missing. Secrets (keys, macaroons, runes, the NWC URI) are only checked
 * for presence here: a config line shows the value, and a secret must never be printed.
 */
const REQUIRED: Record<'lnd' | 'cln' | 'nwc', { vars: (keyof Fields)[]; what: string }[]> = {
  lnd: [
    { vars: ['LND_REST_URL'], what: "LND's REST URL" },
    { vars: ['LND_MACAROON_HEX', 'LND_MACAROON_FILE'], what: 'the macaroon, hex or its file' },
  ],
  cln: [
    { vars: ['CLN_REST_URL'], what: "clnrest's URL" },
    { vars: ['CLN_RUNE', 'CLN_RUNE_FILE'], what: 'a rune, or its file' },
  ],
  nwc: [{ vars: ['NWC_URL'], what: 'the nostr+walletconnect:// URI' }],
};
const OPTIONAL: Record<'lnd' | 'cln' | 'nwc', (keyof Fields)[]> = {
  lnd: ['LND_TLS_CERT_FILE'],
  cln: ['CLN_TLS_CERT_FILE'],
  nwc: [],
};

const groupName = (vars: (keyof Fields)[]) =>
  vars.length === 1 ? String(vars[0]) : `${vars[0]} (or ${vars.slice(1).join(', ')})`;

/** Each backend's settings are required with it (one line naming the variable). */
export const settlementConfigSchema = settlementFields.superRefine((c, ctx) => {
  const backend = c.LIGHTNING_BACKEND;
  if (backend === 'lnd' || backend === 'cln' || backend === 'nwc') {
    const groups = REQUIRED[backend];
    const any = [...groups.flatMap((g) => g.vars), ...OPTIONAL[backend]].some((v) => c[v] !== undefined);
    if (!any) {
      ctx.addIssue({
        code: 'custom',
        path: ['LIGHTNING_BACKEND'],
        message: `${backend} needs ${groups.map((g) => groupName(g.vars)).join(' and ')}; only "internal" is available without a Lightning node or wallet`,
      });
      return;
    }
    for (const group of groups)
      if (group.vars.every((v) => c[v] === undefined)) {
        ctx.addIssue({
          code: 'custom',
          path: [group.vars[0] as string],
          message: `required when LIGHTNING_BACKEND=${backend} (${group.what}${group.vars.length > 1 ? `: ${groupName(group.vars)}` : ''})`,
        });
        return;
      }
    if (c.FAUCET)
      ctx.addIssue({
        code: 'custom',
        path: ['FAUCET'],
        message: `the devnet faucet works only with LIGHTNING_BACKEND=internal or lnbits, not ${backend}`,
      });
    return;
  }
  if (backend !== 'lnbits') return;
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
