import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { KeyFileError, loadOrCreateKeyFile } from '@fed-ai/kit';
import { publicKeyOf, toNpub, toNsec } from '@fed-ai/protocol';
import { dataDir } from '../devnet-file';
import { fail, printJson } from '../output';

function defaultKeyPath(): string {
  return resolve(dataDir(), 'user.key');
}

export function keysNew(flags: { file?: string; json?: boolean; force?: boolean }): void {
  const path = resolve(flags.file ?? defaultKeyPath());
  if (existsSync(path) && !flags.force) fail('KEY_FILE_EXISTS', `${path} exists`);
  try {
    const { secretKey } = loadOrCreateKeyFile(path);
    show(secretKey, path, flags.json ?? false, true);
  } catch (error) {
    if (error instanceof KeyFileError) fail('BAD_KEY', error.message, { fix: error.fix });
    throw error;
  }
}

export function keysShow(flags: { file?: string; json?: boolean; secret?: boolean }): void {
  const path = resolve(flags.file ?? defaultKeyPath());
  if (!existsSync(path)) fail('NO_KEY_FILE', `no key at ${path}`);
  try {
    const { secretKey } = loadOrCreateKeyFile(path);
    show(secretKey, path, flags.json ?? false, flags.secret ?? false);
  } catch (error) {
    if (error instanceof KeyFileError) fail('BAD_KEY', error.message, { fix: error.fix });
    throw error;
  }
}

function show(secretKey: Uint8Array, path: string, json: boolean, withSecret: boolean): void {
  const pub = publicKeyOf(secretKey);
  const facts = {
    file: path,
    npub: toNpub(pub),
    pubkey: pub,
    ...(withSecret ? { nsec: toNsec(secretKey) } : {}),
  };
  if (json) {
    printJson(facts);
    return;
  }
  for (const [k, v] of Object.entries(facts)) process.stdout.write(`${k.padEnd(7)} ${v}\n`);
  if (withSecret)
    process.stdout.write('keep the nsec secret: it is your identity and signs your payments.\n');
}
