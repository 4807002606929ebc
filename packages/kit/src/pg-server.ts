// Starts a throwaway real PostgreSQL server for tests and local runs: initdb into a temp folder, listen
// on 127.0.0.1 (unix socket in the same folder), fsync off. As root it runs the server binaries as the
// `postgres` user through `runuser`, because PostgreSQL refuses to run as root.
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import pg from 'pg';

export interface PostgresBinSearch {
  /** Folders of versioned installs, searched as `<root>/<version>/bin`, newest version first. */
  versionRoots?: string[];
  /** Further bin folders tried in order when no versioned install is found. */
  binDirs?: string[];
}

export interface StartPostgresOptions {
  /** TCP port on 127.0.0.1; 0 or absent picks a free one. */
  port?: number;
  /** Where to look for the server binaries; defaults suit Debian/Ubuntu and PATH installs. */
  search?: PostgresBinSearch;
  /** How long to wait for the server to accept connections. */
  startTimeoutMs?: number;
  /**
   * Commits flushed to WAL before they are answered (synchronous_commit on), so a crash of the
   * server process (restart()) loses none; off by default, for speed in tests. fsync stays off
   * either way: the machine itself does not crash.
   */
  durableCommits?: boolean;
}

export interface PostgresServer {
  /** postgres://postgres@127.0.0.1:PORT/postgres (trust auth, no password). */
  url: string;
  port: number;
  dataDir: string;
  /** Stops the server (fast shutdown, then kill) and removes its folder. Safe to call twice. */
  stop(): Promise<void>;
  /**
   * Crashes the server (immediate shutdown: connections cut, no checkpoint), waits `downMs`, and
   * starts it again on the same port and data: it recovers like after a power cut (chaos runs).
   */
  restart(downMs?: number): Promise<void>;
}

const DEFAULT_VERSION_ROOTS = ['/usr/lib/postgresql'];
const REQUIRED_BINARIES = ['initdb', 'postgres'];
const INITDB_TIMEOUT_MS = 120_000;
const STOP_GRACE_MS = 10_000;
const STDERR_TAIL_CHARS = 4000;

function defaultBinDirs(): string[] {
  const dirs: string[] = [];
  if (process.env.PG_BIN_DIR) dirs.push(process.env.PG_BIN_DIR);
  dirs.push('/usr/local/pgsql/bin');
  for (const entry of (process.env.PATH ?? '').split(delimiter)) if (entry) dirs.push(entry);
  return dirs;
}

function hasServerBinaries(dir: string): boolean {
  return REQUIRED_BINARIES.every((name) => existsSync(join(dir, name)));
}

/** The folder holding `initdb` and `postgres`, newest version first; null when none is installed. */
export function findPostgresBin(search: PostgresBinSearch = {}): string | null {
  for (const root of search.versionRoots ?? DEFAULT_VERSION_ROOTS) {
    let versions: string[];
    try {
      versions = readdirSync(root);
    } catch {
      continue;
    }
    versions.sort((a, b) => Number.parseFloat(b) - Number.parseFloat(a) || b.localeCompare(a));
    for (const version of versions) {
      const dir = join(root, version, 'bin');
      if (hasServerBinaries(dir)) return dir;
    }
  }
  for (const dir of search.binDirs ?? defaultBinDirs()) {
    if (hasServerBinaries(dir)) return dir;
  }
  return null;
}

interface RunAs {
  /** Prefix that runs a command as the server's OS user. */
  prefix: string[];
  uid?: number;
  gid?: number;
}

function runAs(): RunAs {
  if (process.getuid?.() !== 0) return { prefix: [] };
  // PostgreSQL refuses to run as root: hand the folder to `postgres` and run through runuser.
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((entry) => entry.startsWith('postgres:'));
  const fields = line?.split(':');
  if (!fields || fields.length < 4) {
    throw new Error(
      'running as root but there is no `postgres` OS user; install it with `apt-get install postgresql`',
    );
  }
  return { prefix: ['runuser', '-u', 'postgres', '--'], uid: Number(fields[2]), gid: Number(fields[3]) };
}

function command(as: RunAs, binary: string, args: string[]): [string, string[]] {
  const full = [...as.prefix, binary, ...args];
  return [full[0] as string, full.slice(1)];
}

const CHILD_ENV = { PATH: process.env.PATH ?? '/usr/bin:/bin', LC_ALL: 'C', LANG: 'C', TZ: 'UTC' };

function run(file: string, args: string[], timeoutMs: number): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(
      file,
      args,
      { timeout: timeoutMs, env: CHILD_ENV, maxBuffer: 4 * 1024 * 1024 },
      (error, stdout, stderr) => {
        if (error) {
          const output = `${stdout}${stderr}`.slice(-STDERR_TAIL_CHARS);
          reject(new Error(`${file} ${args.join(' ')} failed: ${error.message}\n${output}`));
        } else {
          resolve();
        }
      },
    );
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', reject);
    probe.listen(0, '127.0.0.1', () => {
      const address = probe.address();
      const port = typeof address === 'object' && address ? address.port : 0;
      probe.close(() => resolve(port));
    });
  });
}

