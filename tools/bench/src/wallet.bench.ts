// pnpm bench:wallet — the wallet fleet over NWC: the unmodified @getalby/sdk NWCClient against a
// relay, a settlement and a wallet fleet in this one process on 127.0.0.1. Interleaved rounds of
// get_balance and pay_invoice (a fresh router tab top-up invoice each); pay/balance in the same run
// is the cost of policy + ledger + the settlement call. Then decisions/s of the pure decide(), and
// policyHash() alone, since decide() hashes the policy on every call.
// `--rounds N` (default 200).
import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { generateSecretKey, mulberry32, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '@fed-ai/settlement';
import {
  decide,
  type PaymentRequest,
  type Policy,
  policyHash,
  policySchema,
  type RunningWalletFleet,
  startWalletFleet,
  type WalletState,
  walletFleetConfigSchema,
} from '@fed-ai/wallet-fleet';
import WebSocket from 'ws';
import { fmt, opsPerSecond, summarize } from './stats';

process.env.LOG_LEVEL ??= 'warn'; // read when each service creates its logger
(globalThis as { WebSocket?: unknown }).WebSocket ??= WebSocket; // @getalby/sdk on Node 20
const { NWCClient } = await import('@getalby/sdk/nwc');

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '200' } } });
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer');

const WARMUP = 5;
const PAY_MSAT = 1000;
const CALL_TIMEOUT_MS = 30_000;
const DECISIONS = 200_000;
const POLICY_RUNS = 5;
const BIG_MSAT = 1_000_000_000_000; // 10^12: budgets that never refuse
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const loadAtStart = loadavg();

// The whole run is bounded: a hang anywhere ends it with exit 1.
const watchdog = setTimeout(
  () => {
    console.error('wallet bench: over 15 minutes, giving up');
    process.exit(1);
  },
  15 * 60_000 + rounds * 2_000,
);
watchdog.unref();

function withTimeout<T>(what: string, promise: Promise<T>, limitMs = CALL_TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer in ${limitMs} ms`)), limitMs);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function until(what: string, check: () => Promise<boolean>, limitMs = 30_000): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < limitMs) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`waited ${limitMs} ms for ${what}`);
}

const sha256Hex = (hex: string) => createHash('sha256').update(Buffer.from(hex, 'hex')).digest('hex');

// ---------------------------------------------------------------- NWC round trips

const dir = mkdtempSync(join(tmpdir(), 'fedai-bench-wallet-'));
const ownerKey = generateSecretKey();
const owner = publicKeyOf(ownerKey);
const fleetKey = generateSecretKey();
let relay: RunningRelay | undefined;
let settlement: RunningSettlement | undefined;
let fleet: RunningWalletFleet | undefined;
let client: InstanceType<typeof NWCClient> | undefined;

interface NwcResult {
  balanceMs: number[];
  payMs: number[];
  balanceCpuMs: number;
  payCpuMs: number;
  failures: string[];
  wallMs: number;
}

async function nwcPhase(): Promise<NwcResult> {
  relay = await startRelay({ port: 0 });
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_HOST: '127.0.0.1',
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      FAUCET: 'true',
      SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(fleetKey),
    }),
  );
  fleet = await startWalletFleet(
    walletFleetConfigSchema.parse({
      WALLET_FLEET_HOST: '127.0.0.1',
      WALLET_FLEET_PORT: '0',
      WALLET_FLEET_KEY: secretKeyHex(fleetKey),
      FLEET_OWNER_PUBKEYS: owner,
      RELAY_URLS: relay.url,
      SETTLEMENT_URL: settlement.url,
      DATA_DIR: join(dir, 'fleet'),
      SWEEP_INTERVAL_MS: '200',
      NWC_REQUESTS_PER_MIN: '100000', // the default 120/min would refuse the bench itself
    }),
  );
  const { fleet: owners } = fleet;
  const books = settlement.books;

  // Wallet through the fleet's own API objects: a policy that never refuses, funded via the treasury.
  const fundMsat = (rounds + WARMUP + 10) * PAY_MSAT;
  const wallet = await owners.createWallet(owner, {
    name: 'bench',
    policy: {
      version: 1,
      mode: 'live',
      budgets: [
        { id: 'daily', limitMsat: BIG_MSAT, period: { kind: 'calendar', unit: 'day', timeZone: 'UTC' } },
      ],
      methods: ['pay_invoice', 'get_balance', 'get_info'],
    },
  });
  const treasuryInvoice = await owners.makeInvoice(owner, null, {
    amountMsat: fundMsat,
    description: 'bench treasury',
    expirySeconds: 600,
  });
  await books.faucetPay(treasuryInvoice.bolt11);
  await until('treasury credited', async () => (await owners.balanceMsat(`treasury:${owner}`)) >= fundMsat);
  await owners.moveFunds(owner, wallet.id, fundMsat, 'bench-fund');
  const connection = await owners.connect(owner, wallet.id, { name: 'bench-agent' });
  client = new NWCClient({
    nostrWalletConnectUrl: `nostr+walletconnect://${fleet.pubkey}?relay=${encodeURIComponent(relay.url)}&secret=${connection.secretHex}`,
  });
  const nwc = client;

  const failures: string[] = [];
  let expectedBalanceMsat = fundMsat;
  const balanceOnce = async () => {
    const answer = await withTimeout('get_balance', nwc.getBalance());
    if (typeof answer.balance !== 'number' || answer.balance !== expectedBalanceMsat)
      failures.push(`get_balance: ${JSON.stringify(answer)}, expected ${expectedBalanceMsat}`);
  };
  const payOnce = async (bolt11: string, paymentHash: string) => {
    const answer = await withTimeout('pay_invoice', nwc.payInvoice({ invoice: bolt11 }));
    if (typeof answer.preimage !== 'string' || sha256Hex(answer.preimage) !== paymentHash)
      failures.push(`pay_invoice: preimage does not match ${paymentHash}`);
    else expectedBalanceMsat -= PAY_MSAT;
  };
  const guarded = async (what: string, fn: () => Promise<void>) => {
    try {
      await fn();
    } catch (error) {
      failures.push(`${what}: ${(error as Error).message}`);
    }
  };

  for (let i = 0; i < WARMUP; i++) {
    await guarded('warm-up get_balance', balanceOnce);
    const invoice = await books.openTopup('bench-key', PAY_MSAT);
    await guarded('warm-up pay_invoice', () => payOnce(invoice.bolt11, invoice.paymentHash));
  }
  if (failures.length > 0)
    return { balanceMs: [], payMs: [], balanceCpuMs: 0, payCpuMs: 0, failures, wallMs: 0 };

  const balanceMs: number[] = [];
  const payMs: number[] = [];
  let balanceCpuUs = 0;
  let payCpuUs = 0;
  const cpuUs = (u: NodeJS.CpuUsage) => u.user + u.system;
  const wallStart = performance.now();
  for (let round = 0; round < rounds; round++) {
    let cpu = process.cpuUsage();
    let start = performance.now();
    await guarded('get_balance', balanceOnce);
    balanceMs.push(performance.now() - start);
    balanceCpuUs += cpuUs(process.cpuUsage(cpu));

    const invoice = await books.openTopup('bench-key', PAY_MSAT); // before the timer starts
    cpu = process.cpuUsage();
    start = performance.now();
    await guarded('pay_invoice', () => payOnce(invoice.bolt11, invoice.paymentHash));
    payMs.push(performance.now() - start);
    payCpuUs += cpuUs(process.cpuUsage(cpu));
  }
  const wallMs = performance.now() - wallStart;
  const tab = await books.tab('bench-key');
  const paidCount = WARMUP + rounds;
  if (tab.balance_msat !== paidCount * PAY_MSAT)
    failures.push(`tab bench-key holds ${tab.balance_msat} msat, expected ${paidCount * PAY_MSAT}`);
  const problems = (await fleet.verifyLedger()).problems;
  if (problems.length > 0) failures.push(`fleet ledger: ${JSON.stringify(problems).slice(0, 300)}`);
  return {
    balanceMs,
    payMs,
    balanceCpuMs: balanceCpuUs / 1000 / rounds,
    payCpuMs: payCpuUs / 1000 / rounds,
    failures,
    wallMs,
  };
}

