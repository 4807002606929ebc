// Per-client connection cap: one client address may hold at most `maxPerClient` sockets open at
// once; more are destroyed on arrival, so one client cannot take every connection slot. IPv6
// clients are grouped by /64 (one host usually owns a whole /64). The map holds one entry per
// address with an open socket, so it is bounded by the server's own connection cap.
import type { Server, Socket } from 'node:net';

export interface ConnectionLimiter {
  /** Sockets open now from this address (as the socket reports it). */
  openFrom(address: string): number;
  /** Distinct client keys with an open socket. */
  readonly clients: number;
}

export function limitConnectionsPerClient(server: Server, maxPerClient: number): ConnectionLimiter {
  if (!Number.isSafeInteger(maxPerClient) || maxPerClient < 1)
    throw new RangeError('maxPerClient must be a positive integer');
  const open = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const key = clientKey(socket.remoteAddress);
    const count = open.get(key) ?? 0;
    if (count >= maxPerClient) {
      socket.destroy();
      return;
    }
    open.set(key, count + 1);
    socket.once('close', () => {
      const left = (open.get(key) ?? 1) - 1;
      if (left <= 0) open.delete(key);
      else open.set(key, left);
    });
  });
  return {
    openFrom: (address) => open.get(clientKey(address)) ?? 0,
    get clients() {
      return open.size;
    },
  };
}

/** The key a client is counted under: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by /64. */
export function clientKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const plain = address.split('%')[0] ?? address;
  if (!plain.includes(':')) return plain;
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(plain);
  if (mapped?.[1]) return mapped[1];
  const [head = '', tail] = plain.split('::');
  const headGroups = head ? head.split(':') : [];
  const tailGroups = tail ? tail.split(':') : [];
  const missing = Math.max(0, 8 - headGroups.length - tailGroups.length);
  const groups = [...headGroups, ...Array<string>(missing).fill('0'), ...tailGroups];
  return `${groups
    .slice(0, 4)
    .map((g) => (Number.parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}
