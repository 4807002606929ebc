// What every service entry point and start function shares: its identity key and its lifecycle.
import { existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { basename, dirname, relative, resolve, sep } from 'node:path';
import { FedAiError, parseSecretKey, type ReplayStore, verifyNip98 } from '@fed-ai/protocol';
import type { FastifyRequest } from 'fastify';
import { z } from 'zod';
import { ConfigError, loadConfigOrExit } from './config';
import { type ConfigSection, layeredConfig } from './config-file';
import { receivedBody } from './http';
import { KeyFileError, loadOrCreateKeyFile } from './keyfile';
import {
  EXIT_PORT_IN_USE,
  isAddressInUse,
  portBindable,
  supervisorEnvSchema,
  writeReadyFile,
} from './ready-file';
import { type StartProblem, secretFiles, startProblemLine, unsafeStartProblems } from './safe-start';

/**
 * A start failure an operator can fix: an UPPER_SNAKE code, what is wrong (naming the variable or
 * resource) and the fix. `runService` prints it as one line: `<service> failed to start: CODE: message — fix`.
 */
export class StartError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly fix: string,
  ) {
    super(message);
    this.name = 'StartError';
  }
}

/** What runService read from CREATE_KEY / --create-key; start functions run outside it default to false. */
const keyCreation = { allowed: false };

/**
 * The key given inline (nsec/hex), else the key file. A missing key file is created (0600) when it
 * is the default one (inside DATA_DIR), lies beside DATA_DIR (the layout `fedai up` uses), or
 * CREATE_KEY=true; an explicitly named file elsewhere that is missing is refused, so a mistyped
 * path never mints a new identity.
 */
export function loadServiceKey(
  inline: string | undefined,
  file: string | undefined,
  defaultFile: string,
  options: { create?: boolean } = {},
): Uint8Array {
  if (inline) return parseSecretKey(inline);
  const path = resolve(file ?? defaultFile);
  const variable = `${basename(defaultFile, '.key').toUpperCase()}_KEY_FILE`;
  if (file !== undefined && !existsSync(path)) {
    const dataDir = dirname(resolve(defaultFile));
    const inDataDir = !relative(dataDir, path).startsWith('..');
    const besideDataDir = dirname(path) === dirname(dataDir);
    if (!(options.create ?? keyCreation.allowed) && !inDataDir && !besideDataDir)
      throw new StartError(
        'KEY_FILE_MISSING',
        `${variable} ${file} does not exist`,
        'fix the path, or set CREATE_KEY=true (fedai: --create-key) to create a new identity there',
      );
  }
  try {
    return loadOrCreateKeyFile(path).secretKey;
  } catch (error) {
    if (error instanceof KeyFileError) throw new StartError('KEY_FILE_UNSAFE', error.message, error.fix);
    throw error;
  }
}

/**
 * Takes DATA_DIR for this process: `<dir>/.lock` holds the pid. A lock whose pid is dead (or is
 * this very pid, after a container restart) is stale and taken over. Released by `release()` and,
 * as a last resort, when the process exits.
 */
