// `pnpm containers:env <file>`: the secrets of one compose stack (infra/docker-compose.yml) as an
// env file: each service's key (hex) and the public keys the others need, the operator and fleet
// owner keys, the PostgreSQL password and the devnet admin key. Refuses to overwrite a file (a new
// router or settlement key would orphan the money and API keys in the database).
import { randomBytes } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';

export type StackEnv = Record<string, string>;

/** Fresh keys for every role; `*_KEY` secret (hex), `*_PUBKEY` its x-only public key. */
export function generateStackEnv(): StackEnv {
  const env: StackEnv = {};
  for (const role of [
    'ROUTER',
    'SETTLEMENT',
    'WALLET_FLEET',
    'NODE',
    'OPERATOR',
    'OWNER',
    'LIGHTNING_DEVNET',
  ]) {
    const secret = generateSecretKey();
    env[`${role}_KEY`] = secretKeyHex(secret);
    env[`${role}_PUBKEY`] = publicKeyOf(secret);
  }
  env.POSTGRES_PASSWORD = randomBytes(18).toString('base64url');
  env.DEVNET_ADMIN_KEY = randomBytes(24).toString('base64url');
  env.GRAFANA_ADMIN_PASSWORD = randomBytes(12).toString('base64url');
  return env;
}

export function formatEnv(env: StackEnv): string {
  return `# fed-ai compose stack secrets (tools/containers/src/stack-env.ts). Keep private.\n${Object.entries(
    env,
  )
    .map(([k, v]) => `${k}=${v}`)
    .join('\n')}\n`;
}

export function writeStackEnv(path: string, env: StackEnv = generateStackEnv()): StackEnv {
  writeFileSync(path, formatEnv(env), { mode: 0o600, flag: 'wx' });
  return env;
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const path = resolve(process.argv[2] ?? 'infra/.env');
  if (existsSync(path)) {
    console.error(`${path} exists: keeping it (delete it to start a new stack with new keys)`);
    process.exit(1);
  }
  writeStackEnv(path);
  console.log(`wrote ${path} (mode 0600)`);
}
