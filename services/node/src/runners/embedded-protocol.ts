// Messages between the embedded runner (parent) and its model process (child), over IPC.
import type { ChatMessage, FinishReason } from './runner';

export type ToChild =
  | {
      type: 'generate';
      id: number;
      messages: ChatMessage[];
      maxTokens: number;
      temperature?: number | undefined;
      topP?: number | undefined;
      stop?: string[] | undefined;
      seed?: number | undefined;
    }
  | { type: 'cancel'; id: number }
  | { type: 'count'; id: number; messages: ChatMessage[] };

export type FromChild =
  | { type: 'ready'; contextWindow: number; trainedContext: number }
  | { type: 'delta'; id: number; text: string }
  | {
      type: 'done';
      id: number;
      finishReason: FinishReason;
      promptTokens: number;
      completionTokens: number;
      text: string;
    }
  | { type: 'failed'; id: number; message: string }
  | { type: 'counted'; id: number; tokens: number }
  | { type: 'fatal'; message: string };

export interface ChildConfig {
  modelPath: string;
  /** Where `hf:` URIs are downloaded to. */
  modelsDir: string;
  contextSize: number;
  threads: number;
  parallel: number;
}