/** Starts a fresh PostgreSQL server in a temp folder. Throws when no server binaries are installed. */
export async function startPostgres(options: StartPostgresOptions = {}): Promise<PostgresServer> {
  const bin = findPostgresBin(options.search);
  if (!bin) {
    throw new Error(
      'PostgreSQL server binaries (initdb, postgres) not found in /usr/lib/postgresql/*/bin, PG_BIN_DIR or PATH; ' +
        'install them with `apt-get install postgresql` (or set PG_BIN_DIR)',
    );
  }
  const as = runAs();
  const dir = mkdtempSync(join(tmpdir(), 'fedai-pg-'));
  const dataDir = join(dir, 'data');
  try {
    if (as.uid !== undefined && as.gid !== undefined) chownSync(dir, as.uid, as.gid);
    await run(
      ...command(as, join(bin, 'initdb'), [
        '-D',
        dataDir,
        '-U',
        'postgres',
        '-A',
        'trust',
        '-E',
        'UTF8',
        '--locale=C',
        '--no-sync',
      ]),
      INITDB_TIMEOUT_MS,
    );
    const port = options.port || (await freePort());
    const server = await launch(
      as,
      bin,
      dir,
      dataDir,
      port,
      options.startTimeoutMs ?? 30_000,
      options.durableCommits ?? false,
    );
    return server;
  } catch (error) {
    rmSync(dir, { recursive: true, force: true });
    throw error;
  }
}

/** One postmaster process on the data directory. */
interface Postmaster {
  child: ChildProcess;
  exit: Promise<void>;
  exited(): boolean;
  stderrTail(): string;
}

function spawnPostmaster(
  as: RunAs,
  bin: string,
  dir: string,
  dataDir: string,
  port: number,
  durableCommits: boolean,
): Postmaster {
  const [file, args] = command(as, join(bin, 'postgres'), [
    '-D',
    dataDir,
    '-p',
    String(port),
    '-k',
    dir,
    '-c',
    'listen_addresses=127.0.0.1',
    '-c',
    'fsync=off',
    '-c',
    `synchronous_commit=${durableCommits ? 'on' : 'off'}`,
    '-c',
    'full_page_writes=off',
    '-c',
    'max_connections=100',
  ]);
  const child = spawn(file, args, { env: CHILD_ENV, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderrTail = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    stderrTail = (stderrTail + chunk).slice(-STDERR_TAIL_CHARS);
  });
  let exited = false;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', () => {
      exited = true;
      resolve();
    });
    child.once('error', (error) => {
      stderrTail += `\n${error.message}`;
      exited = true;
      resolve();
    });
  });
  return { child, exit, exited: () => exited, stderrTail: () => stderrTail };
}

async function launch(
  as: RunAs,
  bin: string,
  dir: string,
  dataDir: string,
  port: number,
  startTimeoutMs: number,
  durableCommits: boolean,
): Promise<PostgresServer> {
  let current = spawnPostmaster(as, bin, dir, dataDir, port, durableCommits);
  // A crashed or interrupted test run must not leave a server behind.
  // (Only while the wrapper lives: after it exits, the pid in a stale pid file may be someone else's.)
  const killOnExit = () => {
    if (!current.exited()) hardKill(current.child, dataDir);
  };
  process.once('exit', killOnExit);

  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  let stopped: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopped ??= (async () => {
      process.off('exit', killOnExit);
      if (!current.exited()) {
        signalServer(current.child, dataDir, 'SIGINT'); // fast shutdown: roll back open transactions, exit
        const timer = setTimeout(killOnExit, STOP_GRACE_MS);
        await current.exit;
        clearTimeout(timer);
      }
      rmSync(dir, { recursive: true, force: true });
    })();
    return stopped;
  };

  const untilAccepting = async (): Promise<void> => {
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (current.exited()) {
        await stop();
        throw new Error(`postgres exited during start on port ${port}:\n${current.stderrTail()}`);
      }
      if (await accepts(url)) return;
      if (Date.now() > deadline) {
        await stop();
        throw new Error(
          `postgres did not accept connections within ${startTimeoutMs} ms:\n${current.stderrTail()}`,
        );
      }
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  };

  const restart = async (downMs = 0): Promise<void> => {
    if (stopped) throw new Error('postgres: restart after stop');
    // Immediate shutdown (SIGQUIT): no checkpoint, open connections cut; the next start recovers.
    signalServer(current.child, dataDir, 'SIGQUIT');
    const timer = setTimeout(killOnExit, STOP_GRACE_MS);
    await current.exit;
    clearTimeout(timer);
    if (downMs > 0) await new Promise((resolve) => setTimeout(resolve, downMs));
    current = spawnPostmaster(as, bin, dir, dataDir, port, durableCommits);
    await untilAccepting();
  };

  await untilAccepting();
  return { url, port, dataDir, stop, restart };
}

async function accepts(url: string): Promise<boolean> {
  const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  client.on('error', () => {});
  try {
    await client.connect();
    await client.query('SELECT 1');
    return true;
  } catch {
    return false;
  } finally {
    await client.end().catch(() => {});
  }
}

/** The postmaster's pid from its pid file; null before it wrote one or after it removed it. */
function postmasterPid(dataDir: string): number | null {
  try {
    const pid = Number(readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n')[0]);
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** Signals the postmaster itself: `runuser` does not pass SIGINT on to it. */
function signalServer(child: ChildProcess, dataDir: string, signal: NodeJS.Signals): void {
  const pid = postmasterPid(dataDir);
  if (pid !== null) {
    try {
      process.kill(pid, signal);
      return;
    } catch {
      // already gone: fall through to the child
    }
  }
  child.kill(signal);
}

function hardKill(child: ChildProcess, dataDir: string): void {
  const pid = postmasterPid(dataDir);
  if (pid !== null) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  child.kill('SIGKILL');
}
