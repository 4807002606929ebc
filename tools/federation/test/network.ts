// Three routers, each with its own settlement (LNbits backend on one devnet Lightning service) and
// its own nodes (OpenAI-compatible runner over an upstream test double), federated over one real
// relay. Shared by the federation end-to-end tests and `pnpm bench:federation`.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startPostgres } from '@fed-ai/kit';
import { LnbitsBackend } from '@fed-ai/lightning';
import { devnetConfigSchema, type RunningDevnet, startLightningDevnet } from '@fed-ai/lightning-devnet';
import { nodeConfigSchema, type RunningNode, startNode } from '@fed-ai/node';
import { bytesToHex, createNip98Header, generateSecretKey, publicKeyOf } from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { type RunningRouter, routerConfigSchema, startRouter } from '@fed-ai/router';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '@fed-ai/settlement';
import pg from 'pg';
import { OpenAiUpstreamDouble } from '../../../services/node/test/upstream-double';

export interface NodeSpec {
  model: string;
  inputMsatPer1k: number;
  outputMsatPer1k: number;
}

interface Member {
  name: string;
  router: RunningRouter;
  settlement: RunningSettlement;
  secretKey: Uint8Array;
  pubkey: string;
  nodes: RunningNode[];
  upstreams: OpenAiUpstreamDouble[];
  lnbitsKey: string;
}

export interface FederationNetwork {
  relay: RunningRelay;
  lightning: RunningDevnet;
  mint: LnbitsBackend;
  members: Member[];
  /** Funds a router's own account at its settlement (its float for paying peers). */
  fundFloat(member: Member, amountMsat: number): Promise<void>;
  close(): Promise<void>;
}

const ADMIN_KEY = 'devnet-admin-key-for-tests-only';

async function createWallet(url: string, name: string, mint = false): Promise<string> {
  const response = await fetch(`${url}/devnet/wallets`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-admin-key': ADMIN_KEY },
    body: JSON.stringify({ name, mint }),
  });
  const body = (await response.json()) as { adminkey?: string };
  if (response.status !== 201 || !body.adminkey) throw new Error(`wallet ${name}: ${JSON.stringify(body)}`);
  return body.adminkey;
}

