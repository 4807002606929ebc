// Secret key files: created on first use with mode 0600, refused when others can read them.
import { chmodSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { generateSecretKey, parseSecretKey, toNsec } from '@fed-ai/protocol';

export class KeyFileError extends Error {
  constructor(
    readonly path: string,
    message: string,
    readonly fix: string,
  ) {
    super(message);
    this.name = 'KeyFileError';
  }
}

/** Problems with an existing key file, or null when it is fine. */
export function keyFileProblem(path: string): { message: string; fix: string } | null {
  if (!existsSync(path)) return null;
  const mode = statSync(path).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    return {
      message: `key file ${path} has mode ${mode.toString(8).padStart(4, '0')}: others can read it`,
      fix: `chmod 600 ${path}`,
    };
  }
  try {
    parseSecretKey(readFileSync(path, 'utf8'));
  } catch {
    return {
      message: `key file ${path} does not hold a valid nsec or hex key`,
      fix: `move it away; a new key is created on start`,
    };
  }
  return null;
}

/** Reads the key at `path`, creating it (0600, nsec) if missing. Throws KeyFileError on unsafe files. */
export function loadOrCreateKeyFile(path: string): { secretKey: Uint8Array; created: boolean } {
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
    const secretKey = generateSecretKey();
    writeFileSync(path, `${toNsec(secretKey)}\n`, { mode: 0o600, flag: 'wx' });
    chmodSync(path, 0o600);
    return { secretKey, created: true };
  }
  const problem = keyFileProblem(path);
  if (problem) throw new KeyFileError(path, problem.message, problem.fix);
  return { secretKey: parseSecretKey(readFileSync(path, 'utf8')), created: false };
}
