// `fedai chaos --minutes N [--seed S]`: the network and paid load of `fedai soak` (soak-network.ts),
// with faults injected on a seeded schedule (chaos-core.ts): SIGKILL and restart of one service,
// relay restart, a node stopped (SIGSTOP) for a few seconds, settlement slowed behind a delaying
// proxy (chaos-proxy.ts, the router's SETTLEMENT_URL), and with --postgres a crash and restart of
// the PostgreSQL server router, settlement and wallet fleet share. After the load, once the tab settles:
// ledger verify, the tab's charges against the answers the clients received, reservations left,
// nodes serving; JSON and Markdown to --out.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { openDb, type PostgresServer, readReadyFile, startPostgres } from '@fed-ai/kit';
import { bold, EXIT, fail, green, red } from '../output';
import {
  buildChaosReport,
  type ChaosReport,
  type ChargeRow,
  type Fault,
  type FaultRun,
  formatChaosReport,
  type LedgerOutcome,
  newChargeLog,
  observeCharges,
  parseAnswer,
  planFaults,
  reconcile,
} from './chaos-core';
import { type DelayProxy, startDelayProxy } from './chaos-proxy';
import { promValue } from './soak-core';
import {
  FUND_MSAT,
  type Network,
  positive,
  runClient,
  startNetwork,
  tabCall,
  verifyLedgerAt,
} from './soak-network';
import { sleep, superviseNetwork, waitFor } from './up';

export interface ChaosFlags {
  minutes?: string;
  seed?: string;
  out?: string;
  clients?: string;
  model?: string;
  reservationTimeoutS?: string;
  keepData?: boolean;
  /** Router, settlement and wallet fleet on one PostgreSQL server, which faults crash and restart. */
  postgres?: boolean;
}

const MAX_MINUTES = 24 * 60;
const MAX_FAILURE_CODES = 50;
/** How many charges `/v1/tabs/me` lists (settlement's default): looked at every second. */
const TAB_LIST_LIMIT = 20;
const TAB_LOOK_EVERY_MS = 1000;
/** After the load: how long to wait for reservations to be released (or time out) and breakers to close. */
const settleTimeoutMs = (reservationTimeoutS: number) =>
  Math.min(3_600_000, 60_000 + 2 * reservationTimeoutS * 1000);
const NODES = ['node-1', 'node-2'];
const KILL_TARGETS = ['router', 'settlement', ...NODES, 'wallet-fleet'];

