// ./data/devnet.json: the facts of a running local network, for tools, tests and the CLI.
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';

const devnetSchema = z.object({
  version: z.literal(1),
  pid: z.number().int(),
  started_at: z.string(),
  router_url: z.string(),
  router_pubkey: z.string(),
  relay_url: z.string(),
  settlement_url: z.string().optional(),
  /** The wallet fleet of the local network, its owner's key file, and the demo agent's wallet. */
  wallet_fleet_url: z.string().optional(),
  wallet_owner_key_file: z.string().optional(),
  agent_wallet_id: z.string().optional(),
  /** The demo agent's Nostr Wallet Connect URI (holds the connection secret: keep it private). */
  agent_nwc_uri: z.string().optional(),
  api_key: z.string(),
  model: z.string(),
  model_is_demo: z.boolean(),
  nodes: z.array(z.object({ name: z.string(), url: z.string(), pubkey: z.string() })),
  data_dir: z.string(),
  logs_dir: z.string(),
  /** `fedai up --routers N`: every router (the first is `router_url`) and the devnet Lightning service. */
  federation: z
    .object({
      lightning_url: z.string(),
      routers: z.array(
        z.object({
          name: z.string(),
          url: z.string(),
          pubkey: z.string(),
          settlement_url: z.string(),
          models: z.array(z.string()),
        }),
      ),
      /** Served only behind the last router: asked of the first, it is auctioned and offloaded. */
      offload_model: z.string(),
    })
    .optional(),
});
export type Devnet = z.infer<typeof devnetSchema>;

export function dataDir(): string {
  return resolve(process.env.FEDAI_DATA_DIR ?? 'data');
}

export function devnetPath(dir = dataDir()): string {
  return resolve(dir, 'devnet.json');
}

export function readDevnet(dir = dataDir()): Devnet | null {
  const path = devnetPath(dir);
  if (!existsSync(path)) return null;
  const parsed = devnetSchema.safeParse(JSON.parse(readFileSync(path, 'utf8')));
  return parsed.success ? parsed.data : null;
}
