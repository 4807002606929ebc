// A TCP proxy on 127.0.0.1 that can add a delay to every chunk each way (the slow network of
// `fedai chaos`, in front of settlement). Order is kept per direction; a connection with more
// than MAX_PENDING_BYTES waiting is closed.
import { createConnection, createServer, type Socket } from 'node:net';

const MAX_PENDING_BYTES = 8 * 1024 * 1024;
const MAX_CONNECTIONS = 512;

export interface DelayProxy {
  url: string;
  setDelayMs(ms: number): void;
  close(): Promise<void>;
}

export async function startDelayProxy(target: URL): Promise<DelayProxy> {
  let delayMs = 0;
  const sockets = new Set<Socket>();
  // Each direction's delayed chunks wait in one queue drained by one timer, so order never
  // depends on how timers of different durations fire: with a timer per chunk, a chunk whose
  // duration came out 1 ms shorter (a millisecond boundary crossed while it was computed) could
  // overtake the one before it and garble the stream.
  const relay = (from: Socket, to: Socket) => {
    const queue: { chunk: Buffer; dueMs: number }[] = [];
    let pendingBytes = 0;
    let ended = false;
    // A timer is pending exactly while the queue holds chunks.
    const pump = () => {
      const nowMs = Date.now();
      while (queue.length > 0 && queue[0]!.dueMs <= nowMs) {
        const { chunk } = queue.shift()!;
        pendingBytes -= chunk.length;
        if (!to.destroyed) to.write(chunk);
      }
      if (queue.length > 0) setTimeout(pump, queue[0]!.dueMs - nowMs);
      else if (ended) to.end();
    };
    from.on('data', (chunk: Buffer) => {
      if (delayMs === 0 && queue.length === 0) {
        to.write(chunk);
        return;
      }
      pendingBytes += chunk.length;
      if (pendingBytes > MAX_PENDING_BYTES) {
        from.destroy();
        to.destroy();
        return;
      }
      queue.push({ chunk, dueMs: Date.now() + delayMs });
      if (queue.length === 1) setTimeout(pump, delayMs);
    });
    from.on('end', () => {
      ended = true;
      if (queue.length === 0) to.end();
    });
  };
  const server = createServer((client) => {
    if (sockets.size >= MAX_CONNECTIONS) {
      client.destroy();
      return;
    }
    const upstream = createConnection({ host: target.hostname, port: Number(target.port) });
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('error', () => {
        client.destroy();
        upstream.destroy();
      });
      s.on('close', () => {
        sockets.delete(s);
        // Chunks still delayed toward the other side go out first.
        setTimeout(() => (s === client ? upstream : client).destroy(), delayMs + 50);
      });
    }
    relay(client, upstream);
    relay(upstream, client);
  });
  await new Promise<void>((done, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => done());
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : 0;
  return {
    url: `http://127.0.0.1:${port}`,
    setDelayMs: (ms) => {
      delayMs = Math.max(0, Math.min(ms, 30_000));
    },
    close: () =>
      new Promise<void>((done) => {
        for (const s of sockets) s.destroy();
        server.close(() => done());
      }),
  };
}