export async function chaos(flags: ChaosFlags): Promise<void> {
  const minutes = positive('minutes', flags.minutes, 10, MAX_MINUTES);
  const clients = positive('clients', flags.clients, 4, 16);
  if (!Number.isInteger(clients))
    fail('BAD_OPTION', `--clients takes a whole number from 1 to 16 (got ${flags.clients})`, {
      exit: EXIT.usage,
    });
  const seed = flags.seed === undefined ? Math.floor(Math.random() * 2 ** 32) : Number(flags.seed);
  if (!Number.isSafeInteger(seed) || seed < 0 || seed >= 2 ** 32)
    fail('BAD_OPTION', `--seed takes a whole number from 0 to 2^32 - 1 (got ${flags.seed})`, {
      exit: EXIT.usage,
    });
  const reservationTimeoutS = positive('reservation-timeout-s', flags.reservationTimeoutS, 60, 86_400);
  if (!Number.isInteger(reservationTimeoutS) || reservationTimeoutS < 10)
    fail(
      'BAD_OPTION',
      `--reservation-timeout-s takes a whole number from 10 to 86400 (got ${flags.reservationTimeoutS})`,
      {
        exit: EXIT.usage,
      },
    );
  const outDir = resolve(flags.out ?? join(process.cwd(), 'data', 'chaos'));
  if (process.platform !== 'linux')
    fail('BAD_OPTION', 'fedai chaos sends POSIX signals to its children; Linux only', { exit: EXIT.usage });

  const dir = mkdtempSync(join(tmpdir(), 'fedai-chaos-'));
  let failed = false;
  /** A node stopped by a stall: continued on every way out, so that stopAll can stop it. */
  let stalledPid: number | null = null;
  const resume = () => {
    if (stalledPid !== null) signal(stalledPid, 'SIGCONT');
    stalledPid = null;
  };
  process.on('exit', (code) => {
    resume();
    // A service that exited unexpectedly ends the run through the supervisor (code 1): keep its logs.
    if (!failed && code === 0 && !flags.keepData) rmSync(dir, { recursive: true, force: true });
    else process.stderr.write(`chaos data and logs kept in ${dir}\n`);
  });
  process.on('SIGINT', resume);
  process.on('SIGTERM', resume);
  let postgres: PostgresServer | null = null;
  const { launch, restart, stopAll, step } = superviseNetwork(dir, async () => {
    await postgres?.stop();
  });
  let proxy: DelayProxy | null = null;
  try {
    step(`chaos: a fresh network in ${dir} for ${minutes} min, ${clients} clients, seed ${seed}`);
    let databaseUrls: Awaited<ReturnType<typeof createDatabases>> | undefined;
    if (flags.postgres) {
      postgres = await startPostgres({ durableCommits: true });
      databaseUrls = await createDatabases(postgres.url);
      step(`PostgreSQL on port ${postgres.port}: databases router, settlement, wallet_fleet`);
    }
    const net = await startNetwork(dir, flags.model, launch, step, {
      ...(databaseUrls ? { databaseUrls } : {}),
      // Holds a SIGKILLed router left at settlement are freed only when they time out.
      routerEnv: { RESERVATION_TIMEOUT_S: String(reservationTimeoutS) },
      routerSettlementUrl: async (settlementUrl) => {
        proxy = await startDelayProxy(new URL(settlementUrl));
        return proxy.url;
      },
    });
    const durationMs = Math.round(minutes * 60_000);
    const plan = planFaults({
      seed,
      durationMs,
      startMs: 10_000,
      endMarginMs: 20_000,
      minGapMs: 4_000,
      maxGapMs: 12_000,
      killTargets: KILL_TARGETS,
      nodes: NODES,
      slowSettlement: proxy !== null,
      postgres: postgres !== null,
    });
    step(`${plan.length} faults planned (seed ${seed})`);

    const answers = new Map<string, number>();
    const requests = { ok: 0, failed: 0, failuresByCode: {} as Record<string, number> };
    const countFailure = (code: string) => {
      requests.failed++;
      const key =
        code in requests.failuresByCode || Object.keys(requests.failuresByCode).length < MAX_FAILURE_CODES
          ? code
          : 'OTHER';
      requests.failuresByCode[key] = (requests.failuresByCode[key] ?? 0) + 1;
    };
    const t0 = Date.now();
    const deadline = t0 + durationMs;
    const startedAt = new Date().toISOString();
    const load = Promise.all(
      Array.from({ length: clients }, (_, client) =>
        runClient(client, deadline, net, (_ok, code, body) => {
          if (body === null) return countFailure(code);
          const answer = parseAnswer(body);
          if (!answer.ok) return countFailure(answer.code);
          requests.ok++;
          answers.set(answer.requestId, answer.costMsat);
        }),
      ),
    );

    const charges = newChargeLog();
    let looking = true;
    const lookAtTab = async () => {
      const me = await tabCall(net, 'me');
      const rows = Array.isArray(me.charges) ? me.charges : [];
      observeCharges(
        charges,
        rows.flatMap((row): ChargeRow[] => {
          const r = row as { request_id?: unknown; amount_msat?: unknown };
          return typeof r.request_id === 'string'
            ? [{ requestId: r.request_id, amountMsat: Number(r.amount_msat) }]
            : [];
        }),
        TAB_LIST_LIMIT,
      );
      return { balance: Number(me.balance_msat), reserved: Number(me.reserved_msat) };
    };
    const looker = (async () => {
      while (looking) {
        await lookAtTab().catch(() => undefined); // a fault may have the router or settlement down
        await sleep(TAB_LOOK_EVERY_MS);
      }
    })();

    const faults: FaultRun[] = [];
    for (const fault of plan) {
      const wait = t0 + fault.atMs - Date.now();
      if (wait > 0) await sleep(wait);
      if (Date.now() >= deadline) break;
      const startedMs = Date.now() - t0;
      const error = await inject(fault, {
        dir,
        restart,
        proxy,
        postgres,
        onStall: (pid) => (stalledPid = pid),
        resume,
      });
      faults.push({ ...fault, startedMs, tookMs: Date.now() - t0 - startedMs, ...(error ? { error } : {}) });
      step(
        `${Math.round(startedMs / 1000)} s: ${fault.kind} ${fault.target}${error ? ` FAILED: ${error}` : ''}; ${requests.ok} ok, ${requests.failed} failed`,
      );
    }
    await load;

    step('load done: waiting for the tab to settle and the nodes to serve, then ledger verify');
    let final = { balance: Number.NaN, reserved: Number.NaN };
    await waitFor(async () => {
      final = await lookAtTab();
      return final.reserved === 0;
    }, settleTimeoutMs(reservationTimeoutS)).catch(() => undefined);
    let nodesServing: number | null = null;
    await waitFor(async () => {
      nodesServing = await nodesServingAt(net);
      return nodesServing === NODES.length;
    }, 60_000).catch(() => undefined);
    looking = false;
    await looker;
    final = await lookAtTab().catch(() => final);
    const ledger: LedgerOutcome = await verifyLedgerAt(net.settlementUrl, net.operatorKey).catch(
      (error: unknown) => ({ ok: false, error: error instanceof Error ? error.message : String(error) }),
    );
    const report = buildChaosReport({
      startedAt,
      minutes,
      seed,
      clients,
      reservationTimeoutS,
      database: postgres ? 'postgres' : 'pglite',
      model: net.model,
      durationMs: Date.now() - t0,
      planned: plan.length,
      faults,
      requests,
      reconciliation: reconcile({
        answers,
        charges,
        fundedMsat: FUND_MSAT,
        finalBalanceMsat: final.balance,
        finalReservedMsat: final.reserved,
      }),
      finalReservedMsat: Number.isFinite(final.reserved) ? final.reserved : null,
      nodesServing,
      nodes: NODES.length,
      ledger,
    });
    writeReport(outDir, report);
    process.stdout.write(`\n${bold('chaos report')}\n\n${formatChaosReport(report)}\n`);
    process.stdout.write(
      `${report.checks.all ? green('every check held') : red('a check did not hold')}; report: ${join(outDir, 'chaos.md')}, ${join(outDir, 'chaos.json')}\n`,
    );
    failed = !report.checks.all;
    await (proxy as DelayProxy | null)?.close();
    await stopAll(report.checks.all ? EXIT.ok : EXIT.failure);
  } catch (error) {
    failed = true;
    resume();
    process.stderr.write(`fedai chaos failed: ${error instanceof Error ? error.message : String(error)}\n`);
    await stopAll(EXIT.failure);
  }
}