export function lockDataDir(dir: string, variable = 'DATA_DIR'): { release(): void } {
  const absolute = resolve(dir);
  const path = `${absolute}${sep}.lock`;
  try {
    mkdirSync(absolute, { recursive: true, mode: 0o700 });
  } catch (error) {
    throw new StartError(
      'DATA_DIR_UNUSABLE',
      `${variable} ${dir} cannot be created (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      `set ${variable} to a folder this user can write`,
    );
  }
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      writeFileSync(path, `${process.pid}\n`, { flag: 'wx', mode: 0o600 });
      const release = () => {
        if (lockOwner(path) === process.pid) rmSync(path, { force: true });
        process.off('exit', release);
      };
      process.on('exit', release);
      return { release };
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== 'EEXIST')
        throw new StartError(
          'DATA_DIR_UNUSABLE',
          `${variable} ${dir} is not writable (${code ?? 'error'})`,
          `set ${variable} to a folder this user can write`,
        );
    }
    const owner = lockOwner(path);
    if (owner !== null && owner !== process.pid && pidAlive(owner))
      throw new StartError(
        'DATA_DIR_IN_USE',
        `${variable} ${dir} is in use by another process (pid ${owner})`,
        `stop it or set ${variable} to another folder`,
      );
    rmSync(path, { force: true });
  }
  throw new StartError(
    'DATA_DIR_IN_USE',
    `${variable} ${dir} is being taken by another process at the same moment`,
    `start one service per ${variable}`,
  );
}

function lockOwner(path: string): number | null {
  try {
    const pid = Number(readFileSync(path, 'utf8').trim());
    return Number.isSafeInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * One line for a start failure: the variable or resource, and the fix. Known failures carry their
 * own words; anything else is its code and first line only (never a stack).
 */
export function describeStartError(error: unknown, context: { dataDir?: string | undefined } = {}): string {
  if (error instanceof StartError) return `${error.code}: ${error.message} — ${error.fix}`;
  if (error instanceof ConfigError) return `${error.code}: ${error.message.replace(/^config error: /, '')}`;
  if (error instanceof KeyFileError) return `KEY_FILE_UNSAFE: ${error.message} — ${error.fix}`;
  const message = firstLine(error instanceof Error ? error.message : String(error));
  // PGlite aborts without words when its files are held by another process or damaged.
  if (/^Aborted\(/.test(message) || /RuntimeError: Aborted/.test(message)) {
    const where = context.dataDir ? `DATA_DIR ${context.dataDir}` : 'DATA_DIR';
    return `DB_OPEN_FAILED: the embedded database in ${where} could not be opened (held by another process or damaged) — stop the other process or set DATA_DIR to another folder`;
  }
  const errno = errnoOf(error);
  if (errno === 'ECONNREFUSED' || errno === 'ENOTFOUND' || errno === 'EHOSTUNREACH' || errno === 'ETIMEDOUT')
    return `UPSTREAM_UNREACHABLE: a service this one needs did not answer (${errno}) — start it first or fix its URL`;
  if (errno === 'EACCES' || errno === 'EPERM' || errno === 'EROFS')
    return `PERMISSION_DENIED: ${message} — fix the permissions or choose another path`;
  if (errno === 'EADDRNOTAVAIL')
    return 'ADDRESS_NOT_AVAILABLE: the listen host is not an address of this machine — fix the *_HOST setting';
  if (error instanceof FedAiError) return `${error.code}: ${message} — ${error.hint}`;
  const code = (error as { code?: unknown })?.code;
  return `${typeof code === 'string' && /^[A-Z][A-Z0-9_]+$/.test(code) ? code : 'START_FAILED'}: ${message}`;
}

function firstLine(text: string): string {
  const line = text.split('\n')[0]?.trim() ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

function errnoOf(error: unknown): string | undefined {
  for (let e = error, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
    const inner = (e as { errors?: unknown[] }).errors?.[0];
    e = (e as { cause?: unknown }).cause ?? inner;
  }
  return undefined;
}

/**
 * GETs `url` until it answers HTTP (any status) or `waitMs` has passed: a service started right
 * after its dependency (a supervisor, compose, a busy machine) must not fail on the first refused
 * connection. Returns null when it never answered.
 */
export async function fetchWhenUp(
  url: string,
  options: { waitMs?: number; attemptTimeoutMs?: number } = {},
): Promise<Response | null> {
  const deadline = Date.now() + (options.waitMs ?? 15_000);
  for (let delayMs = 200; ; delayMs = Math.min(delayMs * 2, 2_000)) {
    const response = await fetch(url, {
      signal: AbortSignal.timeout(options.attemptTimeoutMs ?? 5_000),
    }).catch(() => null);
    if (response || Date.now() + delayMs > deadline) return response;
    await new Promise((done) => setTimeout(done, delayMs));
  }
}

/**
 * Runs `attempt` until it succeeds, fails for another reason than `unreachable`, or `waitMs` has
 * passed (then the last error is thrown): a dependency still starting is not a start failure.
 */
export async function untilReachable<T>(
  attempt: () => Promise<T>,
  unreachable: (error: unknown) => boolean,
  waitMs: number,
): Promise<T> {
  const deadline = Date.now() + waitMs;
  for (let delayMs = 200; ; delayMs = Math.min(delayMs * 2, 2_000)) {
    try {
      return await attempt();
    } catch (error) {
      if (!unreachable(error) || Date.now() + delayMs > deadline) throw error;
      await new Promise((done) => setTimeout(done, delayMs));
    }
  }
}

/**
 * Fails start with one clear line when `url` does not answer HTTP (any status counts as an answer)
 * within `waitMs`.
 */
export async function requireReachable(
  variable: string,
  url: string,
  options: { path?: string; fix: string; waitMs?: number },
): Promise<void> {
  const base = url.replace(/\/+$/, '');
  const response = await fetchWhenUp(`${base}${options.path ?? ''}`, options);
  if (!response)
    throw new StartError('UPSTREAM_UNREACHABLE', `${variable} ${url} is unreachable`, options.fix);
  await response.body?.cancel().catch(() => {});
}

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');

/** What runService reads besides the service's own schema. */
const startEnvSchema = supervisorEnvSchema.extend({
  /** Allow creating a missing, explicitly named key file (a new identity). */
  CREATE_KEY: bool.default(false),
  LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).optional(),
  /** `production` refuses devnet conveniences at start (safe-start.ts, docs/security.md "Safe start"). */
  FEDAI_ENV: z.enum(['development', 'production']).default('development'),
  /** Production only: keep the embedded PGlite database instead of DATABASE_URL (one process, one machine). */
  ALLOW_EMBEDDED_DB: bool.default(false),
});

/**
 * The unsafe settings of `service` (safe-start.ts) with the permission bits of the secret files
 * it would read, taken from the disk now. `settings`: a parsed config or raw values by variable.
 */
export function safeStartProblems(
  service: string,
  settings: Readonly<Record<string, unknown>>,
): StartProblem[] {
  const fileModes = new Map<string, number>();
  for (const file of secretFiles(service, settings)) {
    try {
      const stat = statSync(resolve(file.path));
      if (stat.isFile()) fileModes.set(file.path, stat.mode & 0o777);
    } catch {
      // Missing or unreadable: start itself says so (KEY_FILE_MISSING, CONFIG_INVALID).
    }
  }
  return unsafeStartProblems({ service, settings, fileModes });
}

export interface RunServiceOptions<C> {
  /**
   * The config keys of the listen address. With FEDAI_PORT_FALLBACK=true a taken preferred port
   * is replaced by 0 (any free port) before start; the URL really bound goes to FEDAI_READY_FILE.
   */
  listen?: { host: keyof C & string; port: keyof C & string };
  /** The config key of the data folder: locked for this process while it runs. */
  dataDir?: keyof C & string;
}

/** Flags > environment > .env > fedai.toml > defaults, for this service's schema (exit 2 on a bad value). */
function loadServiceConfig<S extends z.ZodObject>(section: ConfigSection, schema: S) {
  let layers: ReturnType<typeof layeredConfig>;
  try {
    layers = layeredConfig(section, [...Object.keys(schema.shape), ...Object.keys(startEnvSchema.shape)]);
  } catch (error) {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(2);
  }
  const config = loadConfigOrExit(schema, layers.values, layers.sources);
  const start = loadConfigOrExit(startEnvSchema, layers.values, layers.sources);
  return { config, start };
}

/**
 * main.ts of a service: read settings (environment, .env, fedai.toml; one line and exit 2 on a bad
 * value), take the data folder, start, report the bound URL to a supervisor (FEDAI_READY_FILE), and
 * close cleanly on SIGINT/SIGTERM (forced exit after 10 s). Every start failure is one line naming
 * the variable or resource and the fix; a taken port exits with EXIT_PORT_IN_USE, others with 1.
 */
export async function runService<
  S extends z.ZodObject,
  T extends { close(): Promise<void>; url: string; pubkey?: string },
>(
  name: ConfigSection,
  schema: S,
  start: (config: z.infer<S>) => Promise<T>,
  options: RunServiceOptions<z.infer<S>> = {},
): Promise<void> {
  const { config, start: supervisor } = loadServiceConfig(name, schema);
  keyCreation.allowed = supervisor.CREATE_KEY;
  if (supervisor.LOG_LEVEL && !process.env.LOG_LEVEL) process.env.LOG_LEVEL = supervisor.LOG_LEVEL;
  const fail = (line: string, code: number): never => {
    process.stderr.write(`${name} failed to start: ${line}\n`);
    process.exit(code);
  };
  // Fail closed before anything is opened: one line for the first unsafe setting.
  const unsafe = safeStartProblems(name, { ...config, ...supervisor });
  if (unsafe[0])
    fail(
      `${startProblemLine(unsafe[0])}${unsafe.length > 1 ? ` (and ${unsafe.length - 1} more: fedai doctor lists them)` : ''}`,
      1,
    );
  const dataDir = options.dataDir ? String(config[options.dataDir]) : undefined;
  let lock: { release(): void } | null = null;
  if (dataDir) {
    try {
      lock = lockDataDir(dataDir);
    } catch (error) {
      fail(describeStartError(error, { dataDir }), 1);
    }
  }
  const listen = options.listen;
  const preferredPort = listen ? Number(config[listen.port]) : undefined;
  let chosen = config;
  let portFallback = false;
  if (listen && supervisor.FEDAI_PORT_FALLBACK && preferredPort) {
    const host = String(config[listen.host]);
    if (!(await portBindable(host, preferredPort))) {
      chosen = { ...config, [listen.port]: 0 };
      portFallback = true;
    }
  }
  const running = await start(chosen).catch((error: unknown): never => {
    if (isAddressInUse(error))
      return fail(
        `PORT_IN_USE: port ${preferredPort ?? '?'} is taken by another process` +
          `${supervisor.FEDAI_PORT_FALLBACK ? ' (it was free a moment before)' : '; set FEDAI_PORT_FALLBACK=true to use any free port'}`,
        EXIT_PORT_IN_USE,
      );
    return fail(describeStartError(error, { dataDir }), 1);
  });
  let closing = false;
  const shutdown = (code: number) => {
    if (closing) return;
    closing = true;
    running.close().then(
      () => {
        lock?.release();
        process.exit(code);
      },
      () => process.exit(1),
    );
    setTimeout(() => process.exit(1), 10_000).unref();
  };
  process.on('SIGINT', () => shutdown(0));
  process.on('SIGTERM', () => shutdown(0));
  if (supervisor.FEDAI_READY_FILE) {
    try {
      writeReadyFile(supervisor.FEDAI_READY_FILE, {
        url: running.url,
        ...(running.pubkey ? { pubkey: running.pubkey } : {}),
        pid: process.pid,
        ...(preferredPort === undefined ? {} : { preferred_port: preferredPort }),
        port_fallback: portFallback,
      });
    } catch (error) {
      process.stderr.write(
        `${name} could not report its address: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      shutdown(1);
    }
  }
}

