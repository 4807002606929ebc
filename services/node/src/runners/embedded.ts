// Embedded GGUF runner: node-llama-cpp in a child process (embedded-worker.ts). The parent keeps
// the node alive when native code crashes: in-flight generations fail with RUNNER_CRASHED, health
// turns bad, and the child is restarted with bounded exponential backoff.
import { type ChildProcess, fork } from 'node:child_process';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { serviceNodeArgs } from '@fed-ai/kit';
import type { ChildConfig, FromChild, ToChild } from './embedded-protocol';
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

export interface EmbeddedRunnerOptions {
  /** A .gguf path, or an `hf:` URI / URL that node-llama-cpp resolves (needs internet once). */
  modelPath: string;
  modelsDir?: string;
  /** Public model id; defaults to the file name without .gguf. */
  modelId?: string;
  contextSize?: number;
  threads?: number;
  /** Concurrent generations from the one loaded model (context sequences). */
  parallel?: number;
  demo?: boolean;
  restartBackoffMs?: number;
  maxRestartBackoffMs?: number;
  startTimeoutMs?: number;
}

interface Pending {
  push(event: FromChild): void;
  fail(error: RunnerError): void;
}

const MAX_QUEUED_EVENTS = 100_000;

export class EmbeddedGgufRunner implements Runner {
  readonly kind = 'embedded-gguf' as const;
  readonly modelId: string;
  private child: ChildProcess | null = null;
  private ready = false;
  private contextWindow = 0;
  private nextId = 1;
  private generating = 0;
  private readonly pending = new Map<number, Pending>();
  private stopped = false;
  private backoffMs: number;
  private restartTimer: NodeJS.Timeout | null = null;
  private lastError: string | undefined;
  private readyWaiters: { resolve: () => void; reject: (e: Error) => void }[] = [];
  restarts = 0;

  constructor(private readonly options: EmbeddedRunnerOptions) {
    this.modelId =
      options.modelId ??
      basename(options.modelPath)
        .replace(/\.gguf$/i, '')
        .replace(/^hf:/, '')
        .replace(/[^A-Za-z0-9_\-:./@+]/g, '-');
    this.backoffMs = options.restartBackoffMs ?? 1000;
  }

  /** Process id of the model process (for tests and operators). */
  get childPid(): number | undefined {
    return this.child?.pid;
  }

  get parallel(): number {
    return this.options.parallel ?? 2;
  }

  async start(): Promise<void> {
    this.stopped = false;
    this.spawn();
    await this.waitReady(this.options.startTimeoutMs ?? 120_000);
  }