let cleaned = false;
async function cleanup(): Promise<void> {
  if (cleaned) return;
  cleaned = true;
  client?.close();
  await fleet?.close().catch((e: unknown) => console.error('fleet close:', e));
  await settlement?.close().catch((e: unknown) => console.error('settlement close:', e));
  await relay?.close().catch((e: unknown) => console.error('relay close:', e));
  rmSync(dir, { recursive: true, force: true });
}

// ---------------------------------------------------------------- pure policy

const hexKey = (seed: string) => createHash('sha256').update(seed).digest('hex');
const allowKeys = Array.from({ length: 100 }, (_, i) => hexKey(`allow-${i}`));
const denyKeys = Array.from({ length: 100 }, (_, i) => hexKey(`deny-${i}`));

const benchPolicy: Policy = policySchema.parse({
  version: 1,
  mode: 'live',
  maxPaymentMsat: 500_000,
  budgets: [
    {
      id: 'daily',
      limitMsat: 2_000_000,
      period: { kind: 'calendar', unit: 'day', timeZone: 'Europe/Berlin' },
    },
    {
      id: 'monthly',
      limitMsat: 20_000_000,
      period: { kind: 'calendar', unit: 'month', timeZone: 'America/New_York' },
    },
    { id: 'hourly', limitMsat: 600_000, period: { kind: 'rolling', windowS: 3600 } },
  ],
  allowPayees: allowKeys,
  denyPayees: denyKeys,
  cooldownS: 10,
  maxPayments: { count: 100, windowS: 3600 },
  approvalAboveMsat: 200_000,
  methods: ['pay_invoice', 'get_balance', 'get_info', 'make_invoice'],
});

