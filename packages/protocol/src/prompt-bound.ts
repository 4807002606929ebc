// A sound upper bound on the prompt tokens any node can count for a chat request, so that a
// reservation made before dispatch always covers the node-signed cost.
//
// Why it holds: a byte-level BPE tokenizer emits at most one token per UTF-8 byte of its input; a
// SentencePiece tokenizer with byte fallback first normalises (NFKC, which can expand text), turns
// each space into "▁" (3 bytes) and adds one leading "▁", then emits at most one token per byte.
// The chat template adds text around each message (role markers, separators) and once per prompt
// (BOS, generation prompt, default system text): the node declares those budgets in its offer,
// and a record over the bound is refused (BAD_METERING) and counted against that node.
import type { ChatMessage, ModelOffer } from './payloads';

export interface PromptOverhead {
  /** Template tokens a node may add around one message (role markers, separators, name). */
  per_message_tokens: number;
  /** Template tokens a node may add once per prompt (BOS, generation prompt, default system). */
  fixed_tokens: number;
}

/** Generous enough for ChatML, Llama 3, Gemma and Mistral templates rendered byte by byte. */
export const DEFAULT_PROMPT_OVERHEAD: PromptOverhead = { per_message_tokens: 64, fixed_tokens: 256 };

const encoder = new TextEncoder();
const SPACE_EXTRA_BYTES = 2; // " " (1 byte) becomes "▁" (3 bytes)
const DUMMY_PREFIX_BYTES = 3;

/** Most tokens one piece of text can become under the tokenizers described above. */
export function textTokensBound(text: string): number {
  if (text.length === 0) return 0;
  const nfkc = text.normalize('NFKC');
  // NFKC can turn other characters into spaces, so spaces are counted on both forms.
  const bound = (t: string) => encoder.encode(t).length + SPACE_EXTRA_BYTES * countSpaces(t);
  return Math.max(bound(text), bound(nfkc)) + DUMMY_PREFIX_BYTES;
}

function countSpaces(text: string): number {
  let spaces = 0;
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 32) spaces += 1;
  return spaces;
}

/** The overhead a node declared for a model, or the network default. */
export function promptOverheadOf(offer: Pick<ModelOffer, 'prompt_overhead'>): PromptOverhead {
  return offer.prompt_overhead ?? DEFAULT_PROMPT_OVERHEAD;
}

/** Upper bound on the prompt tokens of `messages` under `overhead`. */
export function promptTokensBound(
  messages: readonly Pick<ChatMessage, 'role' | 'content' | 'name'>[],
  overhead: PromptOverhead = DEFAULT_PROMPT_OVERHEAD,
): number {
  let total = overhead.fixed_tokens;
  for (const m of messages) {
    total += textTokensBound(m.content) + textTokensBound(m.name ?? '') + overhead.per_message_tokens;
  }
  return total;
}
