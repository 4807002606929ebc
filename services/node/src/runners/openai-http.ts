// Runner for any OpenAI-compatible server: llama.cpp server, vLLM, Ollama (/v1), LM Studio.
// Streams SSE deltas as they arrive, takes token counts from the upstream's usage block (or
// llama.cpp's /tokenize), and cancels the upstream request when the caller aborts.
import { readSseBatches, SseError } from '@fed-ai/protocol';
import { Agent, request } from 'undici';
import {
  type ChatMessage,
  CONTEXT_OVERFLOW,
  type GenerateParams,
  type GenerationResult,
  type Runner,
  RunnerError,
  type RunnerHealth,
  type RunnerModel,
  type TokenDelta,
} from './runner';

export interface OpenAiRunnerOptions {
  baseUrl: string;
  apiKey?: string | undefined;
  /** Public model id -> upstream model id. Models not listed pass through unchanged. */
  modelMap?: Record<string, string>;
  /** Models to offer when the upstream cannot list them. */
  models?: RunnerModel[];
  timeouts?: { connectMs?: number; firstTokenMs?: number; totalMs?: number };
  defaultContextWindow?: number;
}

const MAX_SSE_LINE_CHARS = 1_000_000;
/** How long a /ready probe of the upstream is reused, and how long one may take. */
const HEALTH_CACHE_MS = 2_000;
const HEALTH_TIMEOUT_MS = 2_000;

export class OpenAiHttpRunner implements Runner {
  readonly kind = 'openai-http' as const;
  private readonly baseUrl: string;
  private readonly agent: Agent;
  private readonly timeouts: { connectMs: number; firstTokenMs: number; totalMs: number };
  private tokenizeSupported: boolean | undefined;
  private healthCache: { atMs: number; health: RunnerHealth } | null = null;
  private healthProbe: Promise<RunnerHealth> | null = null;

