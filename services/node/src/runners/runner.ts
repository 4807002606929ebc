// The one interface every inference backend implements. The node's HTTP shell, admission control
// and metering only ever talk to a Runner; adapters live beside this file, one per backend.

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'tool';
  content: string;
  name?: string | undefined;
}

export interface GenerateParams {
  /** The runner's own model id (after the node mapped the public model id). */
  model: string;
  messages: ChatMessage[];
  maxTokens: number;
  temperature?: number | undefined;
  topP?: number | undefined;
  stop?: string[] | undefined;
  seed?: number | undefined;
  /** Aborting stops generation and frees the slot; the stream then ends with reason 'cancelled'. */
  signal: AbortSignal;
}

/** One streamed piece of output, in order. */
export interface TokenDelta {
  text: string;
}

export type FinishReason = 'stop' | 'length' | 'cancelled' | 'error';

/** Counts from the runner's own tokenizer or the upstream's usage block, never estimated from characters. */
export interface GenerationResult {
  finishReason: FinishReason;
  promptTokens: number;
  completionTokens: number;
  /** Full output text (concatenation of all deltas). */
  text: string;
}

export interface RunnerModel {
  /** Id as the runner knows it. */
  id: string;
  contextWindow: number;
  /** True for generated demo models whose output is noise. */
  demo?: boolean;
}

export interface RunnerHealth {
  ok: boolean;
  detail?: string;
}

export interface Runner {
  readonly kind: 'openai-http' | 'embedded-gguf';
  /** Loads/probes the backend; resolves when it can serve. */
  start(): Promise<void>;
  listModels(): Promise<RunnerModel[]>;
  /**
   * Streams a chat completion. Yields deltas as they are produced; the generator's return value is
   * the final result with token counts. Throws RunnerError for failures before or during output.
   */
  generate(params: GenerateParams): AsyncGenerator<TokenDelta, GenerationResult, void>;
  /** Token count of a chat prompt as this runner would tokenize it (for quotes and reservations). */
  countPromptTokens(model: string, messages: ChatMessage[]): Promise<number>;
  health(): Promise<RunnerHealth>;
  stop(): Promise<void>;
}

export type RunnerErrorCode =
  | 'RUNNER_UNAVAILABLE'
  | 'RUNNER_TIMEOUT'
  | 'RUNNER_UPSTREAM_ERROR'
  | 'RUNNER_CRASHED'
  | 'MODEL_NOT_FOUND'
  /** The request does not fit the model's context: the client's doing, not the node's. */
  | 'CONTEXT_TOO_LONG'
  | 'CANCELLED';

/** Upstream wording for a prompt over the context (llama.cpp, vLLM, OpenAI, Ollama, node-llama-cpp). */
export const CONTEXT_OVERFLOW =
  /exceeds the (available )?context|context[ _]length|context size|maximum context|too many tokens/i;

export class RunnerError extends Error {
  constructor(
    readonly code: RunnerErrorCode,
    message: string,
    /** Upstream HTTP status where there was one. */
    readonly status?: number,
  ) {
    super(message);
    this.name = 'RunnerError';
  }
}
