// pnpm bench:up — local-network cold start: how long `fedai up --no-first-request` takes from spawn
// to `<data>/devnet.json` (the network-ready moment), and how long Ctrl-C (SIGINT to the process
// group) takes to stop everything. Two cases, alternated in the same run:
//   fresh — an empty data directory (keys, databases and the demo model all created);
//   warm  — the data directory the round's fresh run just used (everything already there).
// Each run gets its own temp directory through FEDAI_DATA_DIR (never ./data); all are removed at
// the end. `--runs N` rounds (default 3), `--timeout-s S` per start (default 180).
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { fmt, summarize } from './stats';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const { values } = parseArgs({
  options: {
    runs: { type: 'string', default: '3' },
    'timeout-s': { type: 'string', default: '180' },
  },
});
const runs = Number(values.runs);
if (!Number.isInteger(runs) || runs < 1) throw new Error('--runs must be a positive integer');
const startTimeoutMs = Number(values['timeout-s']) * 1000;
if (!Number.isFinite(startTimeoutMs) || startTimeoutMs <= 0) throw new Error('--timeout-s must be positive');
const STOP_TIMEOUT_MS = 60_000;
const POLL_MS = 50;
const PREFERRED_PORTS = [7000, 7101, 7102, 7200, 7447];
// The demo model is written under each node's own data directory (node-N/models).
const SUBFOLDERS = ['router', 'settlement', 'node-1', 'node-2', 'node-1/models', 'logs'];

type Case = 'fresh' | 'warm';
interface RunResult {
  kind: Case;
  round: number;
  readyMs: number;
  printedReadyS: number | undefined;
  stopMs: number;
  exitCode: number | null;
  bytes: number;
  subBytes: Record<string, number>;
  model: string;
}

