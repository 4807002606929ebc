// How a service started by a supervisor (`fedai up`) reports the address it really bound: once
// listening it writes `{url, pubkey, pid, ...}` to FEDAI_READY_FILE (temp file + rename, so a reader
// never sees half a file). With FEDAI_PORT_FALLBACK=true a service whose preferred port is taken
// listens on port 0 instead. The supervisor uses only what the file says, never a port it guessed.
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname } from 'node:path';
import { z } from 'zod';

/** A service exits with this code when its port is taken (EX_TEMPFAIL: retrying on port 0 will do). */
export const EXIT_PORT_IN_USE = 75;

/** The environment a supervisor gives a service; parsed by `runService`. */
export const supervisorEnvSchema = z.object({
  FEDAI_READY_FILE: z.string().min(1).max(4096).optional(),
  FEDAI_PORT_FALLBACK: z
    .enum(['true', 'false', '1', '0'])
    .default('false')
    .transform((v) => v === 'true' || v === '1'),
});

export const readyFileSchema = z.object({
  /** What the service really bound, e.g. http://127.0.0.1:41234 or ws://127.0.0.1:7447. */
  url: z.string().regex(/^(https?|wss?):\/\/[^\s/]+$/),
  /** The service's identity key (x-only hex), where it has one; the relay has none. */
  pubkey: z
    .string()
    .regex(/^[0-9a-f]{64}$/)
    .optional(),
  pid: z.number().int().positive(),
  /** The port asked for, and whether it was taken so the service fell back to port 0. */
  preferred_port: z.number().int().min(0).max(65535).optional(),
  port_fallback: z.boolean(),
});
export type ReadyFacts = z.infer<typeof readyFileSchema>;

export class ReadyFileError extends Error {
  constructor(
    readonly code: 'READY_FILE_INVALID' | 'READY_FILE_UNWRITABLE',
    message: string,
  ) {
    super(`${code}: ${message}`);
    this.name = 'ReadyFileError';
  }
}

/** Writes the facts atomically (0600): a temp file next to `path`, then rename over it. */
export function writeReadyFile(path: string, facts: ReadyFacts): void {
  const checked = readyFileSchema.parse(facts);
  const temp = `${path}.${process.pid}.tmp`;
  try {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    writeFileSync(temp, `${JSON.stringify(checked)}\n`, { mode: 0o600 });
    renameSync(temp, path);
  } catch (error) {
    rmSync(temp, { force: true });
    throw new ReadyFileError(
      'READY_FILE_UNWRITABLE',
      `${path}: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
}

/** The facts in `path`, or null while it does not exist. Throws READY_FILE_INVALID on a bad file. */
export function readReadyFile(path: string): ReadyFacts | null {
  if (!existsSync(path)) return null;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch {
    throw new ReadyFileError('READY_FILE_INVALID', `${path} is not JSON`);
  }
  const parsed = readyFileSchema.safeParse(raw);
  if (!parsed.success)
    throw new ReadyFileError(
      'READY_FILE_INVALID',
      `${path}: ${parsed.error.issues[0]?.message ?? 'bad shape'}`,
    );
  return parsed.data;
}

/**
 * Whether `port` can be bound on `host` right now. Only a hint for choosing port 0 up front: the
 * port may be taken a moment later, so the service's own listen stays the real test (EADDRINUSE).
 */
export function portBindable(host: string, port: number): Promise<boolean> {
  return new Promise((done) => {
    const probe = createServer();
    probe.once('error', () => done(false));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => done(true)));
  });
}

/** True for the error a listen on a taken port gives (Node's EADDRINUSE, also when wrapped). */
export function isAddressInUse(error: unknown): boolean {
  for (let e = error, depth = 0; e && typeof e === 'object' && depth < 5; depth++) {
    if ((e as { code?: unknown }).code === 'EADDRINUSE') return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
