// `fedai wallet …`: the wallet fleet's owner API (docs/wallet-fleet.md), every call NIP-98 signed by
// the owner key. The fleet: --fleet, FEDAI_WALLET_FLEET_URL, then ./data/devnet.json; the key:
// --owner-key, devnet.json's wallet_owner_key_file, then ./data/owner.key.
import { randomBytes } from 'node:crypto';
import { createWriteStream, existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ReadableStream as WebReadableStream } from 'node:stream/web';
import { createNip98Header } from '@fed-ai/protocol';
import { z } from 'zod';
import { dataDir, readDevnet } from '../devnet-file';
import { EXIT, fail, printJson } from '../output';
import { agoText, formatTable, groupDigits, msatAsSat } from '../table';
import { callJson } from './client';
import { readKeyFile } from './key-file';

export interface WalletFlags {
  fleet?: string;
  ownerKey?: string;
  json?: boolean;
}

/** What `wallet create` uses without --policy: live, every method, 100 sat a UTC day. */
export const DEFAULT_POLICY = {
  version: 1,
  mode: 'live',
  maxPaymentMsat: 100_000,
  budgets: [{ id: 'daily', limitMsat: 100_000, period: { kind: 'calendar', unit: 'day', timeZone: 'UTC' } }],
  approvalAboveMsat: 50_000,
  methods: [
    'pay_invoice',
    'make_invoice',
    'lookup_invoice',
    'list_transactions',
    'get_balance',
    'get_info',
    'get_budget',
  ],
} as const;

const msat = z.number().int().nonnegative();
const walletAnswer = z.looseObject({
  id: z.string(),
  name: z.string(),
  group_id: z.string().nullable(),
  status: z.string(),
  policy: z.unknown(),
  policy_hash: z.string(),
  policy_version: z.number().int(),
  created_at_s: z.number().int(),
  balance_msat: msat,
});
type WalletAnswer = z.infer<typeof walletAnswer>;
const listAnswer = z.looseObject({ wallets: z.array(walletAnswer) });
const connectAnswer = z.looseObject({ client_pubkey: z.string(), uri: z.string() });
const okAnswer = z.looseObject({ ok: z.literal(true) });
const fundAnswer = z.looseObject({ ok: z.literal(true), balance_msat: msat });
const treasuryAnswer = z.looseObject({ balance_msat: msat });
const invoiceAnswer = z.looseObject({
  payment_hash: z.string(),
  bolt11: z.string().min(10),
  amount_msat: msat,
  expires_at: z.number().int(),
});
const approvalsAnswer = z.looseObject({
  approvals: z.array(
    z.looseObject({
      id: z.string(),
      wallet_id: z.string(),
      payment_hash: z.string(),
      amount_msat: msat,
      created_at_s: z.number().int(),
      expires_at_s: z.number().int(),
    }),
  ),
});
const stateAnswer = z.looseObject({ state: z.string() });
const switchAnswer = z.looseObject({ scope: z.string(), status: z.string(), previous: z.string() });
const verifyAnswer = z.union([
  z.looseObject({ ok: z.literal(true), count: z.number().int(), headHash: z.string() }),
  z.looseObject({ ok: z.literal(false), seq: z.number().int(), problem: z.string() }),
]);
const faucetAnswer = z.looseObject({});

const env = (name: string): string | undefined => process.env[name] || undefined;
const amountText = (n: number) => `${groupDigits(n)} msat (${msatAsSat(n)} sat)`;

