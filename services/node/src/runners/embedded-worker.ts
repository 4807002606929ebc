// The model process of the embedded runner: loads one GGUF model with node-llama-cpp and serves
// up to `parallel` generations at once, one context sequence each. It runs apart from the node so
// a crash in native code only takes this process down; the parent restarts it.
import { type ChatHistoryItem, getLlama, LlamaChat, type LlamaModel, resolveModelFile } from 'node-llama-cpp';
import type { ChildConfig, FromChild, ToChild } from './embedded-protocol';
import type { ChatMessage, FinishReason } from './runner';

const config = JSON.parse(process.env.FEDAI_EMBEDDED_CONFIG ?? '{}') as ChildConfig;

function send(message: FromChild): void {
  process.send?.(message);
}

function toHistory(messages: ChatMessage[]): ChatHistoryItem[] {
  const history: ChatHistoryItem[] = [];
  for (const m of messages) {
    if (m.role === 'system') history.push({ type: 'system', text: m.content });
    else if (m.role === 'assistant') history.push({ type: 'model', response: [m.content] });
    else history.push({ type: 'user', text: m.content });
  }
  history.push({ type: 'model', response: [] });
  return history;
}

async function main(): Promise<void> {
  const llama = await getLlama({ gpu: false, build: 'never', logLevel: 'error' as never });
  // `hf:` and URL sources are resolved (downloaded once) by node-llama-cpp into the models folder.
  const modelPath = /^(hf:|https?:)/.test(config.modelPath)
    ? await resolveModelFile(config.modelPath, { directory: config.modelsDir, cli: false })
    : config.modelPath;
  const model: LlamaModel = await llama.loadModel({ modelPath });
  const contextSize = Math.min(config.contextSize, model.trainContextSize);
  const context = await model.createContext({
    contextSize,
    sequences: config.parallel,
    threads: config.threads,
  });
  const free: LlamaChat[] = [];
  for (let i = 0; i < config.parallel; i++)
    free.push(new LlamaChat({ contextSequence: context.getSequence() }));
  const running = new Map<number, AbortController>();
  const wrapper = free[0]!.chatWrapper;
  // Prompt tokens as the model's own chat template and tokenizer produce them.
  function countPromptTokens(messages: ChatMessage[]): number {
    const state = wrapper.generateContextState({ chatHistory: toHistory(messages) });
    return state.contextText.tokenize(model.tokenizer).length;
  }

  async function generate(request: Extract<ToChild, { type: 'generate' }>): Promise<void> {
    const chat = free.pop();
    if (!chat) {
      send({ type: 'failed', id: request.id, message: 'no free sequence' });
      return;
    }
    const abort = new AbortController();
    running.set(request.id, abort);
    let completionTokens = 0;
    let text = '';
    try {
      const prompt = countPromptTokens(request.messages);
      if (prompt + 1 > contextSize) {
        send({
          type: 'failed',
          id: request.id,
          message: `prompt of ${prompt} tokens exceeds the context of ${contextSize}`,
        });
        return;
      }
      const response = await chat.generateResponse(toHistory(request.messages), {
        maxTokens: Math.min(request.maxTokens, contextSize - prompt),
        temperature: request.temperature ?? 0,
        ...(request.topP !== undefined ? { topP: request.topP } : {}),
        ...(request.seed !== undefined ? { seed: request.seed } : {}),
        ...(request.stop?.length ? { customStopTriggers: request.stop } : {}),
        signal: abort.signal,
        stopOnAbortSignal: true,
        onToken: (tokens) => {
          completionTokens += tokens.length;
        },
        onTextChunk: (chunk) => {
          text += chunk;
          send({ type: 'delta', id: request.id, text: chunk });
        },
      });
      const reason = response.metadata.stopReason;
      const finishReason: FinishReason = abort.signal.aborted
        ? 'cancelled'
        : reason === 'maxTokens'
          ? 'length'
          : 'stop';
      send({ type: 'done', id: request.id, finishReason, promptTokens: prompt, completionTokens, text });
    } catch (error) {
      if (abort.signal.aborted) {
        send({
          type: 'done',
          id: request.id,
          finishReason: 'cancelled',
          promptTokens: 0,
          completionTokens,
          text,
        });
      } else {
        send({
          type: 'failed',
          id: request.id,
          message: error instanceof Error ? error.message : String(error),
        });
      }
    } finally {
      running.delete(request.id);
      free.push(chat);
    }
  }

  process.on('message', (raw: ToChild) => {
    if (raw.type === 'generate') void generate(raw);
    else if (raw.type === 'cancel') running.get(raw.id)?.abort();
    else if (raw.type === 'count') {
      try {
        send({ type: 'counted', id: raw.id, tokens: countPromptTokens(raw.messages) });
      } catch (error) {
        send({ type: 'failed', id: raw.id, message: error instanceof Error ? error.message : String(error) });
      }
    }
  });
  process.on('disconnect', () => process.exit(0));
  send({ type: 'ready', contextWindow: contextSize, trainedContext: model.trainContextSize });
}

main().catch((error: unknown) => {
  send({ type: 'fatal', message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