const loadavg = () => readFileSync('/proc/loadavg', 'utf8').trim().split(' ').slice(0, 3).join(' ');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** Resolves false after `ms` unless `done` settles first (true); leaves no timer behind. */
async function within(done: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<boolean>((r) => {
    timer = setTimeout(() => r(false), ms);
  });
  try {
    return await Promise.race([done.then(() => true), timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Apparent size of every regular file under `path` (du -sb without the directory entries). */
function sizeOf(path: string): number {
  if (!existsSync(path)) return 0;
  const stat = lstatSync(path);
  if (stat.isDirectory()) return readdirSync(path).reduce((sum, name) => sum + sizeOf(join(path, name)), 0);
  return stat.isFile() ? stat.size : 0;
}

/** Whether 127.0.0.1:port can be bound now (only reported: `fedai up` falls back to free ports). */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolveFree) => {
    const server = createServer();
    server.once('error', () => resolveFree(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolveFree(true)));
  });
}

function groupAlive(pid: number): boolean {
  try {
    process.kill(-pid, 0);
    return true;
  } catch {
    return false;
  }
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return;
  try {
    process.kill(-child.pid, signal);
  } catch {
    // already gone
  }
}

function readyDevnet(path: string, pid: number): { model: string } | null {
  if (!existsSync(path)) return null;
  try {
    const parsed = JSON.parse(readFileSync(path, 'utf8')) as { pid?: unknown; model?: unknown };
    return parsed.pid === pid ? { model: String(parsed.model) } : null;
  } catch {
    return null; // being written
  }
}

async function runOnce(kind: Case, round: number, dir: string): Promise<RunResult> {
  const devnetFile = join(dir, 'devnet.json');
  rmSync(devnetFile, { force: true });
  const started = process.hrtime.bigint();
  const elapsedMs = () => Number(process.hrtime.bigint() - started) / 1e6;
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', resolve(root, 'tools/cli/src/main.ts'), 'up', '--no-first-request'],
    {
      cwd: root,
      env: { ...process.env, FEDAI_DATA_DIR: dir, NO_COLOR: '1' },
      detached: true, // its own process group, SIGINTed as one, as Ctrl-C in a terminal does
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let output = '';
  const keep = (chunk: Buffer) => {
    output = (output + chunk.toString('utf8')).slice(-20_000); // bounded
  };
  child.stdout?.on('data', keep);
  child.stderr?.on('data', keep);
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<void>((resolveExit) =>
    child.once('exit', (code, signal) => {
      exit = { code, signal };
      resolveExit();
    }),
  );
  const pid = child.pid;
  if (pid === undefined) throw new Error('fedai up did not spawn');
  const fail = (why: string): never => {
    killGroup(child, 'SIGKILL');
    throw new Error(
      `${kind} run ${round + 1}: ${why}\n--- fedai up output (tail) ---\n${output.slice(-4000)}`,
    );
  };

  let devnet: { model: string } | null = null;
  while (!devnet) {
    if (exit) fail(`fedai up exited before ready (code ${exit.code}, signal ${exit.signal})`);
    if (elapsedMs() > startTimeoutMs) fail(`not ready within ${startTimeoutMs / 1000} s`);
    await sleep(POLL_MS);
    devnet = readyDevnet(devnetFile, pid);
  }
  const readyMs = elapsedMs();
  // The summary line is printed right after devnet.json is written; give it a moment to arrive.
  const printedDeadline = Date.now() + 5_000;
  let match: RegExpMatchArray | null = null;
  while (!match && Date.now() < printedDeadline) {
    match = output.match(/fed-ai local network ready in ([0-9.]+) s/); // no colour: not a TTY
    if (!match) await sleep(POLL_MS);
  }

  const stopStarted = process.hrtime.bigint();
  killGroup(child, 'SIGINT');
  const stopped = await within(exited, STOP_TIMEOUT_MS);
  const stopMs = Number(process.hrtime.bigint() - stopStarted) / 1e6;
  if (!stopped) fail(`did not exit within ${STOP_TIMEOUT_MS / 1000} s of SIGINT`);
  const exitCode = exit?.code ?? null;
  if (exitCode !== 0) fail(`exit code ${exitCode} (signal ${exit?.signal ?? 'none'}) after SIGINT`);
  // Every service is up's child in the same group; none may outlive it.
  for (let i = 0; i < 50 && groupAlive(pid); i++) await sleep(100);
  if (groupAlive(pid)) fail('processes of its group still running after it exited');

  const subBytes = Object.fromEntries(SUBFOLDERS.map((name) => [name, sizeOf(join(dir, name))]));
  return {
    kind,
    round,
    readyMs,
    printedReadyS: match ? Number(match[1]) : undefined,
    stopMs,
    exitCode,
    bytes: sizeOf(dir),
    subBytes,
    model: devnet.model,
  };
}

const mib = (bytes: number) =>
  bytes < 1024 * 1024 ? `${fmt(bytes / 1024, 0)} KiB` : `${fmt(bytes / (1024 * 1024), 1)} MiB`;

const loadStart = loadavg();
const busy: number[] = [];
for (const port of PREFERRED_PORTS) if (!(await portFree(port))) busy.push(port);
const dirs: string[] = [];
const results: RunResult[] = [];
const onSignal = () => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
  process.exit(130);
};
process.once('SIGINT', onSignal);
process.once('SIGTERM', onSignal);
try {
  for (let round = 0; round < runs; round++) {
    const dir = mkdtempSync(join(tmpdir(), 'fedai-bench-up-'));
    dirs.push(dir);
    for (const kind of ['fresh', 'warm'] as const) {
      const r = await runOnce(kind, round, dir);
      results.push(r);
      console.log(
        `round ${round + 1} ${kind.padEnd(5)} ready ${fmt(r.readyMs / 1000, 1)} s (printed ${r.printedReadyS ?? '?'} s), ` +
          `stop ${fmt(r.stopMs / 1000, 2)} s, exit ${r.exitCode}, data ${mib(r.bytes)}`,
      );
    }
  }
} finally {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
}
const loadEnd = loadavg();

const byKind = (kind: Case) => results.filter((r) => r.kind === kind);
const fresh = summarize(byKind('fresh').map((r) => r.readyMs));
const warm = summarize(byKind('warm').map((r) => r.readyMs));
console.log('');
console.log('Local network cold start: node --import tsx tools/cli/src/main.ts up --no-first-request');
console.log(
  `${runs} rounds (fresh, warm alternated), Node ${process.version}, ${new Date().toISOString().slice(0, 10)}, ` +
    `model ${results[0]?.model ?? '?'}`,
);
console.log(`load average (1/5/15 min): start ${loadStart}, end ${loadEnd}`);
console.log(
  `preferred ports busy at start: ${busy.length ? `${busy.join(', ')} (fedai up used free ones)` : 'none'}`,
);
console.log('case    ready median s   ready p99 s   printed median s   stop median s');
for (const kind of ['fresh', 'warm'] as const) {
  const rs = byKind(kind);
  const s = summarize(rs.map((r) => r.readyMs));
  const printed = rs.flatMap((r) => (r.printedReadyS === undefined ? [] : [r.printedReadyS]));
  const stop = summarize(rs.map((r) => r.stopMs));
  console.log(
    `${kind.padEnd(7)} ${fmt(s.median / 1000, 1).padStart(14)} ${fmt(s.p99 / 1000, 1).padStart(13)} ` +
      `${(printed.length ? fmt(summarize(printed).median, 1) : '?').padStart(18)} ${fmt(stop.median / 1000, 2).padStart(15)}`,
  );
}
console.log(`warm / fresh (median ready): ${fmt(warm.median / fresh.median, 2)}`);
console.log(
  `stop (SIGINT to exit) median, all runs: ${fmt(summarize(results.map((r) => r.stopMs)).median / 1000, 2)} s`,
);
console.log(
  `${'data size (median)'.padEnd(20)} ${SUBFOLDERS.map((n) => n.padStart(13)).join(' ')} ${'total'.padStart(10)}`,
);
for (const kind of ['fresh', 'warm'] as const) {
  const rs = byKind(kind);
  const cell = (n: string) => mib(summarize(rs.map((r) => r.subBytes[n] ?? 0)).median).padStart(13);
  console.log(
    `${`after ${kind} run`.padEnd(20)} ${SUBFOLDERS.map(cell).join(' ')} ${mib(summarize(rs.map((r) => r.bytes)).median).padStart(10)}`,
  );
}
