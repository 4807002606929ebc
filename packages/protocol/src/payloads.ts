// Zod schemas for the content of every fed-ai kind. Every number and string is bounded and every
// array capped, so a hostile peer cannot make us allocate without limit. Field names are
// snake_case on the wire (like OpenAI's and Nostr's JSON).
import { z } from 'zod';
import { HEX64, HEX128 } from './encoding';
import { KIND } from './kinds';

export const LIMITS = {
  maxMessages: 256,
  maxMessageChars: 200_000,
  maxPromptChars: 1_000_000,
  maxModels: 64,
  maxModelIdChars: 128,
  maxTokens: 1_000_000,
  maxContextWindow: 10_000_000,
  maxNodeList: 256,
  maxStop: 4,
  maxStopChars: 64,
  maxTextChars: 4_000_000,
  maxCiphertextChars: 8_000_000,
} as const;

const hex64 = z.string().regex(HEX64, 'expected 64 lower-case hex characters');
const msat = z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER);
const positiveMsat = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const tokens = z.number().int().nonnegative().max(LIMITS.maxTokens);
const durationMs = z.number().int().nonnegative().max(86_400_000);
const unixS = z.number().int().nonnegative().max(10_000_000_000);
const requestId = z
  .string()
  .min(8)
  .max(128)
  .regex(/^[A-Za-z0-9_\-:.]+$/, 'request ids use letters, digits and _-:.');
export const modelId = z
  .string()
  .min(1)
  .max(LIMITS.maxModelIdChars)
  .regex(/^[A-Za-z0-9_\-:./@+]+$/, 'model ids use letters, digits and _-:./@+');
const httpUrl = z
  .string()
  .max(2048)
  .url()
  .refine((u) => u.startsWith('http://') || u.startsWith('https://'), 'expected an http(s) URL');
const shortText = z.string().max(256);
const region = z
  .string()
  .min(2)
  .max(32)
  .regex(/^[a-z0-9-]+$/);

/** Prices in millisatoshi per 1,000 tokens. Integer so that cost math stays exact. */
export const priceSchema = z.object({
  input_msat_per_1k: msat,
  output_msat_per_1k: msat,
});
export type Price = z.infer<typeof priceSchema>;

export const chatMessageSchema = z.object({
  role: z.enum(['system', 'user', 'assistant', 'tool']),
  content: z.string().max(LIMITS.maxMessageChars),
  name: z.string().max(64).optional(),
});
export type ChatMessage = z.infer<typeof chatMessageSchema>;

export const modelOfferSchema = z.object({
  id: modelId,
  context_window: z.number().int().positive().max(LIMITS.maxContextWindow),
  max_output_tokens: z.number().int().positive().max(LIMITS.maxTokens),
  price: priceSchema,
  /**
   * Template tokens this model's chat template may add (see prompt-bound.ts); the router reserves
   * with it and refuses metering above the bound it implies. Omitted: the network default.
   */
  prompt_overhead: z
    .object({
      per_message_tokens: z.number().int().nonnegative().max(4096),
      fixed_tokens: z.number().int().nonnegative().max(65_536),
    })
    .optional(),
  /** A generated demo model: its output is noise. */
  demo: z.boolean().optional(),
});
export type ModelOffer = z.infer<typeof modelOfferSchema>;

export const nodeStatsSchema = z.object({
  tokens_per_s: z.number().nonnegative().max(1_000_000),
  ttft_ms: z.number().nonnegative().max(600_000),
});

export const nodeRegistrationSchema = z.object({
  endpoint: httpUrl,
  models: z.array(modelOfferSchema).min(1).max(LIMITS.maxModels),
  capacity: z.object({
    max_concurrency: z.number().int().positive().max(10_000),
    queue_max: z.number().int().nonnegative().max(100_000),
  }),
  region: region.optional(),
  software: shortText.optional(),
  stats: nodeStatsSchema.optional(),
  /** How routers may authenticate requests besides signatures: 'mac-v1' (channel-mac.ts). */
  auth: z
    .array(z.enum(['mac-v1']))
    .max(4)
    .optional(),
});
export type NodeRegistration = z.infer<typeof nodeRegistrationSchema>;

