// The fail-closed start rules (safe-start.ts): each unsafe setting is refused with its code, the
// variable and the fix; the development default (a devnet, `fedai up`, tests) starts as before.
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  SAFE_START_VARIABLES,
  START_PROBLEM_CODES,
  safeStartProblems,
  secretFiles,
  startProblemLine,
  unsafeStartProblems,
} from '../src/index';

const SERVICES = ['router', 'node', 'settlement', 'wallet-fleet', 'relay', 'lightning-devnet'];
const none = new Map<string, number>();
const codes = (service: string, settings: Record<string, unknown>, fileModes = none) =>
  unsafeStartProblems({ service, settings, fileModes }).map((p) => p.code);

test('development mode with the defaults: no problem for any service', () => {
  for (const service of SERVICES) assert.deepEqual(codes(service, {}), [], service);
  // What `fedai up` sets: faucet, private endpoints, created keys, the demo model, PGlite.
  const devnet = { FAUCET: 'true', ALLOW_PRIVATE_ENDPOINTS: 'true', CREATE_KEY: true, DEMO_MODEL: '1' };
  for (const service of SERVICES) assert.deepEqual(codes(service, devnet), [], service);
});

test('production refuses each devnet convenience with its own code, naming the variable and the fix', () => {
  const prod = { FEDAI_ENV: 'production', DATABASE_URL: 'postgres://db/x' };
  const cases: [string, Record<string, unknown>, string, RegExp][] = [
    ['router', { DATABASE_URL: undefined }, 'EMBEDDED_DB_IN_PRODUCTION', /DATABASE_URL/],
    [
      'router',
      { ALLOW_PRIVATE_ENDPOINTS: true },
      'PRIVATE_ADDRESSES_IN_PRODUCTION',
      /ALLOW_PRIVATE_ENDPOINTS/,
    ],
    ['router', { CREATE_KEY: 'true' }, 'CREATE_KEY_IN_PRODUCTION', /CREATE_KEY/],
    ['settlement', { LIGHTNING_BACKEND: 'lnbits', FAUCET: '1' }, 'FAUCET_IN_PRODUCTION', /FAUCET/],
    [
      'settlement',
      { LIGHTNING_BACKEND: undefined },
      'DEVNET_BACKEND_IN_PRODUCTION',
      /LIGHTNING_BACKEND=internal/,
    ],
    [
      'settlement',
      { LIGHTNING_BACKEND: 'lnd', PAYOUT_ALLOW_PRIVATE: 'true' },
      'PRIVATE_ADDRESSES_IN_PRODUCTION',
      /PAYOUT_ALLOW_PRIVATE/,
    ],
    [
      'settlement',
      { LIGHTNING_BACKEND: 'lnd', LND_REST_URL: 'http://lnd.example:8080' },
      'CREDENTIAL_OVER_PLAINTEXT',
      /LND_REST_URL/,
    ],
    ['node', { DEMO_MODEL: 'true' }, 'DEMO_MODEL_IN_PRODUCTION', /DEMO_MODEL/],
    [
      'node',
      { RUNNER: 'openai', OPENAI_BASE_URL: 'http://10.0.0.5:8000/v1', OPENAI_API_KEY: 'sk' },
      'CREDENTIAL_OVER_PLAINTEXT',
      /OPENAI_BASE_URL/,
    ],
    ['lightning-devnet', {}, 'DEVNET_SERVICE_IN_PRODUCTION', /lightning-devnet/],
    ['wallet-fleet', { DATABASE_URL: '' }, 'EMBEDDED_DB_IN_PRODUCTION', /ALLOW_EMBEDDED_DB/],
  ];
  for (const [service, extra, code, words] of cases) {
    const settings = { ...prod, ...(service === 'settlement' ? { LIGHTNING_BACKEND: 'lnd' } : {}), ...extra };
    const problems = unsafeStartProblems({ service, settings, fileModes: none });
    const problem = problems.find((p) => p.code === code);
    assert.ok(problem, `${service} ${JSON.stringify(extra)}: ${JSON.stringify(problems)}`);
    assert.match(startProblemLine(problem), words);
    assert.match(startProblemLine(problem), new RegExp(`^${code}: .+ — .+`));
  }
  // The opt-in keeps the embedded database; loopback http and https carry credentials fine.
  assert.deepEqual(codes('router', { FEDAI_ENV: 'production', ALLOW_EMBEDDED_DB: 'true' }), []);
  for (const url of [
    'http://127.0.0.1:8080',
    'http://localhost:8080',
    'https://lnd.example:8080',
    'http://[::1]:1',
  ])
    assert.deepEqual(codes('settlement', { ...prod, LIGHTNING_BACKEND: 'lnd', LND_REST_URL: url }), [], url);
  // The relay keeps no database and no secret: nothing to refuse.
  assert.deepEqual(codes('relay', { FEDAI_ENV: 'production' }), []);
});