  constructor(private readonly options: OpenAiRunnerOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, '');
    this.timeouts = {
      connectMs: options.timeouts?.connectMs ?? 5_000,
      firstTokenMs: options.timeouts?.firstTokenMs ?? 60_000,
      totalMs: options.timeouts?.totalMs ?? 600_000,
    };
    this.agent = new Agent({ connectTimeout: this.timeouts.connectMs, headersTimeout: 0, bodyTimeout: 0 });
  }

  private headers(): Record<string, string> {
    return {
      'content-type': 'application/json',
      ...(this.options.apiKey ? { authorization: `Bearer ${this.options.apiKey}` } : {}),
    };
  }

  private upstreamModel(model: string): string {
    return this.options.modelMap?.[model] ?? model;
  }

  async start(): Promise<void> {
    const models = await this.listModels();
    if (models.length === 0) throw new RunnerError('RUNNER_UNAVAILABLE', `${this.baseUrl} lists no models`);
  }

  async listModels(): Promise<RunnerModel[]> {
    if (this.options.models?.length) return this.options.models;
    const response = await request(`${this.baseUrl}/models`, {
      headers: this.headers(),
      dispatcher: this.agent,
      signal: AbortSignal.timeout(this.timeouts.connectMs + 5_000),
    }).catch((error: unknown) => {
      throw new RunnerError(
        'RUNNER_UNAVAILABLE',
        `cannot reach ${this.baseUrl}: ${(error as Error).message}`,
      );
    });
    const body = (await response.body.json().catch(() => null)) as {
      data?: { id: string; context_length?: number }[];
    } | null;
    if (response.statusCode >= 400 || !body) {
      throw new RunnerError(
        'RUNNER_UPSTREAM_ERROR',
        `GET /models answered ${response.statusCode}`,
        response.statusCode,
      );
    }
    const reverse = new Map(Object.entries(this.options.modelMap ?? {}).map(([pub, up]) => [up, pub]));
    return (body.data ?? []).map((m) => ({
      id: reverse.get(m.id) ?? m.id,
      contextWindow: m.context_length ?? this.options.defaultContextWindow ?? 4096,
    }));
  }

  /**
   * What a cancelled generation is billed: the upstream gives no usage once cut off, so tokens are
   * counted with its tokenizer where it has one, else one per streamed delta (servers send one
   * token per chunk; a batching server is under-counted, never over).
   */
  private async cancelledResult(
    params: GenerateParams,
    text: string,
    deltas: number,
  ): Promise<GenerationResult> {
    const promptTokens = await this.tokenizeCount(params.messages.map((m) => m.content).join('\n')).catch(
      () => undefined,
    );
    const completionTokens = text ? await this.tokenizeCount(text).catch(() => undefined) : 0;
    return {
      finishReason: 'cancelled',
      promptTokens: promptTokens ?? 0,
      completionTokens: Math.min(completionTokens ?? deltas, params.maxTokens),
      text,
    };
  }

  async *generate(params: GenerateParams): AsyncGenerator<TokenDelta, GenerationResult, void> {
    const controller = new AbortController();
    const onAbort = () => controller.abort(new RunnerError('CANCELLED', 'cancelled'));
    params.signal.addEventListener('abort', onAbort, { once: true });
    if (params.signal.aborted) onAbort();
    let timeoutCode: 'first' | 'total' | null = null;
    const totalTimer = setTimeout(() => {
      timeoutCode = 'total';
      controller.abort();
    }, this.timeouts.totalMs);
    let firstTimer: NodeJS.Timeout | null = setTimeout(() => {
      timeoutCode = 'first';
      controller.abort();
    }, this.timeouts.firstTokenMs);
    const clearFirst = () => {
      if (firstTimer) clearTimeout(firstTimer);
      firstTimer = null;
    };
    let text = '';
    let deltas = 0;
    let usage: { prompt_tokens?: number; completion_tokens?: number } | undefined;
    let finish: string | undefined;
    // Set once the upstream's body was read to its end: nothing is left to abort.
    let drained = false;
    try {
      let response: Awaited<ReturnType<typeof request>>;
      try {
        response = await request(`${this.baseUrl}/chat/completions`, {
          method: 'POST',
          headers: this.headers(),
          dispatcher: this.agent,
          signal: controller.signal,
          body: JSON.stringify({
            model: this.upstreamModel(params.model),
            messages: params.messages,
            max_tokens: params.maxTokens,
            stream: true,
            stream_options: { include_usage: true },
            ...(params.temperature !== undefined ? { temperature: params.temperature } : {}),
            ...(params.topP !== undefined ? { top_p: params.topP } : {}),
            ...(params.stop?.length ? { stop: params.stop } : {}),
            ...(params.seed !== undefined ? { seed: params.seed } : {}),
          }),
        });
      } catch (error) {
        throw this.mapError(error, timeoutCode, params.signal);
      }
      if (response.statusCode >= 400) {
        const detail = (await response.body.text().catch(() => '')).slice(0, 300);
        throw new RunnerError(
          response.statusCode < 500 && CONTEXT_OVERFLOW.test(detail)
            ? 'CONTEXT_TOO_LONG'
            : 'RUNNER_UPSTREAM_ERROR',
          `upstream answered ${response.statusCode}: ${detail}`,
          response.statusCode,
        );
      }
      try {
        // The shared byte-safe SSE reader: multi-byte characters split across chunks survive.
        // One step per upstream chunk: tokens that arrived together go on as one delta.
        for await (const batch of readSseBatches(response.body, { maxEventBytes: MAX_SSE_LINE_CHARS })) {
          let chunkText = '';
          for (const data of batch) {
            const event = parseUpstreamEvent(data);
            if (!event) continue;
            if (event.delta) {
              deltas += 1;
              chunkText += event.delta;
            }
            if (event.finish) finish = event.finish;
            if (event.usage) usage = event.usage;
          }
          if (chunkText) {
            clearFirst();
            text += chunkText;
            yield { text: chunkText };
          }
        }
        drained = true;
      } catch (error) {
        if (error instanceof RunnerError) throw error;
        if (error instanceof SseError)
          throw new RunnerError('RUNNER_UPSTREAM_ERROR', 'upstream SSE line too long');
        if (params.signal.aborted) return this.cancelledResult(params, text, deltas);
        throw this.mapError(error, timeoutCode, params.signal);
      }
      if (params.signal.aborted) return this.cancelledResult(params, text, deltas);
      let promptTokens = usage?.prompt_tokens;
      let completionTokens = usage?.completion_tokens;
      if (promptTokens === undefined || completionTokens === undefined) {
        // No usage block: count with the upstream's own tokenizer (llama.cpp), never by characters.
        promptTokens ??= await this.tokenizeCount(params.messages.map((m) => m.content).join('\n'));
        completionTokens ??= await this.tokenizeCount(text);
        if (promptTokens === undefined || completionTokens === undefined) {
          throw new RunnerError(
            'RUNNER_UPSTREAM_ERROR',
            'upstream reports no token usage and has no /tokenize endpoint',
          );
        }
      }
      return {
        finishReason: finish === 'length' ? 'length' : 'stop',
        promptTokens,
        completionTokens,
        text,
      };
    } finally {
      clearTimeout(totalTimer);
      clearFirst();
      params.signal.removeEventListener('abort', onAbort);
      // Only a body left unread is aborted (an abort builds a DOMException: not on every request).
      if (!drained && !controller.signal.aborted) controller.abort();
    }
  }

  private mapError(error: unknown, timeoutCode: 'first' | 'total' | null, signal: AbortSignal): RunnerError {
    if (error instanceof RunnerError) return error;
    if (signal.aborted) return new RunnerError('CANCELLED', 'cancelled');
    if (timeoutCode)
      return new RunnerError(
        'RUNNER_TIMEOUT',
        `upstream gave no ${timeoutCode === 'first' ? 'first token' : 'complete answer'} in time`,
      );
    const code = (error as { code?: string }).code;
    if (code === 'UND_ERR_CONNECT_TIMEOUT')
      return new RunnerError('RUNNER_TIMEOUT', 'upstream connect timeout');
    return new RunnerError('RUNNER_UNAVAILABLE', `upstream unreachable: ${(error as Error).message}`);
  }

  /** llama.cpp's `POST /tokenize` (at the server root, not under /v1). */
  private async tokenizeCount(content: string): Promise<number | undefined> {
    if (this.tokenizeSupported === false) return undefined;
    const root = this.baseUrl.replace(/\/v1$/, '');
    try {
      const response = await request(`${root}/tokenize`, {
        method: 'POST',
        headers: this.headers(),
        dispatcher: this.agent,
        body: JSON.stringify({ content }),
        signal: AbortSignal.timeout(5_000),
      });
      const body = (await response.body.json().catch(() => null)) as { tokens?: unknown[] } | null;
      if (response.statusCode >= 400 || !Array.isArray(body?.tokens)) {
        this.tokenizeSupported = false;
        return undefined;
      }
      this.tokenizeSupported = true;
      return body.tokens.length;
    } catch {
      this.tokenizeSupported = false;
      return undefined;
    }
  }

  /**
   * Prompt tokens for quotes and reservations (never for metering): the upstream tokenizer when it
   * has one, otherwise a deliberately high estimate (one token per 2 characters plus 8 per message).
   */
  async countPromptTokens(_model: string, messages: ChatMessage[]): Promise<number> {
    const exact = await this.tokenizeCount(messages.map((m) => m.content).join('\n'));
    if (exact !== undefined) return exact + 8 * messages.length;
    return messages.reduce((sum, m) => sum + Math.ceil(m.content.length / 2) + 8, 0);
  }

  /**
   * Whether the upstream really answers (GET /models, any HTTP status below 500 counts), also when
   * the models come from config. One probe at a time, its result kept HEALTH_CACHE_MS so /ready
   * polls do not hammer the upstream. The detail names no address (/ready is public).
   */
  async health(): Promise<RunnerHealth> {
    const now = Date.now();
    if (this.healthCache && now - this.healthCache.atMs < HEALTH_CACHE_MS) return this.healthCache.health;
    this.healthProbe ??= this.probeUpstream().then((health) => {
      this.healthCache = { atMs: Date.now(), health };
      this.healthProbe = null;
      return health;
    });
    return this.healthProbe;
  }

  private async probeUpstream(): Promise<RunnerHealth> {
    try {
      const response = await request(`${this.baseUrl}/models`, {
        headers: this.headers(),
        dispatcher: this.agent,
        signal: AbortSignal.timeout(HEALTH_TIMEOUT_MS),
      });
      await response.body.dump().catch(() => {});
      if (response.statusCode >= 500)
        return { ok: false, detail: `the model server answers ${response.statusCode}` };
      return { ok: true };
    } catch {
      return { ok: false, detail: 'the model server (OPENAI_BASE_URL) does not answer' };
    }
  }

  async stop(): Promise<void> {
    await this.agent.close();
  }
}