/** The fleet to talk to and the owner key that signs, or a one-line refusal. */
function ownerTarget(flags: WalletFlags): { fleetUrl: string; key: Uint8Array } {
  const devnet = readDevnet();
  const fleetUrl = (flags.fleet || env('FEDAI_WALLET_FLEET_URL') || devnet?.wallet_fleet_url)?.replace(
    /\/+$/,
    '',
  );
  if (!fleetUrl) fail('NO_WALLET_FLEET', 'no wallet fleet to talk to');
  if (!/^https?:\/\/[^/]/.test(fleetUrl))
    fail('BAD_OPTION', `the wallet fleet URL "${fleetUrl}" is not an http(s) URL`, {
      fix: 'pass --fleet http://HOST:PORT',
    });
  const keyPath = resolve(flags.ownerKey ?? devnet?.wallet_owner_key_file ?? resolve(dataDir(), 'owner.key'));
  if (!existsSync(keyPath)) fail('NO_OWNER_KEY', `no owner key at ${keyPath}`);
  try {
    return { fleetUrl, key: readKeyFile(keyPath) };
  } catch {
    fail('BAD_KEY', `the owner key file ${keyPath} does not hold a valid nsec or hex key`, {
      fix: 'pass --owner-key FILE with an nsec or 64-hex secret key',
    });
  }
}

async function owner<T>(
  flags: WalletFlags,
  method: 'GET' | 'POST' | 'PUT' | 'DELETE',
  path: string,
  schema: z.ZodType<T>,
  body?: unknown,
): Promise<T> {
  const { fleetUrl, key } = ownerTarget(flags);
  const text = body === undefined ? undefined : JSON.stringify(body);
  return callJson(fleetUrl, path, schema, {
    method,
    service: 'wallet fleet',
    headers: { authorization: createNip98Header(`${fleetUrl}${path}`, method, text, key) },
    ...(text !== undefined ? { body: text } : {}),
  });
}

const seg = encodeURIComponent;

function amountArg(value: string, what: string, min = 1): number {
  const n = Number(value);
  if (!Number.isSafeInteger(n) || n < min)
    fail('BAD_OPTION', `${what} "${value}" is not a whole number of msat from ${groupDigits(min)} up`, {
      fix: '1 sat = 1000 msat; e.g. 100000',
    });
  return n;
}

/** A policy from a file or stdin ("-"): JSON, validated by the fleet. */
function readPolicy(file: string): unknown {
  let text: string;
  try {
    text = readFileSync(file === '-' ? 0 : resolve(file), 'utf8');
  } catch (error) {
    fail('BAD_OPTION', `cannot read the policy ${file} (${(error as Error).message})`, {
      fix: 'pass --policy FILE with a JSON policy (docs/wallet-fleet.md), or - for stdin',
    });
  }
  try {
    return JSON.parse(text);
  } catch {
    fail('BAD_OPTION', `the policy ${file} is not JSON`, {
      fix: 'a policy is a JSON object (docs/wallet-fleet.md#policy)',
    });
  }
}

const shortHash = (hash: string) => hash.slice(0, 12);

export async function walletCreate(
  flags: WalletFlags & { name: string; group?: string; policy?: string },
): Promise<void> {
  const policy = flags.policy === undefined ? DEFAULT_POLICY : readPolicy(flags.policy);
  const created = await owner(flags, 'POST', '/v1/wallets', walletAnswer, {
    name: flags.name,
    ...(flags.group !== undefined ? { group: flags.group } : {}),
    policy,
  });
  if (flags.json) return printJson(created);
  process.stdout.write(`${created.id}\n`);
  if (flags.policy === undefined)
    process.stdout.write(
      `no --policy given: the default policy (change it with: pnpm fedai wallet policy set ${created.id} --file FILE)\n${JSON.stringify(DEFAULT_POLICY, null, 2)}\n`,
    );
  process.stdout.write(`fund it: pnpm fedai wallet fund ${created.id} <amount_msat>\n`);
}

export async function walletList(flags: WalletFlags): Promise<void> {
  const list = await owner(flags, 'GET', '/v1/wallets', listAnswer);
  if (flags.json) return printJson(list);
  if (list.wallets.length === 0) {
    process.stdout.write('no wallets yet; create one with: pnpm fedai wallet create --name agent\n');
    return;
  }
  process.stdout.write(
    formatTable(
      [
        { header: 'ID' },
        { header: 'NAME' },
        { header: 'GROUP' },
        { header: 'STATUS' },
        { header: 'BALANCE msat', align: 'right' },
        { header: 'POLICY' },
      ],
      list.wallets.map((w) => [
        w.id,
        w.name,
        w.group_id ?? '-',
        w.status,
        groupDigits(w.balance_msat),
        `v${w.policy_version} ${shortHash(w.policy_hash)}`,
      ]),
    ),
  );
}

