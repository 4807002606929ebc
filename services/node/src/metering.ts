// The metering record: the node's signed account of one generation, built from the runner's own
// token counts. It binds prompt and output by hash; neither is stored.
import {
  costMsat,
  type FinishReason,
  type InferenceRequest,
  type MeteringRecord,
  outputSha256,
  type Price,
  promptSha256,
} from '@fed-ai/protocol';
import type { GenerationResult, Runner } from './runners/runner';

export interface MeteringInput {
  request: InferenceRequest;
  routerPubkey: string;
  result: GenerationResult;
  price: Price;
  ttftMs: number;
  wallMs: number;
  runnerKind: Runner['kind'];
}

export function buildMeteringRecord(input: MeteringInput): MeteringRecord {
  const { request, result, price } = input;
  const finish: FinishReason = result.finishReason;
  return {
    request_id: request.request_id,
    router: input.routerPubkey,
    model: request.model,
    prompt_sha256: promptSha256(request.messages),
    output_sha256: outputSha256(result.text),
    tokens_in: result.promptTokens,
    tokens_out: result.completionTokens,
    ttft_ms: Math.max(0, Math.round(input.ttftMs)),
    wall_ms: Math.max(0, Math.round(input.wallMs)),
    price,
    cost_msat: costMsat(result.promptTokens, result.completionTokens, price),
    finish_reason: finish,
    count_source: input.runnerKind === 'embedded-gguf' ? 'tokenizer' : 'upstream_usage',
  };
}

/** Moving averages of what this node measured, reported in heartbeats. */
export class NodeStats {
  private ttftMs: number | undefined;
  private tokensPerS: number | undefined;

  constructor(private readonly alpha = 0.2) {}

  record(ttftMs: number, completionTokens: number, generationMs: number): void {
    const ewma = (old: number | undefined, sample: number) =>
      old === undefined ? sample : old + this.alpha * (sample - old);
    this.ttftMs = ewma(this.ttftMs, ttftMs);
    if (completionTokens > 1 && generationMs > 0)
      this.tokensPerS = ewma(this.tokensPerS, (completionTokens * 1000) / generationMs);
  }

  snapshot(): { tokens_per_s: number; ttft_ms: number } | undefined {
    if (this.ttftMs === undefined) return undefined;
    return { tokens_per_s: Math.round((this.tokensPerS ?? 0) * 10) / 10, ttft_ms: Math.round(this.ttftMs) };
  }
}