  private waitReady(timeoutMs: number): Promise<void> {
    if (this.ready) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new RunnerError('RUNNER_UNAVAILABLE', 'model did not load in time')),
        timeoutMs,
      );
      this.readyWaiters.push({
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
    });
  }

  private spawn(): void {
    const config: ChildConfig = {
      modelPath: this.options.modelPath,
      modelsDir:
        this.options.modelsDir ??
        join(dirname(this.options.modelPath.startsWith('hf:') ? '.' : this.options.modelPath), 'models'),
      contextSize: this.options.contextSize ?? 2048,
      threads: this.options.threads ?? 1,
      parallel: this.parallel,
    };
    const require = createRequire(import.meta.url);
    const tsx = new URL(`file://${require.resolve('tsx/esm')}`).href;
    const worker = new URL('./embedded-worker.ts', import.meta.url).pathname;
    const nodeArgs = serviceNodeArgs(worker, ['--import', tsx]); // the test runner's bundle when it has one
    const child = fork(nodeArgs.at(-1) ?? worker, [], {
      execArgv: nodeArgs.slice(0, -1),
      env: { ...process.env, FEDAI_EMBEDDED_CONFIG: JSON.stringify(config) },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      serialization: 'advanced',
    });
    this.child = child;
    let stderrTail = '';
    child.stderr?.on('data', (chunk: Buffer) => {
      stderrTail = (stderrTail + chunk.toString()).slice(-2000);
    });
    child.on('message', (message: FromChild) => this.onMessage(message));
    child.on('exit', (code, signal) => {
      if (this.child !== child) return;
      this.child = null;
      this.ready = false;
      this.lastError = `model process exited (code ${code}, signal ${signal})${stderrTail ? `: ${stderrTail.trim().split('\n').pop()}` : ''}`;
      for (const [, p] of this.pending) p.fail(new RunnerError('RUNNER_CRASHED', this.lastError));
      this.pending.clear();
      if (this.stopped) return;
      this.restarts += 1;
      const delay = this.backoffMs;
      this.backoffMs = Math.min(this.backoffMs * 2, this.options.maxRestartBackoffMs ?? 30_000);
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        if (!this.stopped) this.spawn();
      }, delay);
      this.restartTimer.unref();
    });
  }

  private onMessage(message: FromChild): void {
    if (message.type === 'ready') {
      this.ready = true;
      this.contextWindow = message.contextWindow;
      this.backoffMs = this.options.restartBackoffMs ?? 1000;
      this.lastError = undefined;
      for (const w of this.readyWaiters.splice(0)) w.resolve();
      return;
    }
    if (message.type === 'fatal') {
      this.lastError = message.message;
      for (const w of this.readyWaiters.splice(0))
        w.reject(new RunnerError('RUNNER_UNAVAILABLE', message.message));
      return;
    }
    this.pending.get(message.id)?.push(message);
  }

  private send(message: ToChild): void {
    if (!this.child || !this.ready)
      throw new RunnerError('RUNNER_UNAVAILABLE', this.lastError ?? 'model is not loaded');
    this.child.send(message);
  }

  async listModels(): Promise<RunnerModel[]> {
    return [
      {
        id: this.modelId,
        contextWindow: this.contextWindow || (this.options.contextSize ?? 2048),
        demo: this.options.demo ?? false,
      },
    ];
  }

  async *generate(params: GenerateParams): AsyncGenerator<TokenDelta, GenerationResult, void> {
    if (params.model !== this.modelId)
      throw new RunnerError('MODEL_NOT_FOUND', `model ${params.model} is not loaded`);
    if (this.generating >= this.parallel)
      throw new RunnerError('RUNNER_UNAVAILABLE', 'all sequences are busy');
    const id = this.nextId++;
    this.generating += 1;
    const queue: FromChild[] = [];
    let failure: RunnerError | null = null;
    let wake: (() => void) | null = null;
    const notify = () => {
      wake?.();
      wake = null;
    };
    this.pending.set(id, {
      push: (event) => {
        if (queue.length < MAX_QUEUED_EVENTS) queue.push(event);
        notify();
      },
      fail: (error) => {
        failure = error;
        notify();
      },
    });
    const onAbort = () => {
      try {
        this.child?.send({ type: 'cancel', id } satisfies ToChild);
      } catch {
        // the child is gone; its exit handler fails this generation
      }
    };
    params.signal.addEventListener('abort', onAbort, { once: true });
    try {
      this.send({
        type: 'generate',
        id,
        messages: params.messages,
        maxTokens: params.maxTokens,
        temperature: params.temperature,
        topP: params.topP,
        stop: params.stop,
        seed: params.seed,
      });
      if (params.signal.aborted) onAbort();
      for (;;) {
        const event = queue.shift();
        if (!event) {
          if (failure) throw failure;
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
          continue;
        }
        if (event.type === 'delta') yield { text: event.text };
        else if (event.type === 'done') {
          return {
            finishReason: event.finishReason,
            promptTokens: event.promptTokens,
            completionTokens: event.completionTokens,
            text: event.text,
          };
        } else if (event.type === 'failed') {
          throw new RunnerError(
            CONTEXT_OVERFLOW.test(event.message) ? 'CONTEXT_TOO_LONG' : 'RUNNER_UNAVAILABLE',
            event.message,
          );
        }
      }
    } finally {
      this.generating -= 1;
      params.signal.removeEventListener('abort', onAbort);
      // A consumer that stops early (client gone) cancels the generation so the sequence frees up.
      if (this.pending.has(id)) {
        this.pending.delete(id);
        onAbort();
      }
    }
  }

  async countPromptTokens(model: string, messages: ChatMessage[]): Promise<number> {
    if (model !== this.modelId) throw new RunnerError('MODEL_NOT_FOUND', `model ${model} is not loaded`);
    const id = this.nextId++;
    return new Promise<number>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new RunnerError('RUNNER_TIMEOUT', 'token count timed out'));
      }, 10_000);
      this.pending.set(id, {
        push: (event) => {
          clearTimeout(timer);
          this.pending.delete(id);
          if (event.type === 'counted') resolve(event.tokens);
          else
            reject(
              new RunnerError('RUNNER_UNAVAILABLE', event.type === 'failed' ? event.message : 'bad answer'),
            );
        },
        fail: (error) => {
          clearTimeout(timer);
          reject(error);
        },
      });
      try {
        this.send({ type: 'count', id, messages });
      } catch (error) {
        clearTimeout(timer);
        this.pending.delete(id);
        reject(error);
      }
    });
  }

  async health(): Promise<RunnerHealth> {
    return this.ready ? { ok: true } : { ok: false, detail: this.lastError ?? 'model loading' };
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer) clearTimeout(this.restartTimer);
    const child = this.child;
    if (!child) return;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
      }, 3000);
      child.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
      child.kill('SIGTERM');
    });
  }
}