function walletDetails(w: WalletAnswer): string {
  return [
    `id        ${w.id}`,
    `name      ${w.name}`,
    `group     ${w.group_id ?? '-'}`,
    `status    ${w.status}`,
    `balance   ${amountText(w.balance_msat)}`,
    `created   ${new Date(w.created_at_s * 1000).toISOString()}`,
    `policy    version ${w.policy_version}, sha256 ${w.policy_hash}`,
    JSON.stringify(w.policy, null, 2),
    '',
  ].join('\n');
}

export async function walletShow(id: string, flags: WalletFlags): Promise<void> {
  const wallet = await owner(flags, 'GET', `/v1/wallets/${seg(id)}`, walletAnswer);
  if (flags.json) return printJson(wallet);
  process.stdout.write(walletDetails(wallet));
}

export async function walletPolicySet(id: string, flags: WalletFlags & { file: string }): Promise<void> {
  const wallet = await owner(flags, 'PUT', `/v1/wallets/${seg(id)}/policy`, walletAnswer, {
    policy: readPolicy(flags.file),
  });
  if (flags.json) return printJson(wallet);
  process.stdout.write(
    `${wallet.id}: policy version ${wallet.policy_version}, sha256 ${wallet.policy_hash}\n`,
  );
}

export async function walletConnect(
  id: string,
  flags: WalletFlags & { name?: string; expiresIn?: string },
): Promise<void> {
  let expiresAtS: number | undefined;
  if (flags.expiresIn !== undefined) {
    const seconds = Number(flags.expiresIn);
    if (!Number.isSafeInteger(seconds) || seconds < 1)
      fail('BAD_OPTION', `--expires-in "${flags.expiresIn}" is not a whole number of seconds from 1 up`);
    expiresAtS = Math.floor(Date.now() / 1000) + seconds;
  }
  const made = await owner(flags, 'POST', `/v1/wallets/${seg(id)}/connections`, connectAnswer, {
    name: flags.name ?? 'agent',
    ...(expiresAtS !== undefined ? { expires_at_s: expiresAtS } : {}),
  });
  if (flags.json) return printJson(made);
  process.stdout.write(`${made.uri}\n`);
  process.stderr.write(
    `this URI holds the connection's secret and is shown only now: give it to the agent and keep it private.\n` +
      `client ${made.client_pubkey}${expiresAtS !== undefined ? `, expires ${new Date(expiresAtS * 1000).toISOString()}` : ''}; revoke with: pnpm fedai wallet revoke ${made.client_pubkey}\n`,
  );
}

export async function walletRevoke(clientPubkey: string, flags: WalletFlags): Promise<void> {
  const answer = await owner(flags, 'DELETE', `/v1/connections/${seg(clientPubkey)}`, okAnswer);
  if (flags.json) return printJson(answer);
  process.stdout.write(`revoked ${clientPubkey}\n`);
}

export async function walletFund(
  id: string,
  amount: string,
  flags: WalletFlags & { opId?: string },
): Promise<void> {
  const amountMsat = amountArg(amount, 'the amount');
  const opId = flags.opId ?? `cli-${randomBytes(12).toString('hex')}`;
  if (!/^[A-Za-z0-9_-]{1,64}$/.test(opId))
    fail('BAD_OPTION', `--op-id "${opId}" is not 1..64 of A-Z a-z 0-9 _ -`);
  if (!flags.json && flags.opId === undefined)
    process.stderr.write(
      `op id ${opId} (if this call fails, retry with --op-id ${opId}: the move is made at most once)\n`,
    );
  const answer = await owner(flags, 'POST', `/v1/wallets/${seg(id)}/fund`, fundAnswer, {
    amount_msat: amountMsat,
    op_id: opId,
  });
  if (flags.json) return printJson({ ...answer, op_id: opId });
  process.stdout.write(
    `moved ${amountText(amountMsat)} to ${id}; balance ${amountText(answer.balance_msat)}\n`,
  );
}

