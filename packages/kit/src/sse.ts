// Server-sent events, one module for every service. The reader is protocol's (pure, byte-safe, also
// used by the SDK in browsers), re-exported here so services import both halves from one place;
// the writer needs a Node socket and stays here: it waits when the socket's buffer is full.
import { once } from 'node:events';
import type { Writable } from 'node:stream';

export { type ReadSseOptions, readSseData, SseError } from '@fed-ai/protocol';

/**
 * Writes one `data:` event; resolves once the socket can take more (backpressure). Events written
 * in the same tick (several tokens of one upstream chunk) leave in one socket write.
 */
export async function writeSseData(stream: Writable, data: string): Promise<void> {
  if (stream.writableEnded || stream.destroyed) return;
  if (stream.writableCorked === 0) {
    stream.cork();
    process.nextTick(() => stream.uncork());
  }
  if (stream.write(`data: ${data}\n\n`)) return;
  await Promise.race([once(stream, 'drain'), once(stream, 'close')]);
}
