// Hashes that bind a metering record to the prompt and output it accounts for, without storing
// either. Both sides (node and router/client) compute them the same way.
import { sha256Hex } from './crypto';
import type { ChatMessage } from './payloads';

/** sha256 of the canonical JSON of the chat messages: [[role, content, name|null], ...]. */
export function promptSha256(messages: readonly ChatMessage[]): string {
  return sha256Hex(JSON.stringify(messages.map((m) => [m.role, m.content, m.name ?? null])));
}

/** sha256 of the full output text (the concatenation of every streamed delta). */
export function outputSha256(text: string): string {
  return sha256Hex(text);
}