export async function walletTreasury(flags: WalletFlags): Promise<void> {
  const treasury = await owner(flags, 'GET', '/v1/treasury', treasuryAnswer);
  if (flags.json) return printJson(treasury);
  process.stdout.write(`treasury  ${amountText(treasury.balance_msat)}\n`);
}

/** How long `treasury topup --faucet` waits for the fleet to credit the paid invoice. */
const CREDIT_WAIT_MS = 15_000;
const CREDIT_POLL_MS = 250;

export async function walletTreasuryTopup(
  amount: string,
  flags: WalletFlags & { faucet?: boolean },
): Promise<void> {
  const amountMsat = amountArg(amount, 'the amount', 1000);
  let faucet: { routerUrl: string; apiKey: string } | undefined;
  if (flags.faucet) {
    const devnet = readDevnet();
    if (!devnet?.router_url || !devnet.api_key)
      fail('NO_DEVNET_FAUCET', 'no local network (./data/devnet.json with router_url and api_key)');
    faucet = { routerUrl: devnet.router_url.replace(/\/+$/, ''), apiKey: devnet.api_key };
  }
  const before = faucet ? (await owner(flags, 'GET', '/v1/treasury', treasuryAnswer)).balance_msat : 0;
  const invoice = await owner(flags, 'POST', '/v1/treasury/invoices', invoiceAnswer, {
    amount_msat: amountMsat,
  });
  let balanceMsat: number | undefined;
  if (faucet) {
    await callJson(faucet.routerUrl, '/v1/tabs/faucet', faucetAnswer, {
      method: 'POST',
      headers: { authorization: `Bearer ${faucet.apiKey}` },
      body: JSON.stringify({ bolt11: invoice.bolt11 }),
    });
    // The fleet credits a paid invoice on its sweep: bounded polling.
    const deadline = Date.now() + CREDIT_WAIT_MS;
    for (;;) {
      const now = (await owner(flags, 'GET', '/v1/treasury', treasuryAnswer)).balance_msat;
      if (now >= before + amountMsat) {
        balanceMsat = now;
        break;
      }
      if (Date.now() >= deadline)
        fail(
          'TREASURY_NOT_CREDITED',
          `the faucet paid the invoice but the treasury did not rise within ${CREDIT_WAIT_MS / 1000} s (payment hash ${invoice.payment_hash})`,
        );
      await new Promise((r) => setTimeout(r, CREDIT_POLL_MS));
    }
  }
  if (flags.json)
    return printJson({
      ...invoice,
      paid_from_faucet: faucet !== undefined,
      ...(balanceMsat !== undefined ? { balance_msat: balanceMsat } : {}),
    });
  process.stdout.write(
    `treasury invoice for ${amountText(invoice.amount_msat)}, expires ${new Date(invoice.expires_at * 1000).toISOString()}:\n${invoice.bolt11}\n`,
  );
  if (balanceMsat !== undefined)
    process.stdout.write(`paid from the devnet faucet; treasury ${amountText(balanceMsat)}\n`);
  else
    process.stdout.write(
      'pay it with a Lightning wallet (on the local network: --faucet); see the balance with: pnpm fedai wallet treasury\n',
    );
}

export async function walletApprovals(flags: WalletFlags): Promise<void> {
  const list = await owner(flags, 'GET', '/v1/approvals', approvalsAnswer);
  if (flags.json) return printJson(list);
  if (list.approvals.length === 0) {
    process.stdout.write('no pending approvals.\n');
    return;
  }
  const nowMs = Date.now();
  process.stdout.write(
    formatTable(
      [
        { header: 'ID' },
        { header: 'WALLET' },
        { header: 'AMOUNT msat', align: 'right' },
        { header: 'PAYMENT HASH' },
        { header: 'EXPIRES IN', align: 'right' },
      ],
      list.approvals.map((a) => [
        a.id,
        a.wallet_id,
        groupDigits(a.amount_msat),
        shortHash(a.payment_hash),
        agoText(Math.max(0, a.expires_at_s * 1000 - nowMs)),
      ]),
    ),
  );
}