export async function startFederationNetwork(
  specs: NodeSpec[][],
  options: { relayPort?: number; routerEnv?: Record<string, string> } = {},
): Promise<FederationNetwork> {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-federation-'));
  // One PostgreSQL server, a database per service: eleven embedded PGlite starts cost far more CPU.
  const postgres = await startPostgres();
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  let databases = 0;
  const database = async () => {
    const name = `svc${++databases}`;
    await admin.query(`CREATE DATABASE ${name}`);
    return postgres.url.replace(/\/postgres$/, `/${name}`);
  };
  const relay = await startRelay({ port: options.relayPort ?? 0 });
  const lightning = await startLightningDevnet(
    devnetConfigSchema.parse({
      LIGHTNING_DEVNET_PORT: '0',
      DATA_DIR: join(dir, 'ln'),
      DEVNET_ADMIN_KEY: ADMIN_KEY,
      DATABASE_URL: await database(),
    }),
  );
  const mintKey = await createWallet(lightning.url, 'mint', true);
  const mint = new LnbitsBackend({ url: lightning.url, apiKey: mintKey });
  const keys = specs.map(() => generateSecretKey());
  const pubkeys = keys.map((k) => publicKeyOf(k));
  const members: Member[] = [];
  for (const [i, nodeSpecs] of specs.entries()) {
    const name = `r${i + 1}`;
    const lnbitsKey = await createWallet(lightning.url, `settlement-${name}`);
    const settlement = await startSettlement(
      settlementConfigSchema.parse({
        SETTLEMENT_PORT: '0',
        DATA_DIR: join(dir, `${name}-settlement`),
        DATABASE_URL: await database(),
        SETTLEMENT_ROUTER_PUBKEYS: pubkeys[i],
        // The router's own account here: the float it pays peer routers from.
        SETTLEMENT_WALLET_PUBKEYS: pubkeys[i],
        LIGHTNING_BACKEND: 'lnbits',
        LNBITS_URL: lightning.url,
        LNBITS_ADMIN_KEY: lnbitsKey,
        LNBITS_FAUCET_KEY: mintKey,
        FAUCET: 'true',
        SWEEP_INTERVAL_MS: '100',
      }),
    );
    const router = await startRouter(
      routerConfigSchema.parse({
        ROUTER_PORT: '0',
        ROUTER_NAME: `fedai-${name}`,
        ROUTER_KEY: bytesToHex(keys[i]!),
        DATA_DIR: join(dir, name),
        DATABASE_URL: await database(),
        ALLOW_PRIVATE_ENDPOINTS: 'true',
        SETTLEMENT_URL: settlement.url,
        FEDERATION_RELAYS: relay.url,
        FEDERATION_PEER_MODE: 'allowlist',
        FEDERATION_ALLOWLIST: pubkeys.filter((_, j) => j !== i).join(','),
        AUCTION_WINDOW_MS: '2000',
        ANNOUNCE_REFRESH_S: '5',
        PEER_CREDIT_WAIT_MS: '10000',
        ...options.routerEnv,
      }),
    );
    const nodes: RunningNode[] = [];
    const upstreams: OpenAiUpstreamDouble[] = [];
    for (const [j, spec] of nodeSpecs.entries()) {
      const upstream = new OpenAiUpstreamDouble();
      upstream.delayMs = 1;
      await upstream.start();
      upstreams.push(upstream);
      nodes.push(
        await startNode(
          nodeConfigSchema.parse({
            NODE_PORT: '0',
            DATA_DIR: join(dir, `${name}-node${j}`),
            DATABASE_URL: await database(),
            RUNNER: 'openai',
            OPENAI_BASE_URL: upstream.url,
            MODEL_ID: spec.model,
            CONTEXT_SIZE: '1000000',
            PRICE_INPUT_MSAT_PER_1K: String(spec.inputMsatPer1k),
            PRICE_OUTPUT_MSAT_PER_1K: String(spec.outputMsatPer1k),
            ROUTER_URLS: router.url,
            HEARTBEAT_INTERVAL_S: '1',
          }),
        ),
      );
    }
    members.push({
      name,
      router,
      settlement,
      secretKey: keys[i]!,
      pubkey: pubkeys[i]!,
      nodes,
      upstreams,
      lnbitsKey,
    });
  }
  const network: FederationNetwork = {
    relay,
    lightning,
    mint,
    members,
    async fundFloat(member, amountMsat) {
      const url = `${member.settlement.url}/v1/account/invoices`;
      const body = JSON.stringify({ amount_msat: amountMsat });
      const response = await fetch(url, {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          authorization: createNip98Header(url, 'POST', body, member.secretKey),
        },
        body,
      });
      const invoice = (await response.json()) as { bolt11?: string };
      if (!response.ok || !invoice.bolt11) throw new Error(`float invoice: ${JSON.stringify(invoice)}`);
      await mint.payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
    },
    async close() {
      const step = async (what: string, f: () => Promise<unknown>) => {
        const t = setTimeout(() => console.error(`close hangs at ${what}`), 5000);
        await f();
        clearTimeout(t);
      };
      for (const m of members) {
        for (const n of m.nodes) await step(`${m.name} node`, () => n.close());
        await step(`${m.name} router`, () => m.router.close());
        for (const u of m.upstreams) await step('upstream', () => u.stop());
        await step(`${m.name} settlement`, () => m.settlement.close());
      }
      await step('lightning', () => lightning.close());
      await step('relay', () => network.relay.close());
      await admin.end();
      await postgres.stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return network;
}

/** Polls until `check` holds (bounded). */
export async function waitUntil(check: () => boolean | Promise<boolean>, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error('condition not met in time');
}
