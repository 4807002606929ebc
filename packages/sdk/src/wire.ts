// What the SDK accepts from a router, as zod schemas: every answer is parsed here, never cast.
// Unknown fields are dropped; a missing or mistyped field the SDK needs is a BAD_SHAPE refusal.
import { usageSchema } from '@fed-ai/protocol';
import { z } from 'zod';
import { FedAiSdkError } from './errors';

const shortText = z.string().max(1024);
const pubkeyHex = z.string().regex(/^[0-9a-f]{64}$/);
const msat = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);

/** A NIP-01 event's shape (the signature is checked by verifyEnvelope / verifyReceipt, not here). */
export const envelopeShapeSchema = z.object({
  id: pubkeyHex,
  pubkey: pubkeyHex,
  created_at: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER),
  kind: z.number().int().nonnegative().max(65_535),
  tags: z.array(z.array(z.string().max(1024)).min(1).max(8)).max(32),
  content: z.string().max(256 * 1024),
  sig: z.string().regex(/^[0-9a-f]{128}$/),
});

export const routerInfoSchema = z.object({ pubkey: pubkeyHex });

const modelInfoSchema = z.object({
  id: z.string().min(1).max(256),
  context_window: z.number().int().nonnegative().optional(),
  nodes: z.number().int().nonnegative().optional(),
  price: z.object({ input_msat_per_1k: msat, output_msat_per_1k: msat }).optional(),
});
export type ModelInfo = z.infer<typeof modelInfoSchema>;

export const modelListSchema = z.object({ data: z.array(modelInfoSchema).max(100_000).default([]) });
export const nodeListSchema = z.object({ nodes: z.array(z.unknown()).max(100_000).default([]) });

/** The `fedai` block the router adds to OpenAI-shaped answers. */
const fedaiSchema = z.object({
  node: pubkeyHex.optional(),
  cost_msat: msat.optional(),
  /** The node-signed metering envelope: an object, JSON text or base64url (parseReceipt reads all). */
  receipt: z.unknown().optional(),
});
export type FedaiBlock = z.infer<typeof fedaiSchema>;

export const openAiCompletionSchema = z.object({
  id: shortText,
  model: shortText,
  choices: z
    .array(
      z.object({
        message: z.object({ content: z.string().nullish() }).nullish(),
        finish_reason: shortText.nullish(),
      }),
    )
    .max(16)
    .optional(),
  usage: usageSchema.nullish(),
  fedai: fedaiSchema.optional(),
});

export const openAiChunkSchema = z.object({
  id: shortText.optional(),
  model: shortText.optional(),
  choices: z
    .array(
      z.object({
        delta: z.object({ content: z.string().nullish() }).nullish(),
        finish_reason: shortText.nullish(),
      }),
    )
    .max(16)
    .optional(),
  usage: usageSchema.nullish(),
  fedai: fedaiSchema.optional(),
  error: z.unknown().optional(),
});

/** One event of the native `/infer/stream`: a delta, the signed final answer, or an error; other types are skipped. */
export const nativeStreamEventSchema = z.object({
  type: z.string().max(64),
  delta: z.string().optional(),
  response: z.unknown().optional(),
  error: z.unknown().optional(),
});

/** Parses JSON text from the router against a schema; BAD_SHAPE (HTTP 502) when it does not fit. */
export function parseAnswer<T>(schema: z.ZodType<T>, text: string, what: string): T {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    throw new FedAiSdkError('BAD_SHAPE', `The router's ${what} is not JSON.`, 502);
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue ? `${issue.path.join('.') || '(root)'}: ${issue.message}` : 'invalid';
    throw new FedAiSdkError('BAD_SHAPE', `The router's ${what} is malformed (${where}).`, 502);
  }
  return parsed.data;
}
