// Reads a secret key file (nsec or hex). Apart from keys.ts so that commands that only sign (apikey,
// ledger) do not load @fed-ai/kit's key-file creation and, through it, the database stack.
import { readFileSync } from 'node:fs';
import { parseSecretKey } from '@fed-ai/protocol';

export function readKeyFile(path: string): Uint8Array {
  return parseSecretKey(readFileSync(path, 'utf8'));
}