export async function walletDecide(approvalId: string, approve: boolean, flags: WalletFlags): Promise<void> {
  const answer = await owner(
    flags,
    'POST',
    `/v1/approvals/${seg(approvalId)}/${approve ? 'approve' : 'deny'}`,
    stateAnswer,
  );
  if (flags.json) return printJson(answer);
  process.stdout.write(`${approvalId}: ${answer.state}\n`);
}

const SWITCH_STATUS = { kill: 'killed', pause: 'paused', revive: 'active' } as const;

export async function walletSwitch(
  action: keyof typeof SWITCH_STATUS,
  walletId: string | undefined,
  flags: WalletFlags & { group?: string; all?: boolean },
): Promise<void> {
  const targets = [walletId !== undefined, flags.group !== undefined, flags.all === true].filter(Boolean);
  if (targets.length !== 1)
    fail('BAD_OPTION', `wallet ${action} takes exactly one of <wallet-id>, --group G, --all`);
  const target =
    walletId !== undefined
      ? { wallet: walletId }
      : flags.group !== undefined
        ? { group: flags.group }
        : { fleet: true };
  const answer = await owner(flags, 'POST', '/v1/switches', switchAnswer, {
    target,
    status: SWITCH_STATUS[action],
  });
  if (flags.json) return printJson(answer);
  process.stdout.write(`${answer.scope}: ${answer.previous} -> ${answer.status}\n`);
}

export async function walletAuditExport(flags: WalletFlags & { out?: string }): Promise<void> {
  const { fleetUrl, key } = ownerTarget(flags);
  const path = '/v1/audit/export';
  const url = `${fleetUrl}${path}`;
  let response: Response;
  try {
    response = await fetch(url, {
      headers: { authorization: createNip98Header(url, 'GET', undefined, key) },
      // The log grows without bound; the stream does not, but give it a limit all the same.
      signal: AbortSignal.timeout(10 * 60_000),
    });
  } catch (error) {
    fail(
      'SERVICE_UNREACHABLE',
      `the wallet fleet at ${fleetUrl} is unreachable (${(error as Error).message})`,
    );
  }
  if (!response.ok || !response.body) {
    // A refusal is JSON with a reason code, as for every other call.
    const e = z
      .looseObject({
        error: z.looseObject({ code: z.string().regex(/^[A-Z][A-Z0-9_]+$/), message: z.string() }),
      })
      .safeParse(await response.json().catch(() => null));
    if (e.success) fail(e.data.error.code, `${e.data.error.message} (HTTP ${response.status} from ${url})`);
    fail('BAD_ANSWER', `${url} answered HTTP ${response.status} without a reason`);
  }
  const body = Readable.fromWeb(response.body as WebReadableStream<Uint8Array>);
  if (flags.out === undefined) {
    await pipeline(body, process.stdout, { end: false });
    return;
  }
  let lines = 0;
  body.on('data', (chunk: Buffer) => {
    for (const byte of chunk) if (byte === 0x0a) lines += 1;
  });
  await pipeline(body, createWriteStream(resolve(flags.out), { mode: 0o600 }));
  if (flags.json) return printJson({ out: resolve(flags.out), entries: lines });
  process.stdout.write(`wrote ${groupDigits(lines)} audit entries to ${resolve(flags.out)}\n`);
}

export async function walletAuditVerify(flags: WalletFlags): Promise<void> {
  const verdict = await owner(flags, 'GET', '/v1/audit/verify', verifyAnswer);
  if (flags.json) printJson(verdict);
  else if (verdict.ok)
    process.stdout.write(
      `ok: ${groupDigits(verdict.count)} entries, head ${verdict.headHash} (anchor it elsewhere: a cut-off last row shows only there)\n`,
    );
  else process.stdout.write(`NOT ok: ${verdict.problem} at seq ${verdict.seq}\n`);
  process.exitCode = verdict.ok ? EXIT.ok : EXIT.problemsFound;
}
