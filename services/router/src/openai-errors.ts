// OpenAI's error shape with our reason code in `code`: every OpenAI-compatible answer uses it.
import { REASONS, type ReasonCode } from '@fed-ai/protocol';

export function openAiError(code: ReasonCode, message?: string) {
  const status = REASONS[code].status;
  const type =
    status === 401
      ? 'authentication_error'
      : status === 402
        ? 'insufficient_quota'
        : status === 429
          ? 'rate_limit_error'
          : status >= 500
            ? 'api_error'
            : 'invalid_request_error';
  return { error: { message: message ?? REASONS[code].message, type, param: null, code } };
}
