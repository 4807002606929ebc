// LIGHTNING_BACKEND = internal | lnbits | lnd | cln | nwc: each external backend's missing variable
// is one config line naming it; a bad value, an unreachable server or a refused credential stops
// start with one line naming the variable, never the secret; internal stays the default; and
// GET /v1/backend answers operators which backend runs and whether it answers, without secrets.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { ConfigError, parseConfig, StartError } from '@fed-ai/kit';
import { createNip98Header, generateSecretKey, publicKeyOf } from '@fed-ai/protocol';
import { settlementConfigSchema } from '../src/config';
import { openLightningBackend, startSettlement } from '../src/settlement';

const dir = mkdtempSync(join(tmpdir(), 'fedai-backend-config-'));
const MACAROON = 'deadbeef0123456789abcdef0123456789abcdef';
const RUNE = 'c2VjcmV0LXJ1bmUtdmFsdWU9';
const NWC_SECRET = 'ab'.repeat(32);
const WALLET = 'cd'.repeat(32);
const SECRETS = [MACAROON, RUNE, NWC_SECRET];
let closedPort = 0;
let refusing: Server;
let refusingUrl = '';

before(async () => {
  const closed = createNetServer();
  await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
  closedPort = (closed.address() as { port: number }).port;
  await new Promise<void>((r) => closed.close(() => r()));
  // An LND / clnrest stand-in that refuses every credential (401).
  refusing = createHttpServer((_req, res) => {
    res.writeHead(401, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ code: 2, message: 'verification failed: signature mismatch' }));
  });
  await new Promise<void>((r) => refusing.listen(0, '127.0.0.1', r));
  refusingUrl = `http://127.0.0.1:${(refusing.address() as { port: number }).port}`;
});