export const nodeHeartbeatSchema = z.object({
  free_slots: z.number().int().nonnegative().max(10_000),
  queue_depth: z.number().int().nonnegative().max(100_000),
  models_loaded: z.array(modelId).max(LIMITS.maxModels),
  stats: nodeStatsSchema.optional(),
  ready: z.boolean(),
});
export type NodeHeartbeat = z.infer<typeof nodeHeartbeatSchema>;

export const sortModeSchema = z.enum(['price', 'latency', 'throughput', 'balanced']);
export type SortMode = z.infer<typeof sortModeSchema>;

/** Routing constraints, in the spirit of OpenRouter's `provider` object. */
export const providerPrefsSchema = z.object({
  sort: sortModeSchema.optional(),
  /** Ceiling per 1k tokens; nodes above it are never chosen. */
  max_price: z.object({ input_msat_per_1k: msat.optional(), output_msat_per_1k: msat.optional() }).optional(),
  only: z.array(hex64).max(LIMITS.maxNodeList).optional(),
  ignore: z.array(hex64).max(LIMITS.maxNodeList).optional(),
  allow_fallbacks: z.boolean().optional(),
  region: region.optional(),
  min_trust: z.number().min(0).max(1).optional(),
});
export type ProviderPrefs = z.infer<typeof providerPrefsSchema>;

export const generationParamsSchema = z.object({
  model: modelId,
  messages: z.array(chatMessageSchema).min(1).max(LIMITS.maxMessages),
  max_tokens: z.number().int().positive().max(LIMITS.maxTokens),
  temperature: z.number().min(0).max(2).optional(),
  top_p: z.number().min(0).max(1).optional(),
  stop: z.array(z.string().min(1).max(LIMITS.maxStopChars)).max(LIMITS.maxStop).optional(),
  seed: z
    .number()
    .int()
    .min(0)
    .max(2 ** 31 - 1)
    .optional(),
});

export const inferenceRequestSchema = generationParamsSchema.extend({
  request_id: requestId,
  stream: z.boolean(),
  provider: providerPrefsSchema.optional(),
  /** Set by a router dispatching to a node: the price the node agreed to in its offer. */
  price: priceSchema.optional(),
});
export type InferenceRequest = z.infer<typeof inferenceRequestSchema>;

export const finishReasonSchema = z.enum(['stop', 'length', 'cancelled', 'error']);
export type FinishReason = z.infer<typeof finishReasonSchema>;

export const usageSchema = z.object({
  prompt_tokens: tokens,
  completion_tokens: tokens,
  total_tokens: z
    .number()
    .int()
    .nonnegative()
    .max(2 * LIMITS.maxTokens),
});
export type Usage = z.infer<typeof usageSchema>;

/** The node's signed account of one generation: the receipt a client and the ledger rely on. */
export const meteringRecordSchema = z.object({
  request_id: requestId,
  router: hex64,
  model: modelId,
  /** sha256 of the canonical prompt (JSON of messages); the prompt itself is never stored. */
  prompt_sha256: hex64,
  /** sha256 of the concatenated output text: covers the whole streamed answer. */
  output_sha256: hex64,
  tokens_in: tokens,
  tokens_out: tokens,
  ttft_ms: durationMs,
  wall_ms: durationMs,
  price: priceSchema,
  cost_msat: msat,
  finish_reason: finishReasonSchema,
  /** Where the counts came from: the runner's tokenizer or the upstream's usage block. */
  count_source: z.enum(['tokenizer', 'upstream_usage']),
});
export type MeteringRecord = z.infer<typeof meteringRecordSchema>;

/**
 * One streamed delta, exactly as a node sends it: unsigned `data:` JSON inside an SSE stream whose
 * last event carries the signed metering record (which covers every delta by output_sha256).
 */
export const streamChunkSchema = z.object({
  type: z.literal('delta'),
  index: z.number().int().nonnegative().max(LIMITS.maxTokens),
  delta: z.string().max(LIMITS.maxMessageChars),
});
export type StreamChunk = z.infer<typeof streamChunkSchema>;