interface UpstreamEvent {
  delta: string | undefined;
  finish: string | undefined;
  usage: { prompt_tokens?: number; completion_tokens?: number } | undefined;
}

/** One OpenAI stream chunk's parts; null for the `[DONE]` marker. An error event throws. */
function parseUpstreamEvent(raw: string): UpstreamEvent | null {
  const data = raw.trim();
  if (data === '[DONE]') return null;
  let event: {
    choices?: { delta?: { content?: string | null }; finish_reason?: string | null }[];
    usage?: { prompt_tokens?: number; completion_tokens?: number } | null;
    error?: { message?: string };
  } | null;
  try {
    event = JSON.parse(data);
  } catch {
    throw new RunnerError('RUNNER_UPSTREAM_ERROR', 'upstream sent invalid JSON in its stream');
  }
  // `null`, a number or a string: reading fields from it would throw a TypeError, not say why.
  if (typeof event !== 'object' || event === null)
    throw new RunnerError('RUNNER_UPSTREAM_ERROR', 'upstream sent an event that is not a JSON object');
  if (event.error) throw new RunnerError('RUNNER_UPSTREAM_ERROR', event.error.message ?? 'upstream error');
  const choice = event.choices?.[0];
  return {
    delta: choice?.delta?.content ?? undefined,
    finish: choice?.finish_reason ?? undefined,
    usage: event.usage ?? undefined,
  };
}