/** Runs one fault to its end; the error text when it did not work out. */
async function inject(
  fault: Fault,
  ctx: {
    dir: string;
    restart: ReturnType<typeof superviseNetwork>['restart'];
    proxy: DelayProxy | null;
    postgres: PostgresServer | null;
    onStall: (pid: number) => void;
    resume: () => void;
  },
): Promise<string | undefined> {
  try {
    if (fault.kind === 'kill-restart' || fault.kind === 'relay-restart')
      await ctx.restart(fault.target, fault.holdMs);
    else if (fault.kind === 'postgres-restart') {
      if (!ctx.postgres) return 'no PostgreSQL server';
      await ctx.postgres.restart(fault.holdMs);
    } else if (fault.kind === 'node-stall') {
      const ready = readReadyFile(resolve(ctx.dir, 'run', `${fault.target}.ready.json`));
      if (!ready) return `${fault.target}: no ready file`;
      ctx.onStall(ready.pid);
      signal(ready.pid, 'SIGSTOP');
      await sleep(fault.holdMs);
      ctx.resume();
    } else {
      if (!ctx.proxy) return 'no settlement proxy';
      ctx.proxy.setDelayMs(fault.delayMs ?? 0);
      await sleep(fault.holdMs);
      ctx.proxy.setDelayMs(0);
    }
    return undefined;
  } catch (error) {
    return error instanceof Error ? error.message.slice(0, 300) : String(error);
  }
}

/** One database per service that keeps money or wallet state on the server. */
async function createDatabases(
  url: string,
): Promise<{ router: string; settlement: string; walletFleet: string }> {
  const admin = await openDb({ url, maxConnections: 1 });
  try {
    for (const name of ['router', 'settlement', 'wallet_fleet']) await admin.query(`CREATE DATABASE ${name}`);
  } finally {
    await admin.close();
  }
  const at = (name: string) => url.replace(/\/postgres$/, `/${name}`);
  return { router: at('router'), settlement: at('settlement'), walletFleet: at('wallet_fleet') };
}

function signal(pid: number, name: 'SIGSTOP' | 'SIGCONT'): void {
  try {
    process.kill(pid, name);
  } catch {
    // Gone already.
  }
}

async function nodesServingAt(net: Network): Promise<number | null> {
  const response = await fetch(`${net.routerUrl}/metrics`, { signal: AbortSignal.timeout(5_000) });
  if (!response.ok) return null;
  return promValue(await response.text(), 'fedai_router_nodes_serving');
}

function writeReport(outDir: string, report: ChaosReport): void {
  mkdirSync(outDir, { recursive: true });
  writeFileSync(join(outDir, 'chaos.json'), `${JSON.stringify(report, null, 2)}\n`);
  writeFileSync(join(outDir, 'chaos.md'), `# fedai chaos\n\n${formatChaosReport(report)}`);
}
