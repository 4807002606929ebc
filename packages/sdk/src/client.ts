// FedAiClient: chat with a fed-ai router using an API key (OpenAI-compatible routes) or your own
// Nostr key (signed native routes). Every answer carries usage, cost in msat and the node-signed
// receipt, which `verifyReceipt` checks offline.
import {
  bytesToHex,
  type ChatMessage,
  createEnvelope,
  type DispatchId,
  decodeEnvelopeHeader,
  dispatchId,
  type Envelope,
  type FinishReason,
  generateSecretKey,
  KIND,
  meteringRecordSchema,
  type NodeId,
  nodeId,
  type ProviderPrefs,
  parseSecretKey,
  publicKeyOf,
  type QuoteResponse,
  readSseData,
  SseError,
  type Usage,
  verifyEnvelope,
} from '@fed-ai/protocol';
import { FedAiSdkError, isRetryable } from './errors';
import { bodyChunks, Deadline, type FetchLike, readLimited } from './transport';
import {
  envelopeShapeSchema,
  type FedaiBlock,
  type ModelInfo,
  modelListSchema,
  nativeStreamEventSchema,
  nodeListSchema,
  openAiChunkSchema,
  openAiCompletionSchema,
  parseAnswer,
  routerInfoSchema,
} from './wire';

export type { ModelInfo } from './wire';

export interface FedAiClientOptions {
  routerUrl: string;
  /** Bearer API key from the router operator. */
  apiKey?: string;
  /** Your Nostr secret key (hex or nsec): uses the signed native API. */
  secretKey?: string | Uint8Array;
  /** Whole-request timeout; streams time out when no byte arrives for this long. */
  timeoutMs?: number;
  /** Attempts for retryable failures before any output (429, 502-504, network). */
  maxAttempts?: number;
  retryBaseDelayMs?: number;
  /** The fetch to use (default: the global one, in Node 20+ and browsers). */
  fetch?: FetchLike;
}

export interface ChatParams {
  model: string;
  messages: ChatMessage[];
  maxTokens?: number;
  temperature?: number;
  topP?: number;
  stop?: string[];
  seed?: number;
  provider?: ProviderPrefs;
  signal?: AbortSignal;
}

export interface ChatResult {
  id: string;
  model: string;
  text: string;
  finishReason: FinishReason | string;
  usage: Usage;
  costMsat: number;
  /** The node that generated the answer (its public key). */
  node: NodeId;
  /** The router's dispatch id, as the node-signed receipt names it (`request_id`). */
  dispatchId: DispatchId;
  /** Node-signed metering record (kind 28117) covering prompt and output hashes. */
  receipt: Envelope;
}

export type ChatStreamEvent = { type: 'delta'; text: string } | { type: 'done'; result: ChatResult };

const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;
/** Bound on calls in flight per client (each holds a deadline that close() ends). */
const MAX_IN_FLIGHT = 1024;

export class FedAiClient {
  readonly routerUrl: string;
  private readonly apiKey: string | undefined;
  private readonly secretKey: Uint8Array | undefined;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly retryBaseDelayMs: number;
  private readonly fetchImpl: FetchLike;
  private readonly inFlight = new Set<Deadline>();
  private routerPubkey: string | undefined;

  constructor(options: FedAiClientOptions) {
    if (!options.apiKey && !options.secretKey) {
      throw new FedAiSdkError('UNAUTHORIZED', 'Give an apiKey or a secretKey.', 0);
    }
    this.routerUrl = options.routerUrl.replace(/\/+$/, '');
    this.apiKey = options.apiKey;
    this.secretKey =
      typeof options.secretKey === 'string'
        ? parseSecretKey(options.secretKey)
        : (options.secretKey ?? undefined);
    this.timeoutMs = options.timeoutMs ?? 120_000;
    this.maxAttempts = Math.min(Math.max(options.maxAttempts ?? 3, 1), 10);
    this.retryBaseDelayMs = options.retryBaseDelayMs ?? 250;
    if (!options.fetch && typeof fetch !== 'function')
      throw new FedAiSdkError('NETWORK', 'No fetch in this runtime: pass options.fetch.', 0);
    // Called as a plain function: browsers refuse fetch called with another `this`.
    this.fetchImpl = options.fetch ?? ((input, init) => fetch(input, init));
  }

  /** A client with a fresh random Nostr key (handy for scripts and tests). */
  static withNewKey(routerUrl: string): FedAiClient {
    return new FedAiClient({ routerUrl, secretKey: generateSecretKey() });
  }

  /** Ends every call still in flight (they fail with CANCELLED). */
  async close(): Promise<void> {
    for (const deadline of this.inFlight) deadline.abort();
    this.inFlight.clear();
  }

