// Fail-closed start (pure): the settings that must stop a service before it opens anything, each
// as an UPPER_SNAKE code, what is wrong (naming the variable) and the fix. `runService` refuses to
// start on the first one (service.ts, `safeStartProblems`); `fedai doctor` reports them all for
// every service it can see. docs/security.md "Safe start" lists them.
//
// Production mode is `FEDAI_ENV=production` (default `development`: a devnet, `fedai up`, tests).
// Some settings are refused in every mode (a secret file others can read; devnet money on
// mainnet); the rest only in production, where a devnet convenience is a hole.
//
// Settings are read by their variable names and accept a parsed config (booleans, defaults
// applied) or raw strings (what doctor sees: `true`/`1` are true, an unset value is the schema's
// default, see SAFE_START_DEFAULTS).

/** What a service's own settings (and runService's FEDAI_ENV / CREATE_KEY / ALLOW_EMBEDDED_DB) say. */
export interface SafeStartInput {
  /** The service (its config section name: router, node, settlement, wallet-fleet, relay, lightning-devnet). */
  service: string;
  settings: Readonly<Record<string, unknown>>;
  /** Permission bits (mode & 0o777) of the secret files that exist, by the path `secretFiles` gave. */
  fileModes: ReadonlyMap<string, number>;
}

export interface StartProblem {
  code: StartProblemCode;
  message: string;
  fix: string;
}

export const START_PROBLEM_CODES = [
  'KEY_FILE_UNSAFE',
  'FAUCET_ON_MAINNET',
  'DEVNET_BACKEND_ON_MAINNET',
  'EMBEDDED_DB_IN_PRODUCTION',
  'FAUCET_IN_PRODUCTION',
  'DEVNET_BACKEND_IN_PRODUCTION',
  'PRIVATE_ADDRESSES_IN_PRODUCTION',
  'CREATE_KEY_IN_PRODUCTION',
  'DEMO_MODEL_IN_PRODUCTION',
  'DEVNET_SERVICE_IN_PRODUCTION',
  'CREDENTIAL_OVER_PLAINTEXT',
] as const;
export type StartProblemCode = (typeof START_PROBLEM_CODES)[number];

/** Schema defaults the rules depend on when a setting is unset (checked against the schemas in tests). */
export const SAFE_START_DEFAULTS = {
  FEDAI_ENV: 'development',
  LIGHTNING_BACKEND: 'internal',
  LIGHTNING_NETWORK: 'regtest',
} as const;

/** The variables the rules read: doctor loads them from env / .env / fedai.toml. */
export const SAFE_START_VARIABLES = [
  'FEDAI_ENV',
  'CREATE_KEY',
  'ALLOW_EMBEDDED_DB',
  'DATA_DIR',
  'DATABASE_URL',
  'ROUTER_KEY',
  'ROUTER_KEY_FILE',
  'NODE_KEY',
  'NODE_KEY_FILE',
  'SETTLEMENT_KEY',
  'SETTLEMENT_KEY_FILE',
  'WALLET_FLEET_KEY',
  'WALLET_FLEET_KEY_FILE',
  'LIGHTNING_DEVNET_KEY',
  'DEVNET_ADMIN_KEY',
  'DEVNET_ADMIN_KEY_FILE',
  'ALLOW_PRIVATE_ENDPOINTS',
  'PAYOUT_ALLOW_PRIVATE',
  'FAUCET',
  'LIGHTNING_BACKEND',
  'LIGHTNING_NETWORK',
  'LNBITS_URL',
  'LND_REST_URL',
  'LND_MACAROON_HEX',
  'LND_MACAROON_FILE',
  'CLN_REST_URL',
  'CLN_RUNE',
  'CLN_RUNE_FILE',
  'DEMO_MODEL',
  'OPENAI_BASE_URL',
  'OPENAI_API_KEY',
] as const;

/** Services that keep a database (DATABASE_URL, else embedded PGlite in DATA_DIR). */
const WITH_DATABASE = new Set(['router', 'node', 'settlement', 'wallet-fleet', 'lightning-devnet']);