test('mainnet refuses the faucet and the internal backend in every mode', () => {
  assert.deepEqual(codes('settlement', { LIGHTNING_NETWORK: 'mainnet', FAUCET: 'true' }), [
    'FAUCET_ON_MAINNET',
    'DEVNET_BACKEND_ON_MAINNET',
  ]);
  assert.deepEqual(codes('settlement', { LIGHTNING_NETWORK: 'mainnet', LIGHTNING_BACKEND: 'lnd' }), []);
  assert.deepEqual(codes('settlement', { LIGHTNING_NETWORK: 'signet', FAUCET: true }), []);
});

test('secret files readable by group or others are refused, whatever the mode; 0600 and 0400 pass', () => {
  const lnd = { LIGHTNING_BACKEND: 'lnd', LND_MACAROON_FILE: '/m/admin.macaroon', DATA_DIR: '/d' };
  assert.deepEqual(
    secretFiles('settlement', lnd).map((f) => f.path),
    ['/d/settlement.key', '/m/admin.macaroon'],
  );
  // The macaroon file is not read when the hex is given, nor with another backend.
  assert.deepEqual(secretFiles('settlement', { ...lnd, LND_MACAROON_HEX: 'ab', SETTLEMENT_KEY: 'nsec' }), []);
  assert.deepEqual(secretFiles('settlement', { ...lnd, LIGHTNING_BACKEND: 'cln' }).length, 1);
  assert.deepEqual(
    secretFiles('settlement', { LIGHTNING_BACKEND: 'cln', CLN_RUNE_FILE: '/r' }).map((f) => f.variable),
    ['CLN_RUNE_FILE'],
  );
  assert.deepEqual(
    secretFiles('lightning-devnet', { DATA_DIR: '/x', DEVNET_ADMIN_KEY_FILE: '/a.key' }).map((f) => f.path),
    ['/x/node.key', '/a.key'],
  );
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0o777 }), (mode) => {
      const found = unsafeStartProblems({
        service: 'settlement',
        settings: lnd,
        fileModes: new Map([['/m/admin.macaroon', mode]]),
      });
      const unsafe = (mode & 0o077) !== 0;
      assert.equal(found.length, unsafe ? 1 : 0);
      if (unsafe) {
        assert.equal(found[0]!.code, 'KEY_FILE_UNSAFE');
        assert.equal(found[0]!.fix, 'chmod 600 /m/admin.macaroon');
        assert.match(found[0]!.message, /^LND_MACAROON_FILE \/m\/admin\.macaroon has mode 0\d{3}/);
      }
    }),
  );
});

test('property: problems are only known codes, and production never has fewer than development', () => {
  const value = fc.oneof(fc.constant(undefined), fc.constant('true'), fc.constant('false'), fc.string());
  const settings = fc.dictionary(fc.constantFrom(...SAFE_START_VARIABLES), value);
  fc.assert(
    fc.property(fc.constantFrom(...SERVICES), settings, (service, raw) => {
      const dev = codes(service, { ...raw, FEDAI_ENV: 'development' });
      const prod = codes(service, { ...raw, FEDAI_ENV: 'production' });
      for (const code of [...dev, ...prod])
        assert.ok((START_PROBLEM_CODES as readonly string[]).includes(code));
      for (const code of dev) assert.ok(prod.includes(code));
      // Pure: the same input, the same answer.
      assert.deepEqual(codes(service, { ...raw, FEDAI_ENV: 'production' }), prod);
    }),
  );
});

test('safeStartProblems reads the modes of the files on disk', () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-safe-start-'));
  try {
    const key = join(dir, 'router.key');
    writeFileSync(key, 'x');
    chmodSync(key, 0o640);
    assert.deepEqual(
      safeStartProblems('router', { ROUTER_KEY_FILE: key }).map((p) => p.code),
      ['KEY_FILE_UNSAFE'],
    );
    chmodSync(key, 0o600);
    assert.deepEqual(safeStartProblems('router', { ROUTER_KEY_FILE: key }), []);
    // A missing file is start's to report (KEY_FILE_MISSING), not a mode problem.
    assert.deepEqual(safeStartProblems('router', { ROUTER_KEY_FILE: join(dir, 'none') }), []);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
