// The SDK's HTTP plumbing over the global `fetch` (Node 20+ and browsers alike): one deadline per
// call that the caller's AbortSignal and `close()` can end, bounded body reads, and a web
// ReadableStream read through its reader (works where streams are not async-iterable, e.g. Safari).
import { utf8Decode } from '@fed-ai/protocol';
import { FedAiSdkError } from './errors';

export type FetchLike = (input: string, init: RequestInit) => Promise<Response>;

/**
 * Aborts a call when the caller's signal fires, when no progress was made for `timeoutMs`
 * (`touch()` re-arms it: a stream times out when no byte arrives for that long) or on `abort()`.
 */
export class Deadline {
  readonly controller = new AbortController();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timedOut = false;
  private readonly onCallerAbort = () => this.controller.abort();

  constructor(
    private readonly timeoutMs: number,
    private readonly callerSignal: AbortSignal | undefined,
  ) {
    if (callerSignal?.aborted) this.controller.abort();
    else callerSignal?.addEventListener('abort', this.onCallerAbort, { once: true });
    this.touch();
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  touch(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    if (this.controller.signal.aborted) return;
    this.timer = setTimeout(() => {
      this.timedOut = true;
      this.controller.abort();
    }, this.timeoutMs);
  }

  abort(): void {
    this.controller.abort();
  }

  end(): void {
    if (this.timer !== undefined) clearTimeout(this.timer);
    this.timer = undefined;
    this.callerSignal?.removeEventListener('abort', this.onCallerAbort);
  }

  /** The SDK error for a failure of this call: timeout and caller abort win over the raw error. */
  errorFor(error: unknown): FedAiSdkError {
    if (error instanceof FedAiSdkError) return error;
    if (this.timedOut) {
      return new FedAiSdkError(
        'NETWORK',
        `No answer from the router within ${this.timeoutMs} ms.`,
        0,
        'Check that the router runs, or raise timeoutMs.',
      );
    }
    if (this.callerSignal?.aborted) return new FedAiSdkError('CANCELLED', 'Aborted.', 0);
    return FedAiSdkError.network(error);
  }
}

/** Yields a response body's chunks; cancels the stream when the reader stops early. */
export async function* bodyChunks(
  body: ReadableStream<Uint8Array> | null,
  deadline: Deadline,
): AsyncGenerator<Uint8Array, void, void> {
  if (!body) return;
  const reader = body.getReader();
  let finished = false;
  try {
    for (;;) {
      const next = await reader.read().catch((error: unknown) => {
        throw deadline.errorFor(error);
      });
      if (next.done) {
        finished = true;
        // Some runtimes end a body quietly when its request is aborted: that is no clean end.
        if (deadline.signal.aborted) throw deadline.errorFor(deadline.signal.reason);
        return;
      }
      deadline.touch();
      yield next.value;
    }
  } finally {
    if (!finished) await reader.cancel().catch(() => undefined);
    reader.releaseLock();
  }
}

/** Reads a whole body as UTF-8, refusing more than `maxBytes`. */
export async function readLimited(
  body: ReadableStream<Uint8Array> | null,
  maxBytes: number,
  deadline: Deadline,
): Promise<string> {
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of bodyChunks(body, deadline)) {
    size += chunk.length;
    if (size > maxBytes) throw new FedAiSdkError('BODY_TOO_LARGE', 'The router answer is too large.', 502);
    chunks.push(chunk);
  }
  const all = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    all.set(chunk, offset);
    offset += chunk.length;
  }
  return utf8Decode(all);
}