/**
 * NIP-98 for a request as received: the signed URL may be the one the caller used directly or
 * the service's public URL. Returns the signer, who must be in `allowed`.
 */
export async function verifyNip98Request(
  request: FastifyRequest,
  options: {
    replayStore: ReplayStore;
    /** Signers allowed to call; undefined: any signer (the route itself decides what a key may do). */
    allowed: ReadonlySet<string> | undefined;
    publicUrl?: string | undefined;
  },
): Promise<string> {
  // The exact bytes received ('' without a body): the payload tag is checked against them.
  const body = receivedBody(request);
  const urls = [`http://${request.headers.host}${request.url}`];
  if (options.publicUrl) urls.push(`${options.publicUrl.replace(/\/+$/, '')}${request.url}`);
  let result = await verifyNip98(request.headers.authorization, {
    url: urls[0]!,
    method: request.method,
    body,
    replayStore: options.replayStore,
    allowed: options.allowed,
  });
  if (!result.ok && result.code === 'AUTH_URL_MISMATCH' && urls[1]) {
    result = await verifyNip98(request.headers.authorization, {
      url: urls[1],
      method: request.method,
      body,
      replayStore: options.replayStore,
      allowed: options.allowed,
    });
  }
  if (!result.ok) {
    if (result.code === 'FORBIDDEN')
      throw new FedAiError('FORBIDDEN', 'This key may not call this endpoint.');
    throw new FedAiError(result.code, result.detail);
  }
  return result.pubkey;
}