/** Every event of a node's stream: deltas, then `done` (signed record) or `error`. */
export const nodeStreamEventSchema = z.discriminatedUnion('type', [
  streamChunkSchema,
  z.object({
    type: z.literal('done'),
    finish_reason: finishReasonSchema,
    usage: z.unknown().optional(),
    /** The signed metering envelope (kind 28117); verified by the receiver, so unknown here. */
    metering: z.unknown(),
    /** To a router that sent a MAC request: the node's channel MAC of the record's id (channel-mac.ts). */
    metering_mac: z.string().regex(HEX128).optional(),
  }),
  z.object({
    type: z.literal('error'),
    error: z
      .object({ code: z.string().max(64).optional(), message: z.string().max(2_000).optional() })
      .optional(),
  }),
]);
export type NodeStreamEvent = z.infer<typeof nodeStreamEventSchema>;

/** A router's signed answer to a native-API client; `receipt` is the node-signed metering record. */
export const inferenceResponseSchema = z.object({
  request_id: requestId,
  model: modelId,
  node: hex64,
  text: z.string().max(LIMITS.maxTextChars),
  finish_reason: finishReasonSchema,
  usage: usageSchema,
  cost_msat: msat,
  receipt: z.string().max(16_384),
});
export type InferenceResponse = z.infer<typeof inferenceResponseSchema>;

export const quoteRequestSchema = z.object({
  model: modelId,
  messages: z.array(chatMessageSchema).min(1).max(LIMITS.maxMessages).optional(),
  prompt_tokens: tokens.optional(),
  max_tokens: z.number().int().positive().max(LIMITS.maxTokens),
  provider: providerPrefsSchema.optional(),
});
export type QuoteRequest = z.infer<typeof quoteRequestSchema>;

export const quoteResponseSchema = z.object({
  model: modelId,
  prompt_tokens: tokens,
  max_tokens: tokens,
  price: priceSchema,
  max_cost_msat: msat,
  node: hex64,
  candidates: z.number().int().nonnegative().max(100_000),
  expires_at: unixS,
});
export type QuoteResponse = z.infer<typeof quoteResponseSchema>;

export const paymentRequestSchema = z.object({
  purpose: z.enum(['topup', 'request', 'payout']),
  amount_msat: positiveMsat,
  bolt11: z.string().min(10).max(4096),
  payment_hash: hex64,
  expires_at: unixS,
  request_id: requestId.optional(),
});
export type PaymentRequest = z.infer<typeof paymentRequestSchema>;

export const paymentReceiptSchema = z.object({
  payment_hash: hex64,
  preimage: hex64,
  amount_msat: positiveMsat,
  settled_at: unixS,
  request_id: requestId.optional(),
});
export type PaymentReceipt = z.infer<typeof paymentReceiptSchema>;

const reserveOpSchema = z.object({
  op: z.literal('reserve'),
  op_id: requestId,
  account: z.string().min(1).max(200),
  amount_msat: positiveMsat,
  timeout_s: z.number().int().positive().max(86_400),
});
const captureOpSchema = z.object({
  op: z.literal('capture'),
  op_id: requestId,
  amount_msat: msat,
  node: hex64,
  /** The node-signed metering envelope this charge rests on. */
  metering: z.string().max(16_384),
  /**
   * The spending lease this request's bound was drawn from (instead of a reservation of its
   * own): the charge comes out of the lease, or straight from the tab once the lease is closed.
   */
  lease_id: requestId.optional(),
});
const releaseOpSchema = z.object({ op: z.literal('release'), op_id: requestId });
/**
 * A spending lease: moves `amount_msat` of the payer's tab into a lease that many requests'
 * captures draw from (never more than it holds), until the router closes it or it expires after
 * `timeout_s` and settlement closes it; closing gives what is left back to the tab.
 */
const openLeaseOpSchema = z.object({
  op: z.literal('open_lease'),
  op_id: requestId,
  account: z.string().min(1).max(200),
  amount_msat: positiveMsat,
  timeout_s: z.number().int().positive().max(86_400),
});
const closeLeaseOpSchema = z.object({ op: z.literal('close_lease'), op_id: requestId });

