// Server-sent events, one module for every service. The reader is protocol's (pure, byte-safe, also
// used by the SDK in browsers), re-exported here so services import both halves from one place;
// the writer needs a Node socket and stays here: it waits when the socket's buffer is full.
import { once } from 'node:events';
import type { Writable } from 'node:stream';

export { type ReadSseOptions, readSseBatches, readSseData, SseError } from '@fed-ai/protocol';

/**
 * Writes one `data:` event; resolves once the socket can take more (backpressure). Events written
 * in the same turn of the event loop leave in one socket write: several tokens of one upstream
 * chunk, and when that chunk also ended the upstream's answer, the summary and the stream's end
 * with them (end() uncorks at once). The cork lifts in the check phase (setImmediate), after the
 * I/O callbacks of this turn and their promises ran: with process.nextTick the summary left in a
 * second write, which woke the reader twice per answer (issue 15).
 */
export async function writeSseData(stream: Writable, data: string): Promise<void> {
  if (stream.writableEnded || stream.destroyed) return;
  if (stream.writableCorked === 0) {
    stream.cork();
    setImmediate(() => stream.uncork());
  }
  if (stream.write(`data: ${data}\n\n`)) return;
  await Promise.race([once(stream, 'drain'), once(stream, 'close')]);
}