  async chat(params: ChatParams): Promise<ChatResult> {
    let last: ChatResult | undefined;
    for await (const event of this.chatEvents(params, false)) if (event.type === 'done') last = event.result;
    if (!last) throw new FedAiSdkError('NODE_FAILED', 'The router closed the answer without a result.', 502);
    return last;
  }

  /** Streams deltas as they arrive; the last event carries usage, cost and the receipt. */
  chatStream(params: ChatParams): AsyncGenerator<ChatStreamEvent, void, void> {
    return this.chatEvents(params, true);
  }

  async models(): Promise<ModelInfo[]> {
    return parseAnswer(modelListSchema, await this.getText('/v1/models'), 'model list').data;
  }

  async nodes(): Promise<unknown[]> {
    return parseAnswer(nodeListSchema, await this.getText('/nodes'), 'node list').nodes;
  }

  /** Asks the router what a request would cost at most. Needs a secret key (signed request). */
  async quote(params: {
    model: string;
    messages?: ChatMessage[];
    maxTokens: number;
    provider?: ProviderPrefs;
  }): Promise<QuoteResponse> {
    const key = this.requireKey();
    const router = await this.routerKey();
    const envelope = createEnvelope(
      KIND.quoteRequest,
      {
        model: params.model,
        max_tokens: params.maxTokens,
        ...(params.messages ? { messages: params.messages } : {}),
        ...(params.provider ? { provider: params.provider } : {}),
      },
      { audience: router },
      key,
    );
    const answer = await this.post('/quote', JSON.stringify(envelope), {});
    const verified = await verifyEnvelope(answer.text, { me: publicKeyOf(key), kinds: [KIND.quoteResponse] });
    if (!verified.ok)
      throw new FedAiSdkError('BAD_SIGNATURE', `Quote failed verification: ${verified.code}`, 502);
    if (verified.envelope.pubkey !== router)
      throw new FedAiSdkError('BAD_SIGNATURE', 'Quote not signed by the router.', 502);
    return verified.payload;
  }

  private async *chatEvents(
    params: ChatParams,
    stream: boolean,
  ): AsyncGenerator<ChatStreamEvent, void, void> {
    const maxTokens = params.maxTokens ?? 256;
    let attempt = 0;
    for (;;) {
      attempt += 1;
      let sentOutput = false;
      try {
        const events = this.apiKey
          ? this.openAiChat(params, maxTokens, stream)
          : this.nativeChat(params, maxTokens, stream);
        for await (const event of events) {
          if (event.type === 'delta') sentOutput = true;
          yield event;
        }
        return;
      } catch (error) {
        const e = FedAiSdkError.from(error);
        // Never retry once output was delivered: the caller would see two answers.
        if (sentOutput || attempt >= this.maxAttempts || !isRetryable(e) || params.signal?.aborted) throw e;
        const backoff = Math.max(e.retryAfterMs ?? 0, this.retryBaseDelayMs * 2 ** (attempt - 1));
        await sleep(Math.min(backoff, 10_000) * (0.5 + Math.random() / 2), params.signal);
      }
    }
  }

  private async *openAiChat(
    params: ChatParams,
    maxTokens: number,
    stream: boolean,
  ): AsyncGenerator<ChatStreamEvent> {
    const body = JSON.stringify({
      model: params.model,
      messages: params.messages,
      max_tokens: maxTokens,
      stream,
      ...(stream ? { stream_options: { include_usage: true } } : {}),
      ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
      ...(params.topP !== undefined ? { top_p: params.topP } : {}),
      ...(params.stop ? { stop: params.stop } : {}),
      ...(params.seed !== undefined ? { seed: params.seed } : {}),
      ...(params.provider ? { provider: params.provider } : {}),
    });
    const headers = { authorization: `Bearer ${this.apiKey}` };
    if (!stream) {
      const answer = await this.post('/v1/chat/completions', body, headers, params.signal);
      const json = parseAnswer(openAiCompletionSchema, answer.text, 'completion');
      const receipt = parseReceipt(json.fedai?.receipt ?? answer.headers.get('x-fedai-receipt') ?? undefined);
      const text = json.choices?.[0]?.message?.content ?? '';
      yield { type: 'delta', text };
      yield {
        type: 'done',
        result: resultFrom(
          json.id,
          json.model,
          text,
          json.choices?.[0]?.finish_reason,
          json.usage,
          json.fedai,
          receipt,
        ),
      };
      return;
    }
    let text = '';
    let finish: string | null | undefined;
    let usage: Usage | null | undefined;
    let fedai: FedaiBlock | undefined;
    let id = '';
    let model = params.model;
    for await (const data of this.events('/v1/chat/completions', body, headers, params.signal)) {
      if (data === '[DONE]') break;
      const chunk = parseAnswer(openAiChunkSchema, data, 'stream chunk');
      if (chunk.error) throw FedAiSdkError.fromBody({ error: chunk.error }, 502);
      id = chunk.id ?? id;
      model = chunk.model ?? model;
      const choice = chunk.choices?.[0];
      const delta = choice?.delta?.content;
      if (delta) {
        text += delta;
        yield { type: 'delta', text: delta };
      }
      if (choice?.finish_reason) finish = choice.finish_reason;
      if (chunk.usage) usage = chunk.usage;
      if (chunk.fedai) fedai = chunk.fedai;
    }
    const receipt = parseReceipt(fedai?.receipt);
    yield { type: 'done', result: resultFrom(id, model, text, finish, usage, fedai, receipt) };
  }

