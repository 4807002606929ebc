// Terminal output: colour only on a TTY (and never with NO_COLOR), JSON for machines, and errors as
// one line — `error: CODE: what is wrong. fix: what to do` — never a stack trace.
export const EXIT = {
  ok: 0,
  failure: 1,
  usage: 2,
  unreachable: 3,
  problemsFound: 4,
} as const;

const useColour = process.stdout.isTTY === true && !process.env.NO_COLOR;
const paint = (code: number) => (text: string) => (useColour ? `\u001b[${code}m${text}\u001b[0m` : text);
export const bold = paint(1);
export const dim = paint(2);
export const red = paint(31);
export const green = paint(32);
export const yellow = paint(33);
export const cyan = paint(36);

export function printJson(value: unknown): void {
  process.stdout.write(`${JSON.stringify(value, null, 2)}\n`);
}

/**
 * The CLI's own reason codes (those a router or service sends come from
 * packages/protocol/src/reasons.ts and pass through as they are), each with its exit code and the
 * fix shown when the caller gives none.
 */
const CLI_REASONS = {
  NO_ROUTER: {
    exit: EXIT.usage,
    fix: 'pass --router URL, set FEDAI_ROUTER_URL, or start a local network with: pnpm fedai up',
  },
  NO_API_KEY: {
    exit: EXIT.usage,
    fix: 'pass --api-key, set FEDAI_API_KEY, or create one with: pnpm fedai apikey create --name me',
  },
  NO_MODEL: { exit: EXIT.usage, fix: 'pass --model ID (pnpm fedai models lists them)' },
  BAD_OPTION: { exit: EXIT.usage, fix: 'see pnpm fedai <command> --help' },
  NO_OPERATOR_KEY: {
    exit: EXIT.usage,
    fix: 'pass --operator-key FILE (pnpm fedai up writes ./data/operator.key)',
  },
  KEY_FILE_EXISTS: { exit: EXIT.usage, fix: 'use --force to keep it and show it, or another --file' },
  NO_KEY_FILE: { exit: EXIT.usage, fix: 'create one with: pnpm fedai keys new' },
  NO_WALLET_FLEET: {
    exit: EXIT.usage,
    fix: 'pass --fleet URL, set FEDAI_WALLET_FLEET_URL, or start a local network with: pnpm fedai up',
  },
  NO_OWNER_KEY: {
    exit: EXIT.usage,
    fix: "pass --owner-key FILE (a key in the fleet's FLEET_OWNER_PUBKEYS; pnpm fedai up writes ./data/owner.key)",
  },
  NO_DEVNET_FAUCET: {
    exit: EXIT.usage,
    fix: "the faucet is the local network's (pnpm fedai up); elsewhere pay the invoice with a Lightning wallet",
  },
  NO_NODE_KEY: {
    exit: EXIT.usage,
    fix: "pass --node-dir DIR (the node's DATA_DIR) or --key FILE (its NODE_KEY_FILE)",
  },
  NO_SETTLEMENT: {
    exit: EXIT.usage,
    fix: 'pass --settlement URL, set SETTLEMENT_URL, or start a local network with: pnpm fedai up',
  },
  TREASURY_NOT_CREDITED: {
    exit: EXIT.failure,
    fix: 'see pnpm fedai wallet treasury in a while; the fleet credits paid invoices on its sweep',
  },
  NETWORK_RUNNING: { exit: EXIT.usage, fix: 'stop it with: pnpm fedai down' },
  NO_LEDGER: {
    exit: EXIT.usage,
    fix: 'pass --database-url, or --settlement URL, or start a network with: pnpm fedai up',
  },
  ROUTER_UNREACHABLE: {
    exit: EXIT.unreachable,
    fix: 'start a local network with: pnpm fedai up (or check --router / FEDAI_ROUTER_URL)',
  },
  SERVICE_UNREACHABLE: { exit: EXIT.unreachable, fix: 'check the URL and that the service runs' },
  BAD_ANSWER: {
    exit: EXIT.failure,
    fix: 'check that the URL is a fed-ai router of this version (pnpm fedai status)',
  },
  NOT_STOPPED: { exit: EXIT.failure, fix: 'stop it by hand: kill <pid>' },
  INTERNAL: { exit: EXIT.failure, fix: 'this is a bug in fedai: please report it with the command you ran' },
} as const satisfies Record<string, { exit: number; fix: string }>;
type CliCode = keyof typeof CLI_REASONS;

/** Fixes for the reason codes a router answers with, where its own hint is missing. */
const ROUTER_FIXES: Record<string, string> = {
  UNAUTHORIZED:
    'the API key is unknown or revoked: pass --api-key, or create one with: pnpm fedai apikey create --name me',
  INSUFFICIENT_BALANCE: 'top up the tab: pnpm fedai tab topup 100000',
  MODEL_NOT_FOUND: 'pnpm fedai models lists the models on this router',
  SETTLEMENT_UNAVAILABLE: 'this router has no reachable settlement service; ask its operator',
  FORBIDDEN: 'this needs a key the router allows (OPERATOR_PUBKEYS or a faucet-enabled devnet)',
};

/** One line, on stderr: the reason code, what is wrong, and how to fix it. */
function errorLine(code: string, message: string, fix?: string): string {
  const oneLine = (text: string) =>
    text
      .replace(/\s+/g, ' ')
      .trim()
      .replace(/[.\s]+$/, '');
  const hint = fix ?? (CLI_REASONS as Record<string, { fix: string }>)[code]?.fix ?? ROUTER_FIXES[code];
  return `error: ${code}: ${oneLine(message)}${hint ? `. fix: ${oneLine(hint)}` : ''}`;
}

/** Prints the error line and exits: with the code's exit status, or `exit` when given. */
export function fail(
  code: CliCode | (string & {}),
  message: string,
  options: { fix?: string; exit?: number } = {},
): never {
  const known = (CLI_REASONS as Record<string, { exit: number }>)[code];
  process.stderr.write(`${errorLine(code, message, options.fix)}\n`);
  process.exit(options.exit ?? known?.exit ?? EXIT.failure);
}

const CONNECTION_ERRORS = new Set(['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'ETIMEDOUT', 'EHOSTUNREACH']);

/**
 * Anything thrown that no command turned into a reason: still one line, never a stack trace. Errors
 * that carry a reason code (the protocol's FedAiError, the SDK's FedAiSdkError) keep theirs.
 */
export function failUnexpected(error: unknown): never {
  const e = error as { name?: unknown; code?: unknown; message?: unknown; hint?: unknown } | null;
  const coded = (e?.name === 'FedAiError' || e?.name === 'FedAiSdkError') && typeof e.code === 'string';
  const message = error instanceof Error ? error.message : String(error);
  if (coded) fail(String(e.code), message, typeof e.hint === 'string' ? { fix: e.hint } : {});
  if (typeof e?.code === 'string' && CONNECTION_ERRORS.has(e.code))
    fail('SERVICE_UNREACHABLE', `${message} (${e.code})`);
  fail('INTERNAL', typeof e?.code === 'string' ? `${message} (${e.code})` : message);
}
