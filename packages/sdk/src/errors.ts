// Typed SDK errors carrying the router's reason code, so callers can branch on `code`.
import { isReasonCode, type ReasonCode } from '@fed-ai/protocol';

const RETRYABLE = new Set<string>([
  'OVERLOADED',
  'RATE_LIMITED',
  'NODE_FAILED',
  'NODE_TIMEOUT',
  'NO_ELIGIBLE_NODE',
  'RUNNER_UNAVAILABLE',
  'SETTLEMENT_UNAVAILABLE',
  'NETWORK',
]);

export type SdkErrorCode = ReasonCode | 'NETWORK' | 'UNKNOWN';

export class FedAiSdkError extends Error {
  constructor(
    readonly code: SdkErrorCode,
    message: string,
    /** HTTP status, 0 when no response was received. */
    readonly status: number,
    readonly hint?: string,
    readonly retryAfterMs?: number,
  ) {
    super(message);
    this.name = 'FedAiSdkError';
  }

  static from(error: unknown): FedAiSdkError {
    if (error instanceof FedAiSdkError) return error;
    if ((error as { name?: string })?.name === 'AbortError')
      return new FedAiSdkError('CANCELLED', 'Aborted.', 0);
    return FedAiSdkError.network(error);
  }

  static network(error: unknown): FedAiSdkError {
    if ((error as { name?: string })?.name === 'AbortError')
      return new FedAiSdkError('CANCELLED', 'Aborted.', 0);
    const message = error instanceof Error ? error.message : String(error);
    return new FedAiSdkError(
      'NETWORK',
      `Cannot reach the router: ${message}`,
      0,
      'Check the router URL and that it runs.',
    );
  }

  /** Reads both fed-ai `{error:{code,message,hint}}` and OpenAI `{error:{message,type,code}}` bodies. */
  static fromBody(body: unknown, status: number, retryAfterMs?: number): FedAiSdkError {
    const error = (body as { error?: { code?: unknown; message?: unknown; hint?: unknown } } | null)?.error;
    const code = typeof error?.code === 'string' && isReasonCode(error.code) ? error.code : 'UNKNOWN';
    const message = typeof error?.message === 'string' ? error.message : `Router answered HTTP ${status}`;
    const hint = typeof error?.hint === 'string' ? error.hint : undefined;
    return new FedAiSdkError(code, message, status, hint, retryAfterMs);
  }

  static fromResponse(status: number, text: string, headers: HeaderSource): FedAiSdkError {
    const retryAfter = Number(headerValue(headers, 'retry-after'));
    const retryAfterMs = Number.isFinite(retryAfter) ? retryAfter * 1000 : undefined;
    let body: unknown = null;
    try {
      body = JSON.parse(text);
    } catch {
      // Not JSON: keep the status only.
    }
    return FedAiSdkError.fromBody(body, status, retryAfterMs);
  }
}

/** Response headers: fetch's `Headers` or a plain record with lower-case names. */
export type HeaderSource =
  | { get(name: string): string | null }
  | Record<string, string | string[] | undefined>;

function headerValue(headers: HeaderSource, name: string): string | undefined {
  if (typeof headers.get === 'function')
    return (headers as { get(n: string): string | null }).get(name) ?? undefined;
  const value = (headers as Record<string, string | string[] | undefined>)[name];
  return Array.isArray(value) ? value[0] : value;
}

export function isRetryable(error: FedAiSdkError): boolean {
  return RETRYABLE.has(error.code) || error.status === 502 || error.status === 503 || error.status === 504;
}
