// Fail-closed start of the real service entry points (services/<svc>/src/main.ts, spawned): each
// unsafe setting (kit's safe-start.ts) stops the service before it opens anything, with exit 1 and
// ONE line on stderr: `<svc> failed to start: CODE: message — fix`, never a stack or a secret.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { bareServiceEnv, SAFE_START_DEFAULTS, serviceNodeArgs } from '@fed-ai/kit';
import { generateSecretKey, toNsec } from '@fed-ai/protocol';
import { settlementConfigSchema } from '@fed-ai/settlement';

const ROOT = resolve(new URL('../../..', import.meta.url).pathname);
const TSX = new URL(`file://${createRequire(import.meta.url).resolve('tsx/esm')}`).href;
const dir = mkdtempSync(join(tmpdir(), 'fedai-safe-start-'));
const children = new Set<ChildProcess>();
const MACAROON = 'ab'.repeat(64);

after(async () => {
  for (const child of children) {
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Runs the service's entry with only `env` (and PATH), returns its exit code and all its output. */
function start(
  service: string,
  env: Record<string, string>,
): Promise<{ code: number | null; output: string }> {
  const child = spawn(
    process.execPath,
    serviceNodeArgs(join(ROOT, 'services', service, 'src/main.ts'), ['--import', TSX]),
    {
      cwd: dir,
      env: bareServiceEnv({ LOG_LEVEL: 'warn', ...env }),
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  children.add(child);
  let output = '';
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString();
  });
  return new Promise((done) =>
    child.once('exit', (code) => {
      children.delete(child);
      done({ code, output });
    }),
  );
}

function oneLine(output: string): string {
  const lines = output.split('\n').filter((l) => l.trim());
  assert.equal(lines.length, 1, `expected one line, got:\n${output}`);
  assert.doesNotMatch(output, /^\s+at /m);
  return lines[0]!;
}

async function refused(service: string, env: Record<string, string>, code: string, words: RegExp) {
  const result = await start(service, { DATA_DIR: join(dir, `${service}-${code}`), ...env });
  assert.equal(result.code, 1, result.output);
  const line = oneLine(result.output);
  assert.match(line, new RegExp(`^${service} failed to start: ${code}: `));
  assert.match(line, words);
  assert.match(line, / — /, 'the line carries its fix');
  return line;
}

const production = { FEDAI_ENV: 'production' };

test('router: production refuses the embedded database, private endpoints and CREATE_KEY; any mode refuses a readable key file', async () => {
  await refused(
    'router',
    { ...production },
    'EMBEDDED_DB_IN_PRODUCTION',
    /DATABASE_URL is unset.*ALLOW_EMBEDDED_DB=true/,
  );
  await refused(
    'router',
    { ...production, ALLOW_EMBEDDED_DB: 'true', ALLOW_PRIVATE_ENDPOINTS: 'true' },
    'PRIVATE_ADDRESSES_IN_PRODUCTION',
    /unset ALLOW_PRIVATE_ENDPOINTS/,
  );
  await refused(
    'router',
    { ...production, ALLOW_EMBEDDED_DB: 'true', CREATE_KEY: 'true' },
    'CREATE_KEY_IN_PRODUCTION',
    /unset CREATE_KEY/,
  );
  const key = join(dir, 'router.key');
  const nsec = toNsec(generateSecretKey());
  writeFileSync(key, `${nsec}\n`);
  chmodSync(key, 0o644);
  const line = await refused(
    'router',
    { ROUTER_KEY_FILE: key },
    'KEY_FILE_UNSAFE',
    new RegExp(`ROUTER_KEY_FILE ${key} has mode 0644.*chmod 600 ${key}`),
  );
  assert.ok(!line.includes(nsec), 'never the key');
  // Two problems at once: the first, and a pointer to doctor for the rest.
  await refused(
    'router',
    { ...production, ROUTER_KEY_FILE: key, ALLOW_PRIVATE_ENDPOINTS: 'true' },
    'KEY_FILE_UNSAFE',
    /\(and 2 more: fedai doctor lists them\)$/,
  );
  // A bad FEDAI_ENV is a config error (exit 2), not a silent development mode.
  const typo = await start('router', { FEDAI_ENV: 'prod', DATA_DIR: join(dir, 'typo') });
  assert.equal(typo.code, 2);
  assert.match(oneLine(typo.output), /FEDAI_ENV is invalid/);
});

test('settlement: the faucet and the internal backend on mainnet or in production, and a readable macaroon file', async () => {
  await refused(
    'settlement',
    { LIGHTNING_NETWORK: 'mainnet' },
    'DEVNET_BACKEND_ON_MAINNET',
    /LIGHTNING_BACKEND=internal/,
  );
  await refused(
    'settlement',
    { LIGHTNING_NETWORK: 'mainnet', FAUCET: 'true' },
    'FAUCET_ON_MAINNET',
    /FAUCET=true with LIGHTNING_NETWORK=mainnet/,
  );
  await refused(
    'settlement',
    { ...production, ALLOW_EMBEDDED_DB: 'true', FAUCET: 'true' },
    'FAUCET_IN_PRODUCTION',
    /unset FAUCET/,
  );
  await refused(
    'settlement',
    { ...production, ALLOW_EMBEDDED_DB: 'true' },
    'DEVNET_BACKEND_IN_PRODUCTION',
    /set LIGHTNING_BACKEND to lnd, cln, lnbits or nwc/,
  );
  const macaroon = join(dir, 'admin.macaroon');
  writeFileSync(macaroon, Buffer.from(MACAROON, 'hex'));
  chmodSync(macaroon, 0o640);
  await refused(
    'settlement',
    { LIGHTNING_BACKEND: 'lnd', LND_REST_URL: 'https://127.0.0.1:1', LND_MACAROON_FILE: macaroon },
    'KEY_FILE_UNSAFE',
    /LND_MACAROON_FILE \S+admin\.macaroon has mode 0640/,
  );
});

test('settlement: an unreachable Lightning backend fails closed with one line once STARTUP_WAIT_S is spent', async () => {
  const closed = createServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  const port = (closed.address() as { port: number }).port;
  await new Promise((r) => closed.close(r));
  const line = await refused(
    'settlement',
    {
      ...production,
      ALLOW_EMBEDDED_DB: 'true',
      LIGHTNING_BACKEND: 'lnd',
      LIGHTNING_NETWORK: 'signet',
      LND_REST_URL: `https://127.0.0.1:${port}`,
      LND_MACAROON_HEX: MACAROON,
      STARTUP_WAIT_S: '0',
      SETTLEMENT_PORT: '0',
    },
    'UPSTREAM_UNREACHABLE',
    new RegExp(`LND_REST_URL https://127\\.0\\.0\\.1:${port} is unreachable`),
  );
  assert.ok(!line.includes(MACAROON), 'never the macaroon');
});

test('node, wallet fleet and the devnet Lightning service refuse their production hazards', async () => {
  await refused(
    'node',
    { ...production, ALLOW_EMBEDDED_DB: 'true', DEMO_MODEL: 'true' },
    'DEMO_MODEL_IN_PRODUCTION',
    /set MODEL_PATH/,
  );
  await refused(
    'wallet-fleet',
    { ...production, RELAY_URLS: 'ws://127.0.0.1:1', SETTLEMENT_URL: 'http://127.0.0.1:1' },
    'EMBEDDED_DB_IN_PRODUCTION',
    /set DATABASE_URL/,
  );
  await refused('lightning-devnet', { ...production }, 'DEVNET_SERVICE_IN_PRODUCTION', /devnet stand-in/);
});

test('the defaults the rules assume for unset settings are the schema defaults', () => {
  const defaults = settlementConfigSchema.parse({});
  assert.equal(defaults.LIGHTNING_BACKEND, SAFE_START_DEFAULTS.LIGHTNING_BACKEND);
  assert.equal(defaults.LIGHTNING_NETWORK, SAFE_START_DEFAULTS.LIGHTNING_NETWORK);
});