  private async *nativeChat(
    params: ChatParams,
    maxTokens: number,
    stream: boolean,
  ): AsyncGenerator<ChatStreamEvent> {
    const key = this.requireKey();
    const router = await this.routerKey();
    // getRandomValues, not randomUUID: browsers only offer the latter in secure contexts.
    const requestId = `sdk-${bytesToHex(crypto.getRandomValues(new Uint8Array(16)))}`;
    const envelope = createEnvelope(
      KIND.inferenceRequest,
      {
        request_id: requestId,
        model: params.model,
        messages: params.messages,
        max_tokens: maxTokens,
        stream,
        ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
        ...(params.topP !== undefined ? { top_p: params.topP } : {}),
        ...(params.stop ? { stop: params.stop } : {}),
        ...(params.seed !== undefined ? { seed: params.seed } : {}),
        ...(params.provider ? { provider: params.provider } : {}),
      },
      { audience: router, refs: [requestId] },
      key,
    );
    const me = publicKeyOf(key);
    const finalFrom = async (raw: unknown): Promise<ChatResult> => {
      const verified = await verifyEnvelope(raw, { me, kinds: [KIND.inferenceResponse] });
      if (!verified.ok)
        throw new FedAiSdkError('BAD_SIGNATURE', `Router answer failed verification: ${verified.code}`, 502);
      if (verified.envelope.pubkey !== router)
        throw new FedAiSdkError('BAD_SIGNATURE', 'Answer not signed by the router.', 502);
      const p = verified.payload;
      const receipt = parseReceipt(p.receipt);
      return {
        id: p.request_id,
        model: p.model,
        text: p.text,
        finishReason: p.finish_reason,
        usage: p.usage,
        costMsat: p.cost_msat,
        node: asNode(p.node),
        dispatchId: receiptRecord(receipt).dispatchId,
        receipt,
      };
    };
    if (!stream) {
      const answer = await this.post('/infer', JSON.stringify(envelope), {}, params.signal);
      const result = await finalFrom(answer.text);
      yield { type: 'delta', text: result.text };
      yield { type: 'done', result };
      return;
    }
    for await (const data of this.events('/infer/stream', JSON.stringify(envelope), {}, params.signal)) {
      const event = parseAnswer(nativeStreamEventSchema, data, 'stream event');
      if (event.type === 'delta' && event.delta !== undefined) yield { type: 'delta', text: event.delta };
      else if (event.type === 'error') throw FedAiSdkError.fromBody({ error: event.error }, 502);
      else if (event.type === 'done') {
        yield { type: 'done', result: await finalFrom(event.response) };
        return;
      }
    }
    throw new FedAiSdkError('NODE_FAILED', 'The stream ended without a final answer.', 502);
  }

  private requireKey(): Uint8Array {
    if (!this.secretKey)
      throw new FedAiSdkError('UNAUTHORIZED', 'This call needs a secretKey (signed API).', 0);
    return this.secretKey;
  }

  private async routerKey(): Promise<string> {
    if (!this.routerPubkey) {
      const text = await this.getText('/v1/router');
      let info: { pubkey: string };
      try {
        info = parseAnswer(routerInfoSchema, text, 'identity');
      } catch {
        throw new FedAiSdkError('BAD_SHAPE', 'The router did not report a public key.', 502);
      }
      this.routerPubkey = info.pubkey;
    }
    return this.routerPubkey;
  }

  private async getText(path: string): Promise<string> {
    const headers: Record<string, string> = this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {};
    return (await this.call(path, { method: 'GET', headers }, undefined)).text;
  }

  private post(path: string, body: string, headers: Record<string, string>, signal?: AbortSignal) {
    return this.call(
      path,
      { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body },
      signal,
    );
  }

  /** One request whose whole answer (bounded) is read before the deadline. */
  private async call(
    path: string,
    init: { method: string; headers: Record<string, string>; body?: string },
    signal: AbortSignal | undefined,
  ): Promise<{ text: string; headers: Headers }> {
    const deadline = this.deadline(signal);
    try {
      const response = await this.open(path, init, deadline);
      return {
        text: await readLimited(response.body, MAX_RESPONSE_BYTES, deadline),
        headers: response.headers,
      };
    } finally {
      this.settle(deadline);
    }
  }

