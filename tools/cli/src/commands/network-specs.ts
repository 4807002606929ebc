// The launch settings of a one-router local network, shared by `fedai up` (up.ts) and the
// networks `fedai soak` and `fedai chaos` start (soak-network.ts): the keys in the data folder,
// then relay, settlement, router, wallet fleet and node specs. Callers choose ports and add
// settings of their own (a PostgreSQL database, a shorter reservation timeout).
import { resolve } from 'node:path';
import { loadOrCreateKeyFile } from '@fed-ai/kit';
import { publicKeyOf } from '@fed-ai/protocol';
import type { LaunchSpec } from './up';

export interface NetworkKeys {
  operator: Uint8Array;
  router: Uint8Array;
  settlement: Uint8Array;
  fleet: Uint8Array;
  owner: Uint8Array;
}

/** The network's keys in `dir` (created 0600 on first use). */
export function networkKeys(dir: string): NetworkKeys {
  const key = (name: string) => loadOrCreateKeyFile(resolve(dir, `${name}.key`)).secretKey;
  return {
    operator: key('operator'),
    router: key('router'),
    settlement: key('settlement'),
    fleet: key('wallet-fleet'),
    owner: key('owner'),
  };
}

export function relaySpec(port: number): LaunchSpec {
  return {
    service: 'relay',
    name: 'relay',
    portVar: 'RELAY_PORT',
    preferredPort: port,
    env: { RELAY_HOST: '127.0.0.1' },
    timeoutMs: 30_000,
  };
}

export function settlementSpec(
  dir: string,
  keys: NetworkKeys,
  port: number,
  env: Record<string, string> = {},
): LaunchSpec {
  return {
    service: 'settlement',
    name: 'settlement',
    portVar: 'SETTLEMENT_PORT',
    preferredPort: port,
    env: {
      SETTLEMENT_HOST: '127.0.0.1',
      SETTLEMENT_KEY_FILE: resolve(dir, 'settlement.key'),
      CREATE_KEY: 'true',
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(keys.router),
      SETTLEMENT_OPERATOR_PUBKEYS: publicKeyOf(keys.operator),
      // The wallet fleet banks here (its account: /v1/account/*).
      SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(keys.fleet),
      FAUCET: 'true',
      DATA_DIR: resolve(dir, 'settlement'),
      ...env,
    },
    describe: 'ledger, internal Lightning, devnet faucet',
    identity: { path: '/v1/info', pubkey: publicKeyOf(keys.settlement) },
    timeoutMs: 60_000,
  };
}

export function routerSpec(
  dir: string,
  keys: NetworkKeys,
  port: number,
  urls: { relay: string; settlement: string },
  env: Record<string, string> = {},
): LaunchSpec {
  return {
    service: 'router',
    name: 'router',
    portVar: 'ROUTER_PORT',
    preferredPort: port,
    env: {
      ROUTER_HOST: '127.0.0.1',
      ROUTER_KEY_FILE: resolve(dir, 'router.key'),
      CREATE_KEY: 'true',
      ROUTER_NAME: 'fedai-devnet',
      OPERATOR_PUBKEYS: publicKeyOf(keys.operator),
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      DATA_DIR: resolve(dir, 'router'),
      RELAY_URLS: urls.relay,
      SETTLEMENT_URL: urls.settlement,
      // Pay per request with no account: a request without credentials gets an L402 challenge.
      L402_ENABLED: 'true',
      ...env,
    },
    identity: { path: '/v1/router', pubkey: publicKeyOf(keys.router) },
    timeoutMs: 60_000,
  };
}

export function walletFleetSpec(
  dir: string,
  keys: NetworkKeys,
  port: number,
  urls: { relay: string; settlement: string },
  env: Record<string, string> = {},
): LaunchSpec {
  return {
    service: 'wallet-fleet',
    name: 'wallet-fleet',
    portVar: 'WALLET_FLEET_PORT',
    preferredPort: port,
    env: {
      WALLET_FLEET_HOST: '127.0.0.1',
      WALLET_FLEET_KEY_FILE: resolve(dir, 'wallet-fleet.key'),
      CREATE_KEY: 'true',
      FLEET_OWNER_PUBKEYS: publicKeyOf(keys.owner),
      RELAY_URLS: urls.relay,
      SETTLEMENT_URL: urls.settlement,
      DATA_DIR: resolve(dir, 'wallet-fleet'),
      ...env,
    },
    describe: 'agent wallets over Nostr Wallet Connect',
    identity: { path: '/v1/info', pubkey: publicKeyOf(keys.fleet) },
    timeoutMs: 60_000,
  };
}

/** Node `index` (0-based, named node-<index+1>): priced apart so the scheduler has a choice. */
export function nodeSpec(
  dir: string,
  index: number,
  port: number,
  router: { url: string; pubkey: string },
  modelEnv: Record<string, string>,
  timeoutMs: number,
): LaunchSpec {
  const name = `node-${index + 1}`;
  const key = loadOrCreateKeyFile(resolve(dir, `${name}.key`));
  return {
    service: 'node',
    name,
    portVar: 'NODE_PORT',
    preferredPort: port,
    env: {
      NODE_HOST: '127.0.0.1',
      NODE_KEY_FILE: resolve(dir, `${name}.key`),
      CREATE_KEY: 'true',
      ROUTER_URLS: router.url,
      ROUTER_PUBKEYS: router.pubkey,
      DATA_DIR: resolve(dir, name),
      PRICE_INPUT_MSAT_PER_1K: String(1000 + index * 200),
      PRICE_OUTPUT_MSAT_PER_1K: String(2000 + index * 400),
      HEARTBEAT_INTERVAL_S: '5',
      ...modelEnv,
    },
    identity: { path: '/v1/info', pubkey: publicKeyOf(key.secretKey) },
    timeoutMs,
  };
}
