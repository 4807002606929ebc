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
  const relay = (from: Socket, to: Socket) => {
    let pending = 0;
    let lastDue = 0;
    from.on('data', (chunk: Buffer) => {
      if (delayMs === 0 && pending === 0) {
        to.write(chunk);
        return;
      }
      pending += chunk.length;
      if (pending > MAX_PENDING_BYTES) {
        from.destroy();
        to.destroy();
        return;
      }
      // Never before an earlier chunk: timers of equal or later due times run in order.
      const due = Math.max(lastDue, Date.now() + delayMs);
      lastDue = due;
      setTimeout(() => {
        pending -= chunk.length;
        if (!to.destroyed) to.write(chunk);
      }, due - Date.now());
    });
    from.on('end', () => {
      setTimeout(() => to.end(), Math.max(0, lastDue - Date.now()));
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