/** Each service's identity key: inline variable, file variable, and the default file in DATA_DIR. */
const SERVICE_KEYS: Record<string, { inline: string; file?: string; name: string }[]> = {
  router: [{ inline: 'ROUTER_KEY', file: 'ROUTER_KEY_FILE', name: 'router.key' }],
  node: [{ inline: 'NODE_KEY', file: 'NODE_KEY_FILE', name: 'node.key' }],
  settlement: [{ inline: 'SETTLEMENT_KEY', file: 'SETTLEMENT_KEY_FILE', name: 'settlement.key' }],
  'wallet-fleet': [{ inline: 'WALLET_FLEET_KEY', file: 'WALLET_FLEET_KEY_FILE', name: 'wallet-fleet.key' }],
  'lightning-devnet': [
    { inline: 'LIGHTNING_DEVNET_KEY', name: 'node.key' },
    { inline: 'DEVNET_ADMIN_KEY', file: 'DEVNET_ADMIN_KEY_FILE', name: 'admin.key' },
  ],
};

const text = (settings: SafeStartInput['settings'], key: string): string | undefined => {
  const value = settings[key];
  if (value === undefined || value === null || value === '') return undefined;
  return String(value);
};
const flag = (settings: SafeStartInput['settings'], key: string): boolean => {
  const value = settings[key];
  return value === true || value === 'true' || value === '1';
};

/** FEDAI_ENV=production. */
export function isProduction(settings: SafeStartInput['settings']): boolean {
  return (text(settings, 'FEDAI_ENV') ?? SAFE_START_DEFAULTS.FEDAI_ENV) === 'production';
}

/**
 * The secret files this service reads with these settings (its key file, or the default one in
 * DATA_DIR: variable undefined; the LND macaroon or CLN rune file when that backend reads it). Paths as given
 * (relative to the working directory). TLS certificates are public and not listed.
 */
export function secretFiles(
  service: string,
  settings: SafeStartInput['settings'],
): { variable: string | undefined; path: string }[] {
  const files: { variable: string | undefined; path: string }[] = [];
  const dataDir = text(settings, 'DATA_DIR');
  for (const key of SERVICE_KEYS[service] ?? []) {
    if (text(settings, key.inline)) continue;
    const named = key.file ? text(settings, key.file) : undefined;
    if (named) files.push({ variable: key.file!, path: named });
    else if (dataDir) files.push({ variable: undefined, path: joinPath(dataDir, key.name) });
  }
  if (service === 'settlement') {
    const backend = text(settings, 'LIGHTNING_BACKEND') ?? SAFE_START_DEFAULTS.LIGHTNING_BACKEND;
    const macaroon = text(settings, 'LND_MACAROON_FILE');
    if (backend === 'lnd' && macaroon && !text(settings, 'LND_MACAROON_HEX'))
      files.push({ variable: 'LND_MACAROON_FILE', path: macaroon });
    const rune = text(settings, 'CLN_RUNE_FILE');
    if (backend === 'cln' && rune && !text(settings, 'CLN_RUNE'))
      files.push({ variable: 'CLN_RUNE_FILE', path: rune });
  }
  return files;
}

function joinPath(dir: string, name: string): string {
  return `${dir.replace(/\/+$/, '')}/${name}`;
}

/** http:// to anything but this machine: a bearer credential would cross the network in the clear. */
function plaintextRemote(url: string): boolean {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    return false;
  }
  if (parsed.protocol !== 'http:') return false;
  const host = parsed.hostname.replace(/^\[|\]$/g, '');
  return !(host === 'localhost' || host === '::1' || /^127\./.test(host));
}

