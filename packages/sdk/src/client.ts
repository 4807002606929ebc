// FedAiClient: chat with a fed-ai router using an API key (OpenAI-compatible routes) or your own
// Nostr key (signed native routes). Every answer carries usage, cost in msat and the node-signed
// receipt, which `verifyReceipt` checks offline.
import {
  type ChatMessage,
  createEnvelope,
  decodeEnvelopeHeader,
  type Envelope,
  type FinishReason,
  generateSecretKey,
  KIND,
  type MeteringRecord,
  type ProviderPrefs,
  parseSecretKey,
  publicKeyOf,
  type QuoteResponse,
  type Usage,
  verifyEnvelope,
} from '@fed-ai/protocol';
import { Agent, request } from 'undici';
import { FedAiSdkError, isRetryable } from './errors';
import { readSse } from './sse';

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
  node: string;
  /** Node-signed metering record (kind 28117) covering prompt and output hashes. */
  receipt: Envelope;
}

export type ChatStreamEvent = { type: 'delta'; text: string } | { type: 'done'; result: ChatResult };

export interface ModelInfo {
  id: string;
  context_window?: number;
  nodes?: number;
  price?: { input_msat_per_1k: number; output_msat_per_1k: number };
}

const MAX_RESPONSE_BYTES = 8 * 1024 * 1024;