/** Most operations in one `batch` (and what keeps a batch of captures within the envelope size). */
export const SETTLEMENT_BATCH_MAX = 64;

/** Router to settlement: one money operation, idempotent by `op_id`, or a batch of them. */
export const settlementRequestSchema = z.discriminatedUnion('op', [
  reserveOpSchema,
  captureOpSchema,
  releaseOpSchema,
  openLeaseOpSchema,
  closeLeaseOpSchema,
  /**
   * A request a peer router served (federation offload): charges the peer's signed cost plus this
   * network's offload fee, and pays the peer's part back to the router's own account.
   */
  z.object({
    op: z.literal('capture_offload'),
    op_id: requestId,
    amount_msat: msat,
    peer: hex64,
    /** The peer router's signed offload result (its receipt), holding the node-signed metering. */
    result: z.string().max(32_000),
  }),
  /**
   * Several reserves, captures, releases and lease operations in one signed envelope: each is checked and answered
   * on its own (`results`, in order), exactly as if it had come alone.
   */
  z.object({
    op: z.literal('batch'),
    ops: z
      .array(
        z.discriminatedUnion('op', [
          reserveOpSchema,
          captureOpSchema,
          releaseOpSchema,
          openLeaseOpSchema,
          closeLeaseOpSchema,
        ]),
      )
      .min(1)
      .max(SETTLEMENT_BATCH_MAX),
  }),
]);
export type SettlementRequest = z.infer<typeof settlementRequestSchema>;

export const settlementResultSchema = z.object({
  op_id: requestId,
  ok: z.boolean(),
  code: z.string().max(64).optional(),
  balance_msat: msat.optional(),
});
export type SettlementResult = z.infer<typeof settlementResultSchema>;

// Federation announcements, published as addressable events on relays.
export const routerCapabilitiesSchema = z.object({
  name: shortText,
  url: httpUrl,
  models: z.array(modelId).max(1024),
  features: z.array(z.enum(['openai', 'native', 'offload', 'auction', 'tabs', 'l402'])).max(16),
  region: region.optional(),
});
export type RouterCapabilities = z.infer<typeof routerCapabilitiesSchema>;

export const priceSheetSchema = z.object({
  model: modelId,
  price: priceSchema,
  context_window: z.number().int().positive().max(LIMITS.maxContextWindow),
  nodes: z.number().int().nonnegative().max(100_000),
});
export type PriceSheet = z.infer<typeof priceSheetSchema>;

export const routerStatusSchema = z.object({
  nodes_online: z.number().int().nonnegative().max(100_000),
  free_slots: z.number().int().nonnegative().max(10_000_000),
  load: z.number().min(0).max(1),
  accepting_offload: z.boolean(),
});
export type RouterStatus = z.infer<typeof routerStatusSchema>;

// The request-for-bids auction (docs/protocol.md, "Federation: auction and offload"). An RFB never
// carries the prompt: only the model, a token bound and the ceiling.
export const rfbSchema = z.object({
  rfb_id: requestId,
  model: modelId,
  /**
   * A sound bound on the prompt's text tokens (sum of textTokensBound over the messages), before
   * any chat-template overhead: each bidder adds its own nodes' overhead for `messages`.
   */
  prompt_tokens: tokens,
  messages: z.number().int().positive().max(LIMITS.maxMessages),
  max_tokens: z.number().int().positive().max(LIMITS.maxTokens),
  /** The highest price the requester accepts (its client's `max_price`), if any. */
  max_price: z.object({ input_msat_per_1k: msat.optional(), output_msat_per_1k: msat.optional() }).optional(),
  /** How long the requester waits for bids. */
  deadline_ms: z.number().int().positive().max(60_000),
});
export type Rfb = z.infer<typeof rfbSchema>;