  /** A streamed POST: yields each SSE event's data; the deadline re-arms on every chunk. */
  private async *events(
    path: string,
    body: string,
    headers: Record<string, string>,
    signal: AbortSignal | undefined,
  ): AsyncGenerator<string, void, void> {
    const deadline = this.deadline(signal);
    try {
      const init = { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body };
      const response = await this.open(path, init, deadline);
      try {
        yield* readSseData(bodyChunks(response.body, deadline), { maxEventBytes: MAX_RESPONSE_BYTES });
      } catch (error) {
        if (error instanceof SseError)
          throw new FedAiSdkError('BODY_TOO_LARGE', 'A stream event from the router is too large.', 0);
        throw error;
      }
    } finally {
      this.settle(deadline);
    }
  }

  private async open(
    path: string,
    init: { method: string; headers: Record<string, string>; body?: string },
    deadline: Deadline,
  ): Promise<Response> {
    let response: Response;
    try {
      response = await this.fetchImpl(`${this.routerUrl}${path}`, { ...init, signal: deadline.signal });
    } catch (error) {
      throw deadline.errorFor(error);
    }
    if (response.status >= 400) {
      const text = await readLimited(response.body, MAX_RESPONSE_BYTES, deadline);
      throw FedAiSdkError.fromResponse(response.status, text, response.headers);
    }
    return response;
  }

  private deadline(signal: AbortSignal | undefined): Deadline {
    if (this.inFlight.size >= MAX_IN_FLIGHT)
      throw new FedAiSdkError('OVERLOADED', `More than ${MAX_IN_FLIGHT} calls in flight on this client.`, 0);
    const deadline = new Deadline(this.timeoutMs, signal);
    this.inFlight.add(deadline);
    return deadline;
  }

  private settle(deadline: Deadline): void {
    deadline.end();
    this.inFlight.delete(deadline);
  }
}

function asNode(value: string): NodeId {
  try {
    return nodeId(value);
  } catch {
    throw new FedAiSdkError('BAD_METERING', 'The answer names no valid node key.', 502);
  }
}

/** The metering record inside a receipt, parsed (not yet verified: use verifyReceipt for that). */
function receiptRecord(receipt: Envelope) {
  let content: unknown;
  try {
    content = JSON.parse(receipt.content);
  } catch {
    throw new FedAiSdkError('BAD_METERING', 'The receipt content is not JSON.', 502);
  }
  const parsed = meteringRecordSchema.safeParse(content);
  if (!parsed.success) throw new FedAiSdkError('BAD_METERING', 'The receipt is not a metering record.', 502);
  return { record: parsed.data, dispatchId: dispatchId(parsed.data.request_id) };
}

function resultFrom(
  id: string,
  model: string,
  text: string,
  finish: string | null | undefined,
  usage: Usage | null | undefined,
  fedai: FedaiBlock | undefined,
  receipt: Envelope,
): ChatResult {
  const { record, dispatchId: dispatch } = receiptRecord(receipt);
  return {
    id,
    model,
    text,
    finishReason: finish ?? record.finish_reason,
    usage: usage ?? {
      prompt_tokens: record.tokens_in,
      completion_tokens: record.tokens_out,
      total_tokens: record.tokens_in + record.tokens_out,
    },
    costMsat: fedai?.cost_msat ?? record.cost_msat,
    node: asNode(fedai?.node ?? receipt.pubkey),
    dispatchId: dispatch,
    receipt,
  };
}

/** Receipts travel as base64url JSON (headers), plain JSON text, or an object. Checks the shape only. */
export function parseReceipt(value: unknown): Envelope {
  let candidate: unknown = value;
  if (typeof value === 'string' && value.length > 0) {
    const text = value.trimStart().startsWith('{') ? value : decodeEnvelopeHeader(value);
    try {
      candidate = JSON.parse(text);
    } catch {
      throw new FedAiSdkError('BAD_METERING', 'The receipt is not valid JSON.', 502);
    }
  } else if (!value || typeof value !== 'object') {
    throw new FedAiSdkError('BAD_METERING', 'The answer carried no receipt.', 502);
  }
  const parsed = envelopeShapeSchema.safeParse(candidate);
  if (!parsed.success) throw new FedAiSdkError('BAD_METERING', 'The receipt is not a signed event.', 502);
  return parsed.data;
}

/** @deprecated Use `readSseData` (from @fed-ai/protocol, re-exported here): the one shared reader. */
export function readSse(
  body: AsyncIterable<Uint8Array | string>,
  maxEventBytes: number,
): AsyncGenerator<string, void, void> {
  return readSseData(body, { maxEventBytes });
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(new FedAiSdkError('CANCELLED', 'Aborted.', 0));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