export class FedAiClient {
  readonly routerUrl: string;
  private readonly apiKey: string | undefined;
  private readonly secretKey: Uint8Array | undefined;
  private readonly timeoutMs: number;
  private readonly maxAttempts: number;
  private readonly retryBaseDelayMs: number;
  private readonly dispatcher: Agent;
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
    this.dispatcher = new Agent({
      connectTimeout: 10_000,
      bodyTimeout: this.timeoutMs,
      headersTimeout: this.timeoutMs,
    });
  }

  /** A client with a fresh random Nostr key (handy for scripts and tests). */
  static withNewKey(routerUrl: string): FedAiClient {
    return new FedAiClient({ routerUrl, secretKey: generateSecretKey() });
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
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
    const body = (await this.getJson('/v1/models')) as { data?: ModelInfo[] };
    return body.data ?? [];
  }

  async nodes(): Promise<unknown[]> {
    const body = (await this.getJson('/nodes')) as { nodes?: unknown[] };
    return body.nodes ?? [];
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
      const json = JSON.parse(answer.text) as OpenAiCompletion;
      const receiptText = answer.headers['x-fedai-receipt'];
      const receipt = parseReceipt(
        json.fedai?.receipt ?? (typeof receiptText === 'string' ? receiptText : undefined),
      );
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
    const response = await this.open('/v1/chat/completions', body, headers, params.signal);
    let text = '';
    let finish: string | undefined;
    let usage: Usage | undefined;
    let fedai: OpenAiCompletion['fedai'];
    let id = '';
    let model = params.model;
    for await (const data of readSse(response.body, MAX_RESPONSE_BYTES)) {
      if (data === '[DONE]') break;
      const chunk = JSON.parse(data) as OpenAiChunk;
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
    const requestId = `sdk-${crypto.randomUUID()}`;
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
      return {
        id: p.request_id,
        model: p.model,
        text: p.text,
        finishReason: p.finish_reason,
        usage: p.usage,
        costMsat: p.cost_msat,
        node: p.node,
        receipt: parseReceipt(p.receipt),
      };
    };
    if (!stream) {
      const answer = await this.post('/infer', JSON.stringify(envelope), {}, params.signal);
      const result = await finalFrom(answer.text);
      yield { type: 'delta', text: result.text };
      yield { type: 'done', result };
      return;
    }
    const response = await this.open('/infer/stream', JSON.stringify(envelope), {}, params.signal);
    for await (const data of readSse(response.body, MAX_RESPONSE_BYTES)) {
      const event = JSON.parse(data) as { type: string; delta?: string; response?: unknown; error?: unknown };
      if (event.type === 'delta' && typeof event.delta === 'string')
        yield { type: 'delta', text: event.delta };
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
      const info = (await this.getJson('/v1/router')) as { pubkey?: string };
      if (typeof info.pubkey !== 'string' || !/^[0-9a-f]{64}$/.test(info.pubkey)) {
        throw new FedAiSdkError('BAD_SHAPE', 'The router did not report a public key.', 502);
      }
      this.routerPubkey = info.pubkey;
    }
    return this.routerPubkey;
  }

  private async getJson(path: string): Promise<unknown> {
    const headers: Record<string, string> = this.apiKey ? { authorization: `Bearer ${this.apiKey}` } : {};
    const response = await request(`${this.routerUrl}${path}`, {
      method: 'GET',
      headers,
      dispatcher: this.dispatcher,
    }).catch((error: unknown) => {
      throw FedAiSdkError.network(error);
    });
    const text = await readLimited(response.body, MAX_RESPONSE_BYTES);
    if (response.statusCode >= 400)
      throw FedAiSdkError.fromResponse(response.statusCode, text, response.headers);
    return JSON.parse(text);
  }

  private async post(path: string, body: string, headers: Record<string, string>, signal?: AbortSignal) {
    const response = await this.open(path, body, headers, signal);
    return { text: await readLimited(response.body, MAX_RESPONSE_BYTES), headers: response.headers };
  }

  private async open(path: string, body: string, headers: Record<string, string>, signal?: AbortSignal) {
    const response = await request(`${this.routerUrl}${path}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body,
      dispatcher: this.dispatcher,
      ...(signal ? { signal } : {}),
    }).catch((error: unknown) => {
      throw FedAiSdkError.network(error);
    });
    if (response.statusCode >= 400) {
      const text = await readLimited(response.body, MAX_RESPONSE_BYTES);
      throw FedAiSdkError.fromResponse(response.statusCode, text, response.headers);
    }
    return response;
  }
}

interface OpenAiCompletion {
  id: string;
  model: string;
  choices?: { message?: { content?: string }; finish_reason?: string }[];
  usage?: Usage;
  fedai?: { node?: string; cost_msat?: number; receipt?: unknown };
}

interface OpenAiChunk {
  id?: string;
  model?: string;
  choices?: { delta?: { content?: string }; finish_reason?: string | null }[];
  usage?: Usage | null;
  fedai?: OpenAiCompletion['fedai'];
  error?: unknown;
}

function resultFrom(
  id: string,
  model: string,
  text: string,
  finish: string | null | undefined,
  usage: Usage | null | undefined,
  fedai: OpenAiCompletion['fedai'],
  receipt: Envelope,
): ChatResult {
  const record = JSON.parse(receipt.content) as MeteringRecord;
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
    node: fedai?.node ?? receipt.pubkey,
    receipt,
  };
}

/** Receipts travel as base64url JSON (headers), plain JSON text, or an object. */
export function parseReceipt(value: unknown): Envelope {
  if (value && typeof value === 'object') return value as Envelope;
  if (typeof value !== 'string' || value.length === 0) {
    throw new FedAiSdkError('BAD_METERING', 'The answer carried no receipt.', 502);
  }
  const text = value.trimStart().startsWith('{') ? value : decodeEnvelopeHeader(value);
  try {
    return JSON.parse(text) as Envelope;
  } catch {
    throw new FedAiSdkError('BAD_METERING', 'The receipt is not valid JSON.', 502);
  }
}

async function readLimited(body: AsyncIterable<Uint8Array | string>, maxBytes: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of body) {
    const buffer = typeof chunk === 'string' ? Buffer.from(chunk) : Buffer.from(chunk);
    size += buffer.length;
    if (size > maxBytes) throw new FedAiSdkError('BODY_TOO_LARGE', 'The router answer is too large.', 502);
    chunks.push(buffer);
  }
  return Buffer.concat(chunks).toString('utf8');
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(resolve, ms);
    signal?.addEventListener(
      'abort',
      () => {
        clearTimeout(timer);
        reject(new FedAiSdkError('CANCELLED', 'Aborted.', 0));
      },
      { once: true },
    );
  });
}