export const bidSchema = z.object({
  rfb_id: requestId,
  bid_id: requestId,
  /** The highest price of any node the bidder may use for this job: its metering never exceeds it. */
  price: priceSchema,
  /** The most the job can cost at the bidder (its own sound bound); the requester reserves this. */
  max_cost_msat: msat,
  /** Output tokens the bidder will generate at most (its nodes' cap applied). */
  max_tokens: z.number().int().positive().max(LIMITS.maxTokens),
  context_window: z.number().int().positive().max(LIMITS.maxContextWindow),
  free_slots: z.number().int().nonnegative().max(10_000_000),
  ttft_ms_estimate: durationMs,
  tokens_per_s_estimate: z.number().nonnegative().max(1_000_000),
  /** Where the offload goes: must be the bidder's announced router URL + /v1/federation/offload. */
  endpoint: httpUrl,
  expires_at: unixS,
});
export type Bid = z.infer<typeof bidSchema>;

export const awardSchema = z.object({ rfb_id: requestId, bid_id: requestId, winner: hex64 });
export type Award = z.infer<typeof awardSchema>;

export const cancelSchema = z.object({ id: requestId, reason: shortText });
export type Cancel = z.infer<typeof cancelSchema>;

/**
 * Offloaded work travels NIP-44 v2 encrypted to the peer router, in chunks (offload.ts): the
 * inference request's UTF-8 JSON is cut into slices, each base64-encoded and encrypted on its own,
 * because one NIP-44 plaintext holds at most 65,535 bytes.
 */
export const offloadJobSchema = z.object({
  job_id: requestId,
  bid_id: requestId,
  rfb_id: requestId,
  chunks: z.array(z.string().max(100_000)).min(1).max(64),
});
export type OffloadJob = z.infer<typeof offloadJobSchema>;

/**
 * The peer router's signed receipt for an offloaded job (no text: the tokens arrived as deltas,
 * and the node-signed metering binds their hash). What the offloading router pays on.
 */
export const offloadResultSchema = z.object({
  job_id: requestId,
  model: modelId,
  node: hex64,
  cost_msat: msat,
  finish_reason: finishReasonSchema,
  /** The node-signed metering envelope (JSON), addressed to the peer router. */
  metering: z.string().max(16_384),
});
export type OffloadResult = z.infer<typeof offloadResultSchema>;

/** Owner actions on the wallet fleet, signed by the owner key. */
export const ownerActionSchema = z.object({
  action: z.enum(['approve', 'deny', 'pause', 'resume', 'kill', 'unkill', 'set_policy']),
  target: z.string().min(1).max(200),
  approval_id: requestId.optional(),
  reason: shortText.optional(),
  policy: z.record(z.string().max(64), z.unknown()).optional(),
});
export type OwnerAction = z.infer<typeof ownerActionSchema>;

/** A router's request to stop a generation early; the node still signs what it generated. */
export const inferenceCancelSchema = z.object({ request_id: requestId });
export type InferenceCancel = z.infer<typeof inferenceCancelSchema>;

/** Most charges one payout statement lists: a node with more is paid in several payouts. */
export const MAX_STATEMENT_CHARGES = 500;

/**
 * Settlement's signed account of one payout to a node: every charge it covers (with the id of the
 * node-signed metering envelope it was charged on) and how the paid amount follows from them. The
 * node checks it against its own metering log (`fedai node statement verify`):
 * hold = gross + carried_in; amount + fee + returned = hold.
 */
export const payoutStatementSchema = z.object({
  payout_id: requestId,
  node: hex64,
  charges: z
    .array(
      z.object({
        op_id: z.string().min(1).max(160),
        request_id: requestId,
        /** The id of the node-signed metering envelope this charge was made on. */
        metering_id: hex64,
        cost_msat: msat,
        /** The node's part of cost_msat after the router fee (`splitCharge`). */
        node_msat: msat,
      }),
    )
    .max(MAX_STATEMENT_CHARGES),
  router_fee_bps: z.number().int().min(0).max(10_000),
  /** Sum of the charges' node_msat. */
  gross_msat: msat,
  /** Earnings from before these charges not paid yet (unspent fee budgets, less adjustments). */
  carried_in_msat: z.number().int().min(-Number.MAX_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER),
  /** What was held from the node's earnings for this payout: gross + carried_in. */
  hold_msat: positiveMsat,
  /** The invoice's amount: what reached the node's wallet. */
  amount_msat: positiveMsat,
  /** The Lightning routing fee actually paid (from the node's earnings: payouts are netted). */
  fee_msat: msat,
  /** The unspent part of the fee budget, back in the node's earnings for the next payout. */
  returned_msat: msat,
  destination: z.object({ kind: z.enum(['lightning_address', 'nwc']), address: z.string().max(320) }),
  payment_hash: hex64,
  preimage: hex64,
  /** Charges made up to this time (unix s) were considered. */
  covered_until: unixS,
  paid_at: unixS,
});
export type PayoutStatement = z.infer<typeof payoutStatementSchema>;