function buildCases(): { state: WalletState; request: PaymentRequest }[] {
  const random = mulberry32(12); // deterministic: every run judges the same mix
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)]!;
  const nowS = 1_796_000_000;
  const methods = [
    'pay_invoice',
    'pay_invoice',
    'pay_invoice',
    'pay_invoice',
    'get_balance',
    'list_transactions',
  ] as const;
  const statuses = ['active', 'active', 'active', 'active', 'active', 'active', 'paused', 'killed'] as const;
  return Array.from({ length: DECISIONS }, (_, i) => {
    const payeeRoll = random();
    const payee =
      payeeRoll < 0.75
        ? pick(allowKeys)
        : payeeRoll < 0.85
          ? pick(denyKeys)
          : payeeRoll < 0.95
            ? hexKey(`stranger-${i % 1000}`)
            : null;
    return {
      state: {
        nowS,
        lastPaymentAtS: random() < 0.2 ? null : nowS - Math.floor(random() * 60),
        paymentsInWindow: Math.floor(random() * 110),
        spentByBudgetMsat: {
          daily: Math.floor(random() * 2_100_000),
          monthly: Math.floor(random() * 20_000_000),
          hourly: Math.floor(random() * 650_000),
        },
        balanceMsat: Math.floor(random() * 3_000_000),
        status: pick(statuses),
      },
      request: {
        method: pick(methods),
        amountMsat: random() < 0.01 ? 0 : 1 + Math.floor(random() * 600_000),
        payee,
        paymentHash: hexKey(`hash-${i}`),
        approved: random() < 0.1,
      },
    };
  });
}

function policyPhase() {
  const cases = buildCases();
  const outcomes = new Map<string, number>();
  for (const c of cases) {
    const d = decide(benchPolicy, c.state, c.request);
    outcomes.set(d.code, (outcomes.get(d.code) ?? 0) + 1);
  }
  const decideRates = opsPerSecond(
    (i) => {
      const c = cases[i]!;
      if (decide(benchPolicy, c.state, c.request).policyHash.length !== 64) throw new Error('bad hash');
    },
    DECISIONS,
    POLICY_RUNS,
  );
  const hashRates = opsPerSecond(
    () => {
      if (policyHash(benchPolicy).length !== 64) throw new Error('bad hash');
    },
    DECISIONS,
    POLICY_RUNS,
  );
  return { outcomes, decideRate: summarize(decideRates).median, hashRate: summarize(hashRates).median };
}

// ---------------------------------------------------------------- run and report

let exitCode = 0;
try {
  const nwc = await nwcPhase();
  await cleanup();
  const policy = policyPhase();
  const loadAtEnd = loadavg();

  console.log('Wallet fleet over NWC: relay + settlement + fleet + NWCClient in one process, 127.0.0.1');
  console.log(
    `${rounds} rounds (after ${WARMUP} warm-up each), Node ${process.version}, ${new Date().toISOString().slice(0, 10)}, loadavg start ${loadAtStart}, end ${loadAtEnd}`,
  );
  if (nwc.failures.length > 0) {
    console.log(`FAILURES: ${nwc.failures.length}`);
    for (const f of nwc.failures.slice(0, 10)) console.log(`  ${f}`);
    exitCode = 1;
  } else {
    const balance = summarize(nwc.balanceMs);
    const pay = summarize(nwc.payMs);
    console.log('call          median ms   p99 ms   max ms   CPU ms/call   × get_balance');
    const row = (label: string, s: ReturnType<typeof summarize>, cpuMs: number) =>
      console.log(
        `${label.padEnd(13)} ${fmt(s.median, 1).padStart(9)} ${fmt(s.p99, 1).padStart(8)} ${fmt(s.max, 1).padStart(8)} ${fmt(cpuMs, 1).padStart(13)}   ${fmt(s.median / balance.median, 2).padStart(13)}`,
      );
    row('get_balance', balance, nwc.balanceCpuMs);
    row('pay_invoice', pay, nwc.payCpuMs);
    console.log(
      `failures 0; timed phase ${fmt(nwc.wallMs / 1000, 1)} s wall for ${rounds * 2} calls; CPU is the whole process (all four parts)`,
    );
  }
  const decideUs = 1e6 / policy.decideRate;
  const hashUs = 1e6 / policy.hashRate;
  console.log(
    `\nPure policy: ${fmt(DECISIONS)} varied requests, 3 budgets, allow/deny lists of 100 keys, cooldown, maxPayments; median of ${POLICY_RUNS} runs`,
  );
  console.log('                   per s     µs/call');
  console.log(`decide()      ${fmt(policy.decideRate).padStart(10)} ${fmt(decideUs, 2).padStart(11)}`);
  console.log(`policyHash()  ${fmt(policy.hashRate).padStart(10)} ${fmt(hashUs, 2).padStart(11)}`);
  console.log(
    `policyHash is ${fmt((100 * hashUs) / decideUs, 0)}% of a decide() call; decide() without it ≈ ${fmt(Math.max(0, decideUs - hashUs), 2)} µs`,
  );
  const mix = [...policy.outcomes.entries()]
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${code} ${fmt((100 * n) / DECISIONS, 1)}%`)
    .join(', ');
  console.log(`mix: ${mix}`);
} catch (error) {
  console.error('wallet bench failed:', error);
  exitCode = 1;
  await cleanup().catch(() => {});
}
process.exit(exitCode);
