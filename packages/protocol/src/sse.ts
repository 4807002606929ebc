// Server-sent events reader, the one every party uses (services through @fed-ai/kit, the SDK in
// Node and in browsers). Byte-safe: UTF-8 is decoded as a stream, so a character split across
// network chunks survives; CRLF, CR and `data:` without a space parse, as the SSE spec allows.
// Parsing is eventsource-parser's: a small, well-kept implementation of the WHATWG algorithm.
// Pure: it reads any `AsyncIterable` of bytes or text (a Node stream, a web ReadableStream).
import { createParser } from 'eventsource-parser';

export class SseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SseError';
  }
}

export interface ReadSseOptions {
  /** Largest single event (and largest unparsed tail) in characters; a bigger one ends the read. */
  maxEventBytes?: number;
}

export const SSE_DEFAULT_MAX_EVENT_BYTES = 2_000_000;

/**
 * Yields, per chunk read, the `data` of every event that chunk completed (never an empty batch).
 * Tokens a server wrote at once arrive together, so a reader can handle them as one (issue 15:
 * one parse and one write per upstream chunk, not per token). Throws SseError when over the bound.
 */
export async function* readSseBatches(
  body: AsyncIterable<Uint8Array | string>,
  options: ReadSseOptions = {},
): AsyncGenerator<string[], void, void> {
  const decoder = new TextDecoder('utf-8');
  let ready: string[] = [];
  let failure: string | null = null;
  const parser = createParser({
    onEvent: (event) => ready.push(event.data),
    // Unknown fields are ignored (as the spec says); only an oversized event ends the read.
    onError: (error) => {
      if (error.type === 'max-buffer-size-exceeded') failure = error.message;
    },
    maxBufferSize: options.maxEventBytes ?? SSE_DEFAULT_MAX_EVENT_BYTES,
  });
  let endsInCr = false;
  const feed = (text: string) => {
    if (text.length === 0) return;
    parser.feed(text);
    endsInCr = text.endsWith('\r');
  };
  const take = (): string[] => {
    const batch = ready;
    ready = [];
    return batch;
  };
  for await (const chunk of body) {
    feed(typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
    if (failure) throw new SseError(`SSE event too large: ${failure}`);
    if (ready.length > 0) yield take();
  }
  feed(decoder.decode());
  // A CR as the stream's last byte ends its line (the parser waits to see whether LF follows).
  if (endsInCr) parser.feed('\n');
  if (ready.length > 0) yield take();
}

/** Yields the `data` of each event, in order, from a byte stream. Throws SseError when over the bound. */
export async function* readSseData(
  body: AsyncIterable<Uint8Array | string>,
  options: ReadSseOptions = {},
): AsyncGenerator<string, void, void> {
  for await (const batch of readSseBatches(body, options)) yield* batch;
}