/** Settlement's signed verdict on a disputed charge (docs/disputes.md): exactly one adjustment. */
export const disputeVerdictSchema = z.object({
  case_id: z.string().regex(/^dsp_[0-9a-f]{32}$/, 'expected dsp_ and 32 hex characters'),
  charge_op_id: z.string().min(1).max(160),
  /** The id of the node-signed metering envelope the charge was made on. */
  metering_id: hex64,
  role: z.enum(['payer', 'node']),
  /** The key that opened the case: the node, or the router acting for its client. */
  claimant: hex64,
  /** The charged account (`tab:<payer>`). */
  account: z.string().min(1).max(200),
  node: hex64,
  charged_msat: msat,
  verdict: z.enum(['refund_full', 'refund_partial', 'charge_stands', 'rejected']),
  rule: z.string().regex(/^[A-Z][A-Z0-9_]{1,63}$/),
  detail: z.string().max(512),
  /** What went back to the tab: node_refund_msat + router_refund_msat. */
  refund_msat: msat,
  node_refund_msat: msat,
  router_refund_msat: msat,
  /** The rules granted a refund the books could not make (the node's earnings were paid out). */
  refund_refused: z.boolean(),
  decided_at: unixS,
});
export type DisputeVerdict = z.infer<typeof disputeVerdictSchema>;

/** The payload schema of every fed-ai kind that carries JSON content. */
export const PAYLOAD_SCHEMAS = {
  [KIND.routerCapabilities]: routerCapabilitiesSchema,
  [KIND.priceSheet]: priceSheetSchema,
  [KIND.routerStatus]: routerStatusSchema,
  [KIND.rfb]: rfbSchema,
  [KIND.bid]: bidSchema,
  [KIND.award]: awardSchema,
  [KIND.cancel]: cancelSchema,
  [KIND.nodeRegistration]: nodeRegistrationSchema,
  [KIND.nodeHeartbeat]: nodeHeartbeatSchema,
  [KIND.quoteRequest]: quoteRequestSchema,
  [KIND.quoteResponse]: quoteResponseSchema,
  [KIND.inferenceRequest]: inferenceRequestSchema,
  [KIND.inferenceResponse]: inferenceResponseSchema,
  [KIND.streamChunk]: streamChunkSchema,
  [KIND.meteringRecord]: meteringRecordSchema,
  [KIND.paymentRequest]: paymentRequestSchema,
  [KIND.paymentReceipt]: paymentReceiptSchema,
  [KIND.offloadJob]: offloadJobSchema,
  [KIND.offloadResult]: offloadResultSchema,
  [KIND.ownerAction]: ownerActionSchema,
  [KIND.settlementRequest]: settlementRequestSchema,
  [KIND.settlementResult]: settlementResultSchema,
  [KIND.inferenceCancel]: inferenceCancelSchema,
  [KIND.payoutStatement]: payoutStatementSchema,
  [KIND.disputeVerdict]: disputeVerdictSchema,
} as const;

export type PayloadKind = keyof typeof PAYLOAD_SCHEMAS;
export type PayloadOf<K extends PayloadKind> = z.infer<(typeof PAYLOAD_SCHEMAS)[K]>;

export function isPayloadKind(kind: number): kind is PayloadKind {
  return Object.hasOwn(PAYLOAD_SCHEMAS, kind);
}