/** Every unsafe setting of this service, in a stable order (the first is the one start reports). */
export function unsafeStartProblems(input: SafeStartInput): StartProblem[] {
  const { service, settings } = input;
  const problems: StartProblem[] = [];
  const add = (code: StartProblemCode, message: string, fix: string) => problems.push({ code, message, fix });

  for (const file of secretFiles(service, settings)) {
    const mode = input.fileModes.get(file.path);
    if (mode !== undefined && (mode & 0o077) !== 0)
      add(
        'KEY_FILE_UNSAFE',
        `${file.variable ?? 'key file'} ${file.path} has mode ${mode.toString(8).padStart(4, '0')}: group or others can read it`,
        `chmod 600 ${file.path}`,
      );
  }

  const settles = service === 'settlement';
  const backend = text(settings, 'LIGHTNING_BACKEND') ?? SAFE_START_DEFAULTS.LIGHTNING_BACKEND;
  const network = text(settings, 'LIGHTNING_NETWORK') ?? SAFE_START_DEFAULTS.LIGHTNING_NETWORK;
  const faucet = settles && flag(settings, 'FAUCET');
  if (settles && network === 'mainnet') {
    if (faucet)
      add(
        'FAUCET_ON_MAINNET',
        'FAUCET=true with LIGHTNING_NETWORK=mainnet: the devnet faucet would credit free money on mainnet',
        'unset FAUCET',
      );
    if (backend === 'internal')
      add(
        'DEVNET_BACKEND_ON_MAINNET',
        'LIGHTNING_BACKEND=internal with LIGHTNING_NETWORK=mainnet: the internal backend settles only between its own accounts (regtest invoices)',
        'set LIGHTNING_BACKEND to lnd, cln, lnbits or nwc, or LIGHTNING_NETWORK to regtest for a devnet',
      );
  }

  if (!isProduction(settings)) return problems;
  const devnetFix = 'or leave FEDAI_ENV unset for a devnet';

  if (service === 'lightning-devnet')
    add(
      'DEVNET_SERVICE_IN_PRODUCTION',
      'lightning-devnet is a devnet stand-in for Lightning and FEDAI_ENV=production',
      `run a real Lightning node or wallet (LIGHTNING_BACKEND=lnd, cln, lnbits or nwc at settlement), ${devnetFix}`,
    );
  if (WITH_DATABASE.has(service) && !text(settings, 'DATABASE_URL') && !flag(settings, 'ALLOW_EMBEDDED_DB'))
    add(
      'EMBEDDED_DB_IN_PRODUCTION',
      'DATABASE_URL is unset and FEDAI_ENV=production: the embedded PGlite database in DATA_DIR is for one process on one machine',
      'set DATABASE_URL to a PostgreSQL database (with backups), or ALLOW_EMBEDDED_DB=true to keep the embedded one',
    );
  if (flag(settings, 'CREATE_KEY'))
    add(
      'CREATE_KEY_IN_PRODUCTION',
      'CREATE_KEY=true and FEDAI_ENV=production: a mistyped key path would mint a new identity',
      `create the key once (fedai keys new --file PATH), point *_KEY_FILE at it and unset CREATE_KEY, ${devnetFix}`,
    );
  if (faucet)
    add(
      'FAUCET_IN_PRODUCTION',
      'FAUCET=true and FEDAI_ENV=production: anyone could credit themselves free money',
      `unset FAUCET, ${devnetFix}`,
    );
  if (settles && backend === 'internal')
    add(
      'DEVNET_BACKEND_IN_PRODUCTION',
      'LIGHTNING_BACKEND=internal and FEDAI_ENV=production: invoices would settle only between accounts of this system',
      `set LIGHTNING_BACKEND to lnd, cln, lnbits or nwc (docs/lightning.md), ${devnetFix}`,
    );
  for (const variable of ['ALLOW_PRIVATE_ENDPOINTS', 'PAYOUT_ALLOW_PRIVATE'])
    if (flag(settings, variable) && (variable === 'ALLOW_PRIVATE_ENDPOINTS' ? service === 'router' : settles))
      add(
        'PRIVATE_ADDRESSES_IN_PRODUCTION',
        `${variable}=true and FEDAI_ENV=production: callers could make this service reach private and loopback addresses`,
        `unset ${variable}, ${devnetFix}`,
      );
  if (service === 'node' && flag(settings, 'DEMO_MODEL'))
    add(
      'DEMO_MODEL_IN_PRODUCTION',
      'DEMO_MODEL=true and FEDAI_ENV=production: the demo model answers with canned text and would be paid for it',
      `set MODEL_PATH (a .gguf file) or RUNNER=openai, ${devnetFix}`,
    );
  const credentialUrls: [string, boolean][] = settles
    ? [
        ['LNBITS_URL', backend === 'lnbits'],
        ['LND_REST_URL', backend === 'lnd'],
        ['CLN_REST_URL', backend === 'cln'],
      ]
    : service === 'node'
      ? [['OPENAI_BASE_URL', text(settings, 'OPENAI_API_KEY') !== undefined]]
      : [];
  for (const [variable, used] of credentialUrls) {
    const url = text(settings, variable);
    if (used && url && plaintextRemote(url))
      add(
        'CREDENTIAL_OVER_PLAINTEXT',
        `${variable} is http:// to another machine and FEDAI_ENV=production: its credential would cross the network in the clear`,
        `use https:// for ${variable} (or reach it over 127.0.0.1 through a tunnel)`,
      );
  }
  return problems;
}

/** One line for a problem, as start prints it: `CODE: message — fix`. */
export function startProblemLine(problem: StartProblem): string {
  return `${problem.code}: ${problem.message} — ${problem.fix}`;
}