after(async () => {
  await new Promise<void>((r) => refusing.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

const nwcUrl = (relay: string, secret = NWC_SECRET) =>
  `nostr+walletconnect://${WALLET}?relay=${encodeURIComponent(relay)}&secret=${secret}`;

function noSecret(message: string): void {
  assert.doesNotMatch(message, /\n/);
  for (const secret of SECRETS) assert.ok(!message.includes(secret), `a secret in: ${message}`);
}

function refusedConfig(env: Record<string, string>, variable: string, pattern: RegExp): void {
  assert.throws(
    () => parseConfig(settlementConfigSchema, env),
    (error: unknown) => {
      assert.ok(error instanceof ConfigError);
      assert.equal(error.variable, variable, error.message);
      assert.match(error.message, pattern);
      noSecret(error.message);
      return true;
    },
  );
}

test('config: internal is the default; each backend without its variables is one line naming them', () => {
  assert.equal(parseConfig(settlementConfigSchema, {}).LIGHTNING_BACKEND, 'internal');
  refusedConfig(
    { LIGHTNING_BACKEND: 'lnd' },
    'LIGHTNING_BACKEND',
    /lnd needs LND_REST_URL and LND_MACAROON_HEX \(or LND_MACAROON_FILE\)/,
  );
  refusedConfig(
    { LIGHTNING_BACKEND: 'cln' },
    'LIGHTNING_BACKEND',
    /cln needs CLN_REST_URL and CLN_RUNE \(or CLN_RUNE_FILE\)/,
  );
  refusedConfig({ LIGHTNING_BACKEND: 'nwc' }, 'LIGHTNING_BACKEND', /nwc needs NWC_URL/);
  refusedConfig({ LIGHTNING_BACKEND: 'eclair' }, 'LIGHTNING_BACKEND', /only "internal" is available/);
  refusedConfig(
    { LIGHTNING_BACKEND: 'lnd', LND_MACAROON_HEX: MACAROON },
    'LND_REST_URL',
    /required when LIGHTNING_BACKEND=lnd/,
  );
  refusedConfig(
    { LIGHTNING_BACKEND: 'lnd', LND_REST_URL: 'http://127.0.0.1:8080' },
    'LND_MACAROON_HEX',
    /LND_MACAROON_HEX \(or LND_MACAROON_FILE\)/,
  );
  refusedConfig(
    { LIGHTNING_BACKEND: 'lnd', LND_REST_URL: 'ftp://x', LND_MACAROON_HEX: MACAROON },
    'LND_REST_URL',
    /http\(s\) URL/,
  );
  refusedConfig({ LIGHTNING_BACKEND: 'cln', CLN_RUNE: RUNE }, 'CLN_REST_URL', /LIGHTNING_BACKEND=cln/);
  refusedConfig(
    { LIGHTNING_BACKEND: 'cln', CLN_REST_URL: 'https://127.0.0.1:3010' },
    'CLN_RUNE',
    /CLN_RUNE \(or CLN_RUNE_FILE\)/,
  );
  refusedConfig(
    { LIGHTNING_BACKEND: 'nwc', NWC_URL: nwcUrl('ws://127.0.0.1:1'), FAUCET: 'true' },
    'FAUCET',
    /only with LIGHTNING_BACKEND=internal or lnbits/,
  );
  const lnd = parseConfig(settlementConfigSchema, {
    LIGHTNING_BACKEND: 'lnd',
    LND_REST_URL: 'https://127.0.0.1:8080',
    LND_MACAROON_FILE: '/x/admin.macaroon',
  });
  assert.equal(lnd.LIGHTNING_BACKEND, 'lnd');
});

/** A whole settlement start with this backend config: rejects with one StartError line. */
async function refusedStart(
  env: Record<string, string>,
  code: string,
  pattern: RegExp,
  name: string,
): Promise<void> {
  const config = settlementConfigSchema.parse({
    SETTLEMENT_PORT: '0',
    DATA_DIR: join(dir, name),
    STARTUP_WAIT_S: '0',
    ...env,
  });
  await assert.rejects(startSettlement(config), (error: unknown) => {
    assert.ok(error instanceof StartError, String(error));
    assert.equal(error.code, code, error.message);
    assert.match(error.message, pattern);
    noSecret(`${error.message} ${error.fix}`);
    return true;
  });
}

test('start: an unreachable LND stops settlement with one line naming the variable, no secret', async () => {
  const down = `http://127.0.0.1:${closedPort}`;
  await refusedStart(
    { LIGHTNING_BACKEND: 'lnd', LND_REST_URL: down, LND_MACAROON_HEX: MACAROON },
    'UPSTREAM_UNREACHABLE',
    /^LND_REST_URL http:\/\/127\.0\.0\.1:\d+ is unreachable/,
    'lnd-down',
  );
});

test('start checks: unreachable clnrest and NWC relays, refused credentials, bad values and unreadable files are one line naming the variable', async () => {
  const open = (config: Parameters<typeof openLightningBackend>[0]) =>
    openLightningBackend(config, {} as never, '');
  const refused = async (config: Parameters<typeof openLightningBackend>[0], code: string, pattern: RegExp) =>
    assert.rejects(open(config), (error: unknown) => {
      assert.ok(error instanceof StartError, String(error));
      assert.equal(error.code, code, error.message);
      assert.match(error.message, pattern);
      noSecret(`${error.message} ${error.fix}`);
      return true;
    });
  // The same check without a whole settlement (the start check alone needs no database).
  await refused(
    { LIGHTNING_BACKEND: 'cln', CLN_REST_URL: `http://127.0.0.1:${closedPort}`, CLN_RUNE: RUNE },
    'UPSTREAM_UNREACHABLE',
    /^CLN_REST_URL http:\/\/127\.0\.0\.1:\d+ is unreachable/,
  );
  await refused(
    { LIGHTNING_BACKEND: 'nwc', NWC_URL: nwcUrl(`ws://127.0.0.1:${closedPort}`) },
    'UPSTREAM_UNREACHABLE',
    /^NWC_URL \(wallet cdcdcdcdcdcd… on ws:\/\/127\.0\.0\.1:\d+\) is unreachable/,
  );
  await refused(
    { LIGHTNING_BACKEND: 'lnd', LND_REST_URL: refusingUrl, LND_MACAROON_HEX: MACAROON },
    'LIGHTNING_KEY_REFUSED',
    /refused LND_MACAROON_HEX/,
  );
  await refused(
    { LIGHTNING_BACKEND: 'cln', CLN_REST_URL: refusingUrl, CLN_RUNE: RUNE },
    'LIGHTNING_KEY_REFUSED',
    /refused CLN_RUNE/,
  );
  await refused(
    { LIGHTNING_BACKEND: 'lnd', LND_REST_URL: refusingUrl, LND_MACAROON_HEX: `${MACAROON}zz` },
    'CONFIG_INVALID',
    /^LND_MACAROON_HEX is invalid/,
  );
  await refused(
    { LIGHTNING_BACKEND: 'lnd', LND_REST_URL: refusingUrl, LND_MACAROON_FILE: join(dir, 'none.macaroon') },
    'CONFIG_INVALID',
    /^LND_MACAROON_FILE \S+none\.macaroon cannot be read \(ENOENT\)/,
  );
  await refused(
    { LIGHTNING_BACKEND: 'nwc', NWC_URL: nwcUrl('ws://127.0.0.1:1', `${NWC_SECRET.slice(0, 60)}zzzz`) },
    'CONFIG_INVALID',
    /^NWC_URL is invalid: the NWC URL must be nostr\+walletconnect:/,
  );
  await refused(
    { LIGHTNING_BACKEND: 'nwc', NWC_URL: `https://x?secret=${NWC_SECRET}` },
    'CONFIG_INVALID',
    /^NWC_URL is invalid/,
  );
  // A binary macaroon file (as LND writes admin.macaroon) is read as bytes and sent as hex.
  const file = join(dir, 'admin.macaroon');
  writeFileSync(file, Buffer.from(MACAROON, 'hex'));
  await refused(
    { LIGHTNING_BACKEND: 'lnd', LND_REST_URL: refusingUrl, LND_MACAROON_FILE: file },
    'LIGHTNING_KEY_REFUSED',
    /refused LND_MACAROON_FILE/,
  );
});

test('GET /v1/backend: operators only; the backend and a balance check, no secrets', async () => {
  const operator = generateSecretKey();
  const settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'route'),
      SETTLEMENT_OPERATOR_PUBKEYS: publicKeyOf(operator),
    }),
  );
  try {
    const url = `${settlement.url}/v1/backend`;
    const ask = (key: Uint8Array) =>
      fetch(url, { headers: { authorization: createNip98Header(url, 'GET', undefined, key) } });
    const ok = await ask(operator);
    assert.equal(ok.status, 200);
    assert.deepEqual(await ok.json(), { backend: 'internal', reachable: true, balance_msat: null });
    assert.equal((await ask(generateSecretKey())).status, 403);
    assert.equal((await fetch(url)).status, 401);
  } finally {
    await settlement.close();
  }
});
