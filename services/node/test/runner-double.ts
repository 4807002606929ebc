// Test double of a model runner: emits scripted tokens with a delay. Lives only under test/.
import type {
  ChatMessage,
  GenerateParams,
  GenerationResult,
  Runner,
  RunnerHealth,
  RunnerModel,
  TokenDelta,
} from '../src/runners/runner';

export class ScriptedRunnerDouble implements Runner {
  readonly kind = 'embedded-gguf' as const;
  active = 0;
  started = 0;

  constructor(
    private readonly tokens: string[] = ['Hel', 'lo', ' world'],
    private readonly delayMs = 5,
    readonly modelId = 'double-model',
  ) {}

  async start(): Promise<void> {}
  async listModels(): Promise<RunnerModel[]> {
    return [{ id: this.modelId, contextWindow: 4096 }];
  }
  async *generate(params: GenerateParams): AsyncGenerator<TokenDelta, GenerationResult, void> {
    this.active += 1;
    this.started += 1;
    let text = '';
    let count = 0;
    try {
      for (const token of this.tokens.slice(0, params.maxTokens)) {
        await new Promise((r) => setTimeout(r, this.delayMs));
        if (params.signal.aborted)
          return { finishReason: 'cancelled', promptTokens: 7, completionTokens: count, text };
        text += token;
        count += 1;
        yield { text: token };
      }
      return { finishReason: 'stop', promptTokens: 7, completionTokens: count, text };
    } finally {
      this.active -= 1;
    }
  }
  async countPromptTokens(_model: string, messages: ChatMessage[]): Promise<number> {
    return messages.length * 7;
  }
  async health(): Promise<RunnerHealth> {
    return { ok: true };
  }
  async stop(): Promise<void> {}
}
