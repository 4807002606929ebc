// Server-sent events, one module for every service: a byte-safe reader (UTF-8 decoded as a stream,
// so a character split across network chunks survives; CRLF and `data:` without a space parse, as
// the SSE spec allows) and a writer that waits when the socket's buffer is full.
// Parsing is eventsource-parser's: a small, well-kept implementation of the WHATWG algorithm.
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { createParser } from 'eventsource-parser';

export class SseError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'SseError';
  }
}

export interface ReadSseOptions {
  /** Largest single event (and largest unparsed tail) in bytes; a bigger one ends the read. */
  maxEventBytes?: number;
}

/** Yields the `data` of each event, in order, from a byte stream. */
export async function* readSseData(
  body: AsyncIterable<Uint8Array | string>,
  options: ReadSseOptions = {},
): AsyncGenerator<string, void, void> {
  const decoder = new TextDecoder('utf-8');
  const ready: string[] = [];
  let failure: string | null = null;
  const parser = createParser({
    onEvent: (event) => ready.push(event.data),
    // Unknown fields are ignored (as the spec says); only an oversized event ends the read.
    onError: (error) => {
      if (error.type === 'max-buffer-size-exceeded') failure = error.message;
    },
    maxBufferSize: options.maxEventBytes ?? 2_000_000,
  });
  for await (const chunk of body) {
    parser.feed(typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true }));
    if (failure) throw new SseError(`bad event stream: ${failure}`);
    while (ready.length > 0) yield ready.shift()!;
  }
  parser.feed(decoder.decode());
  while (ready.length > 0) yield ready.shift()!;
}

/** Writes one `data:` event; resolves once the socket can take more (backpressure). */
export async function writeSseData(stream: Writable, data: string): Promise<void> {
  if (stream.writableEnded || stream.destroyed) return;
  if (stream.write(`data: ${data}\n\n`)) return;
  await Promise.race([once(stream, 'drain'), once(stream, 'close')]);
}
