// Router configuration from the environment (or .env / fedai.toml [router]), validated at start.
// Public keys may be given as 64-hex or npub1… (what `fedai keys show` prints first).
import { publicKeyList, publicKeyText, relayUrlList } from '@fed-ai/kit';
import { z } from 'zod';

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const ms = (def: number) => z.coerce.number().int().min(1).max(3_600_000).default(def);

export const routerConfigSchema = z.object({
  ROUTER_HOST: z.string().default('127.0.0.1'),
  ROUTER_PORT: z.coerce.number().int().min(0).max(65535).default(7000),
  ROUTER_PUBLIC_URL: z.string().url().optional(),
  ROUTER_KEY: z.string().optional(),
  ROUTER_KEY_FILE: z.string().optional(),
  ROUTER_NAME: z.string().min(1).max(64).default('fedai-router'),
  OPERATOR_PUBKEYS: publicKeyList.default([]),
  ALLOW_PRIVATE_ENDPOINTS: bool.default(false),
  NODE_ALLOWLIST: publicKeyList.default([]),
  HEARTBEAT_TTL_S: z.coerce.number().int().min(1).max(3600).default(30),
  /** Seconds between active /health probes of every node; 0 turns probing off. */
  PROBE_INTERVAL_S: z.coerce.number().int().min(0).max(3600).default(15),
  MAX_ATTEMPTS: z.coerce.number().int().min(1).max(10).default(3),
  CONNECT_TIMEOUT_MS: ms(3_000),
  FIRST_TOKEN_TIMEOUT_MS: ms(60_000),
  TOTAL_TIMEOUT_MS: ms(600_000),
  MAX_NODES: z.coerce.number().int().min(1).max(1_000_000).default(10_000),
  /** New-node registrations (and endpoint changes) accepted per source IP per hour. */
  REGISTRATIONS_PER_IP_PER_HOUR: z.coerce.number().int().min(1).max(1_000_000).default(30),
  /** New-node registrations accepted per minute, all sources together. */
  REGISTRATIONS_PER_MIN: z.coerce.number().int().min(1).max(1_000_000).default(60),
  /** How long the endpoint challenge of a registering node may take. */
  CHALLENGE_TIMEOUT_MS: z.coerce.number().int().min(100).max(60_000).default(3_000),
  MAX_CONCURRENT_CHALLENGES: z.coerce.number().int().min(1).max(1_000).default(16),
  /** New nodes are on probation this long, or until they served PROBATION_REQUESTS requests. */
  PROBATION_S: z.coerce
    .number()
    .int()
    .min(0)
    .max(30 * 86_400)
    .default(86_400),
  PROBATION_REQUESTS: z.coerce.number().int().min(0).max(1_000_000).default(20),
  MAX_BODY_BYTES: z.coerce
    .number()
    .int()
    .min(1024)
    .max(16 * 1024 * 1024)
    .default(1024 * 1024),
  DEFAULT_MAX_TOKENS: z.coerce.number().int().min(1).max(1_000_000).default(256),
  DATA_DIR: z.string().default('./data/router'),
  DATABASE_URL: z.string().optional(),
  /** Paid mode: reservations, charges and tabs through this settlement service. */
  SETTLEMENT_URL: z.string().url().optional(),
  SETTLEMENT_PUBKEY: publicKeyText.optional(),
  /**
   * How long start waits for a SETTLEMENT_URL that does not answer yet (settlement still starting,
   * as under compose or a supervisor) before it stops with one line; 0: one try.
   */
  STARTUP_WAIT_S: z.coerce.number().int().min(0).max(600).default(15),
  /** After a client leaves, how long a node may take to stop and sign what it generated. */
  CANCEL_GRACE_MS: z.coerce.number().int().min(0).max(60_000).default(5_000),
  /** Base retry interval of the settlement outbox (captures, releases); doubles up to a minute. */
  OUTBOX_RETRY_MS: z.coerce.number().int().min(50).max(60_000).default(1_000),
  RESERVATION_TIMEOUT_S: z.coerce.number().int().min(10).max(86_400).default(900),
  /**
   * Spending leases for well-funded payers (spending-leases.ts): how many requests' bounds a lease
   * holds to start with (it grows up to 64 under concurrency); 0 turns leases off (a reservation
   * per request).
   */
  RESERVE_AHEAD_SLOTS: z.coerce.number().int().min(0).max(64).default(16),
  /**
   * How long captures and releases wait to share one batch envelope to settlement (ms). Neither
   * is on a request's critical path; longer lingers mean fewer, larger ledger transactions
   * (docs/benchmarks.md "Session 11"). Reservations ahead wait at most 5 ms.
   */
  SETTLEMENT_BATCH_LINGER_MS: z.coerce.number().int().min(0).max(1_000).default(50),

  // Replicas on one database (docs/architecture.md "Running more than one replica").
  /** How often the nodes table is re-read (registrations, bans, prices made at other replicas). */
  NODE_RELOAD_MS: z.coerce.number().int().min(100).max(3_600_000).default(5_000),
  /** How long a replica trusts a cached API-key record: the bound for revocations and limit changes. */
  API_KEY_CACHE_TTL_MS: z.coerce.number().int().min(0).max(3_600_000).default(10_000),
  /** Lifetime of an API key's parallel slot without renewal: what a crashed replica's slots cost. */
  KEY_SLOT_LEASE_MS: z.coerce.number().int().min(1_000).max(3_600_000).default(30_000),

  // L402 (docs/l402.md): pay per request with a Lightning invoice, no account. Paid mode only
  // (SETTLEMENT_URL); a chat request without credentials then gets a 402 challenge.
  L402_ENABLED: bool.default(false),
  /** The least a token's invoice asks (msat; a small prepaid credit when a request costs less). */
  L402_MIN_CREDIT_MSAT: z.coerce.number().int().min(1_000).max(100_000_000_000).default(10_000),
  /** How long a token is valid; credit left on an expired token is not spendable. */
  L402_TOKEN_TTL_S: z.coerce
    .number()
    .int()
    .min(60)
    .max(365 * 86_400)
    .default(30 * 86_400),
  /** Challenges (each one a settlement invoice) issued per client address (IPv6: /64) per minute. */
  L402_CHALLENGES_PER_IP_PER_MIN: z.coerce.number().int().min(1).max(100_000).default(30),
  /** Per-token limits, like an API key's. */
  L402_REQUESTS_PER_MIN: z.coerce.number().int().min(1).max(1_000_000).default(120),
  L402_MAX_PARALLEL: z.coerce.number().int().min(1).max(10_000).default(8),

  // Federation (docs/federation.md). Off until FEDERATION_RELAYS names at least one relay.
  FEDERATION_RELAYS: relayUrlList.default([]),
  /** Who counts as a peer: `allowlist` (FEDERATION_ALLOWLIST only), `follows` (the operator's kind-3 contacts and their web of trust), or `open` (anyone not muted). */
  FEDERATION_PEER_MODE: z.enum(['allowlist', 'follows', 'open']).default('allowlist'),
  FEDERATION_ALLOWLIST: publicKeyList.default([]),
  FEDERATION_MUTE: publicKeyList.default([]),
  /** The key whose kind-3 follow list (and kind-10000 mute list) defines peers in `follows` mode. */
  FEDERATION_FOLLOWS_OF: publicKeyText.optional(),
  ANNOUNCE_REFRESH_S: z.coerce.number().int().min(5).max(86_400).default(300),
  /** Offload work no local node can serve to peers (auction). */
  FEDERATION_OFFLOAD: bool.default(true),
  /** Bid for and serve peers' offloaded work. */
  FEDERATION_ACCEPT_OFFLOAD: bool.default(true),
  /** RFBs and NIP-90 jobs taken per pubkey: a burst, then this many per second (the rest ignored). */
  FEDERATION_INBOUND_BURST: z.coerce.number().int().min(1).max(100_000).default(200),
  FEDERATION_INBOUND_PER_S: z.coerce.number().min(0).max(100_000).default(50),
  AUCTION_WINDOW_MS: z.coerce.number().int().min(20).max(10_000).default(400),
  /** Each top-up of a prepaid tab at a peer buys at least this much. */
  PEER_TOPUP_MSAT: z.coerce.number().int().min(1_000).max(1_000_000_000).default(200_000),
  /** The most kept at any one peer (exposure cap). */
  PEER_MAX_TAB_MSAT: z.coerce.number().int().min(1_000).max(100_000_000_000).default(5_000_000),
  PEER_TOPUP_MAX_FEE_MSAT: z.coerce.number().int().min(0).max(10_000_000).default(10_000),
  PEER_CREDIT_WAIT_MS: ms(15_000),
});

export type RouterConfig = z.infer<typeof routerConfigSchema>;
