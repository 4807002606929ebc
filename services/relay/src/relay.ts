// A real Nostr relay on 127.0.0.1 for local runs and tests: the `@nostr-relay/core` engine behind a
// `ws` server, a bounded in-memory store, NIP-11 and /health over HTTP on the same port, and limits on
// message size, event size, connections, subscriptions, filters and pending messages per connection.
import { createServer, type IncomingMessage as HttpRequest, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { clientKey, createLogger } from '@fed-ai/kit';
import {
  type BroadcastPlugin,
  type ClientContext,
  type Logger as CoreLogger,
  createOutgoingClosedMessage,
  createOutgoingEventMessage,
  createOutgoingNoticeMessage,
  createOutgoingOkMessage,
  type Event,
  type HandleMessagePlugin,
  type HandleMessageResult,
  type IncomingMessage,
  LogLevel,
} from '@nostr-relay/common';
import { NostrRelay } from '@nostr-relay/core';
import { Validator } from '@nostr-relay/validator';
import { type RawData, WebSocket, WebSocketServer } from 'ws';
import { z } from 'zod';
import { matchesFilter } from './filter';
import { MEMORY_REPOSITORY_DEFAULTS, MemoryEventRepository } from './memory-repository';
import { buildRelayInfo, CORS_HEADERS, NIP11_CONTENT_TYPE, type RelayInfo, wantsRelayInfo } from './nip11';

const positiveInt = z.number().int().positive();

export const RelayOptionsSchema = z
  .object({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(0),
    /** Largest WebSocket frame accepted; a bigger one closes the connection (1009). NIP-11 max_message_length. */
    maxMessageBytes: positiveInt.default(256 * 1024),
    /** Largest EVENT message accepted; a bigger one gets `OK false`. */
    maxEventBytes: positiveInt.default(64 * 1024),
    maxSubscriptionsPerClient: positiveInt.default(20),
    maxFiltersPerSubscription: positiveInt.default(10),
    maxConnections: positiveInt.default(1024),
    /** WebSocket connections one client address (IPv6: one /64) may hold; more get 429. */
    maxConnectionsPerClient: positiveInt.default(64),
    /** Events dated further ahead than this are refused (NIP-22 style), so they cannot pin the top of every query. */
    maxFutureSkewS: positiveInt.default(900),
    /** Messages read but not yet handled on one connection; more are refused with a NOTICE. */
    maxPendingMessagesPerConnection: positiveInt.default(256),
    /** Bytes queued to a slow subscriber before the relay drops that connection. */
    maxBufferedBytesPerConnection: positiveInt.default(8 * 1024 * 1024),
    maxEvents: positiveInt.default(MEMORY_REPOSITORY_DEFAULTS.maxEvents),
    defaultLimit: positiveInt.default(MEMORY_REPOSITORY_DEFAULTS.defaultLimit),
    maxLimit: positiveInt.default(MEMORY_REPOSITORY_DEFAULTS.maxLimit),
    /** WebSocket ping period; a connection that missed the previous pong is dropped. */
    pingIntervalMs: positiveInt.default(30_000),
    eventStore: z.literal('memory').default('memory'),
    name: z.string().max(30).default('fed-ai local relay'),
    description: z.string().max(1000).default('Nostr relay for fed-ai local runs and tests.'),
  })
  .refine((o) => o.maxEventBytes <= o.maxMessageBytes, {
    message: 'maxEventBytes must not exceed maxMessageBytes',
    path: ['maxEventBytes'],
  })
  .refine((o) => o.defaultLimit <= o.maxLimit, {
    message: 'defaultLimit must not exceed maxLimit',
    path: ['defaultLimit'],
  });

type Logger = ReturnType<typeof createLogger>;

export type RelayOptions = z.input<typeof RelayOptionsSchema> & { logger?: Logger };

export interface RunningRelay {
  /** ws://host:port */
  url: string;
  port: number;
  /** The NIP-11 document this relay serves. */
  info: RelayInfo;
  /** Events held in the store now. */
  storedEventCount(): number;
  /** Closes every connection and the listener. */
  close(): Promise<void>;
}

const MAX_SUBID_LENGTH = 128;
/** NIP-01 kinds are 0..65535. */
const MAX_KIND = 65535;
/** Time allowed to send the upgrade request's headers; idle sockets that never ask are closed. */
const HEADERS_TIMEOUT_MS = 10_000;
const MAX_EVENT_TAGS = 2000;
const CLOSE_GRACE_MS = 1000;

export async function startRelay(options: RelayOptions = {}): Promise<RunningRelay> {
  const { logger: givenLogger, ...rest } = options;
  const config = RelayOptionsSchema.parse(rest);
  const logger = givenLogger ?? createLogger('relay');

  const repository = new MemoryEventRepository({
    maxEvents: config.maxEvents,
    defaultLimit: config.defaultLimit,
    maxLimit: config.maxLimit,
  });
  const maxContentLength = config.maxEventBytes;
  const validator = new Validator({
    maxSubscriptionIdLength: MAX_SUBID_LENGTH,
    maxNumberOfTags: MAX_EVENT_TAGS,
    maxContentLength,
  });
  const relay = new NostrRelay(repository, {
    logger: coreLogger(logger),
    logLevel: LogLevel.WARN,
    maxSubscriptionsPerClient: config.maxSubscriptionsPerClient,
    // The core caches find results by filter for 1 s and publish verdicts by event id for 10 min;
    // the first serves stale results after a publish, the second lets a bad-signature copy of an id
    // block the real event. The in-memory store answers faster than either cache helps.
    filterResultCacheTtl: 0,
    eventHandlingResultCacheTtl: 0,
  });

  // Client contexts seen by the plugins; the broadcast below walks them.
  const contexts = new Map<WebSocket, ClientContext>();
  const limits: HandleMessagePlugin = {
    async handleMessage(ctx, message, next): Promise<HandleMessageResult> {
      contexts.set(ctx.client as WebSocket, ctx);
      if (message[0] === 'REQ') {
        const [, subscriptionId, ...filters] = message;
        if (filters.length > config.maxFiltersPerSubscription) {
          ctx.sendMessage(
            createOutgoingClosedMessage(
              subscriptionId,
              `invalid: too many filters (${filters.length} > ${config.maxFiltersPerSubscription})`,
            ),
          );
          return { messageType: 'REQ', events: [] };
        }
        if (
          !ctx.subscriptions.has(subscriptionId) &&
          ctx.subscriptions.size >= config.maxSubscriptionsPerClient
        ) {
          // The core's store of subscriptions is an LRU that would silently drop the oldest one;
          // refuse the new one instead so the client knows.
          ctx.sendMessage(
            createOutgoingClosedMessage(
              subscriptionId,
              `rate-limited: too many open subscriptions (max ${config.maxSubscriptionsPerClient}); CLOSE one first`,
            ),
          );
          return { messageType: 'REQ', events: [] };
        }
      }
      return next();
    },
  };
  // Live delivery with the full NIP-01 matcher (the core's ignores tag filters such as `#d`).
  const broadcast: BroadcastPlugin = {
    async broadcast(event: Event): Promise<void> {
      for (const [ws, ctx] of contexts) {
        if (!ctx.isOpen || ctx.subscriptions.size === 0) continue;
        if (ws.bufferedAmount > config.maxBufferedBytesPerConnection) {
          logger.warn({ ip: ctx.ip }, 'relay: dropping slow subscriber');
          ws.terminate();
          continue;
        }
        ctx.subscriptions.forEach((filters, subscriptionId) => {
          if (filters.some((filter) => matchesFilter(event, filter))) {
            ctx.sendMessage(createOutgoingEventMessage(subscriptionId, event));
          }
        });
      }
    },
  };
  relay.register(limits);
  relay.register(broadcast);

  const info = buildRelayInfo({
    name: config.name,
    description: config.description,
    maxEvents: config.maxEvents,
    limitation: {
      max_message_length: config.maxMessageBytes,
      max_subscriptions: config.maxSubscriptionsPerClient,
      max_filters: config.maxFiltersPerSubscription,
      max_limit: config.maxLimit,
      max_subid_length: MAX_SUBID_LENGTH,
      max_event_tags: MAX_EVENT_TAGS,
      max_content_length: maxContentLength,
      default_limit: config.defaultLimit,
      auth_required: false,
      payment_required: false,
      restricted_writes: false,
    },
  });
  const infoBody = JSON.stringify(info);

  const server = createServer(
    { headersTimeout: HEADERS_TIMEOUT_MS, requestTimeout: 2 * HEADERS_TIMEOUT_MS },
    (req, res) => handleHttp(req, res, infoBody),
  );
  const wss = new WebSocketServer({ noServer: true, maxPayload: config.maxMessageBytes });
  let reservedConnections = 0;
  // Connections held per client: one client cannot take every slot. One entry per client with an
  // open connection, so the map is bounded by maxConnections.
  const reservedByClient = new Map<string, number>();
  let closing = false;

  server.on('upgrade', (req: HttpRequest, socket: Duplex, head: Buffer) => {
    if (closing || reservedConnections >= config.maxConnections) {
      socket.end(
        'HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
      );
      return;
    }
    const client = clientKey(req.socket.remoteAddress);
    const held = reservedByClient.get(client) ?? 0;
    if (held >= config.maxConnectionsPerClient) {
      socket.end(
        'HTTP/1.1 429 Too Many Requests\r\nRetry-After: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n',
      );
      return;
    }
    // Reserved until the socket closes, whether or not the handshake succeeds.
    reservedConnections += 1;
    reservedByClient.set(client, held + 1);
    socket.once('close', () => {
      reservedConnections -= 1;
      const left = (reservedByClient.get(client) ?? 1) - 1;
      if (left <= 0) reservedByClient.delete(client);
      else reservedByClient.set(client, left);
    });
    wss.handleUpgrade(req, socket, head, (ws) => wss.emit('connection', ws, req));
  });

  const alive = new WeakSet<WebSocket>();
  wss.on('connection', (ws: WebSocket, req: HttpRequest) => {
    alive.add(ws);
    relay.handleConnection(ws, req.socket.remoteAddress);
    let pending = 0;
    let chain: Promise<void> = Promise.resolve();
    ws.on('pong', () => alive.add(ws));
    ws.on('message', (data: RawData, isBinary: boolean) => {
      if (pending >= config.maxPendingMessagesPerConnection) {
        send(ws, createOutgoingNoticeMessage('rate-limited: too many messages in flight; message dropped'));
        return;
      }
      pending += 1;
      // One message at a time per connection keeps a client's EVENT-then-REQ order.
      chain = chain
        .then(() => handleRaw(ws, data, isBinary))
        .catch((error: unknown) => {
          logger.error({ err: error }, 'relay: message handling failed');
          send(ws, createOutgoingNoticeMessage('error: internal error'));
        })
        .finally(() => {
          pending -= 1;
        });
    });
    ws.on('error', (error) => {
      // ws closes the connection itself after a protocol error (e.g. a frame over maxPayload).
      logger.debug({ err: error }, 'relay: websocket error');
    });
    ws.on('close', () => {
      contexts.delete(ws);
      relay.handleDisconnect(ws);
    });
  });

  async function handleRaw(ws: WebSocket, data: RawData, isBinary: boolean): Promise<void> {
    const bytes = toBuffer(data);
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString('utf8'));
    } catch {
      send(
        ws,
        createOutgoingNoticeMessage(`invalid: message is not JSON${isBinary ? ' (binary frame)' : ''}`),
      );
      return;
    }
    if (Array.isArray(parsed) && parsed[0] === 'EVENT' && bytes.length > config.maxEventBytes) {
      const id = eventIdOf(parsed);
      const reason = `invalid: event message is ${bytes.length} bytes, over the ${config.maxEventBytes}-byte limit`;
      send(ws, id ? createOutgoingOkMessage(id, false, reason) : createOutgoingNoticeMessage(reason));
      return;
    }
    let message: IncomingMessage;
    try {
      message = await validator.validateIncomingMessage(parsed as object);
    } catch (error) {
      const reason = error instanceof Error ? error.message : 'invalid: message';
      send(ws, rejectionFor(parsed, reason.startsWith('invalid') ? reason : `invalid: ${reason}`));
      return;
    }
    if (message[0] === 'EVENT') {
      const problem = eventProblem(message[1], Math.floor(Date.now() / 1000), config.maxFutureSkewS);
      if (problem) {
        send(ws, createOutgoingOkMessage(message[1].id, false, `invalid: ${problem}`));
        return;
      }
    }
    await relay.handleMessage(ws, message);
  }

  const heartbeat = setInterval(() => {
    for (const ws of wss.clients) {
      if (!alive.has(ws)) {
        ws.terminate();
        continue;
      }
      alive.delete(ws);
      ws.ping();
    }
  }, config.pingIntervalMs);
  heartbeat.unref();

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const hostInUrl = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `ws://${hostInUrl}:${port}`;

  let closed: Promise<void> | undefined;
  return {
    url,
    port,
    info,
    storedEventCount: () => repository.size,
    close() {
      closed ??= (async () => {
        closing = true;
        clearInterval(heartbeat);
        const open = [...wss.clients];
        for (const ws of open) ws.close(1001, 'relay shutting down');
        await waitForClose(open, CLOSE_GRACE_MS);
        for (const ws of wss.clients) ws.terminate();
        await new Promise<void>((resolve) => wss.close(() => resolve()));
        server.closeAllConnections();
        await new Promise<void>((resolve) => server.close(() => resolve()));
        contexts.clear();
        await relay.destroy();
        await repository.destroy();
      })();
      return closed;
    },
  };
}

function handleHttp(req: HttpRequest, res: ServerResponse, infoBody: string): void {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method === 'OPTIONS') {
    res.writeHead(204, { ...CORS_HEADERS, 'content-length': '0' }).end();
    return;
  }
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    writeJson(res, 405, { error: { code: 'METHOD_NOT_ALLOWED', message: 'use GET or a WebSocket upgrade' } });
    return;
  }
  if (path === '/health') {
    writeJson(res, 200, { ok: true });
    return;
  }
  if (wantsRelayInfo(req.headers.accept)) {
    res.writeHead(200, {
      ...CORS_HEADERS,
      'content-type': NIP11_CONTENT_TYPE,
      'content-length': Buffer.byteLength(infoBody),
    });
    res.end(req.method === 'HEAD' ? undefined : infoBody);
    return;
  }
  if (path === '/') {
    const body =
      'fed-ai relay: connect with a Nostr client over WebSocket; NIP-11 with Accept: application/nostr+json\n';
    res.writeHead(200, {
      'content-type': 'text/plain; charset=utf-8',
      'content-length': Buffer.byteLength(body),
    });
    res.end(req.method === 'HEAD' ? undefined : body);
    return;
  }
  writeJson(res, 404, { error: { code: 'NOT_FOUND', message: `no route ${path}` } });
}

/** What this relay refuses in an otherwise valid event: kinds outside NIP-01's range, far-future dates. */
export function eventProblem(
  event: Pick<Event, 'kind' | 'created_at'>,
  nowS: number,
  maxFutureSkewS: number,
): string | undefined {
  if (!Number.isSafeInteger(event.kind) || event.kind < 0 || event.kind > MAX_KIND)
    return `kind must be an integer in 0..${MAX_KIND}`;
  if (!Number.isSafeInteger(event.created_at) || event.created_at < 0)
    return 'created_at must be a non-negative integer';
  if (event.created_at > nowS + maxFutureSkewS)
    return `created_at is more than ${maxFutureSkewS} s in the future`;
  return undefined;
}

function writeJson(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function send(ws: WebSocket, message: unknown): void {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(message));
}

function toBuffer(data: RawData): Buffer {
  if (Buffer.isBuffer(data)) return data;
  if (data instanceof ArrayBuffer) return Buffer.from(data);
  return Buffer.concat(data);
}

function eventIdOf(message: unknown[]): string | undefined {
  const event = message[1];
  if (typeof event !== 'object' || event === null) return undefined;
  const id = (event as { id?: unknown }).id;
  return typeof id === 'string' && /^[0-9a-f]{64}$/.test(id) ? id : undefined;
}

/** NIP-01: an EVENT gets an OK false, a REQ a CLOSED, anything else a NOTICE. */
function rejectionFor(parsed: unknown, reason: string): unknown {
  if (Array.isArray(parsed)) {
    if (parsed[0] === 'EVENT') {
      const id = eventIdOf(parsed);
      if (id) return createOutgoingOkMessage(id, false, reason);
    }
    if (parsed[0] === 'REQ' && typeof parsed[1] === 'string' && parsed[1].length <= MAX_SUBID_LENGTH) {
      return createOutgoingClosedMessage(parsed[1], reason);
    }
  }
  return createOutgoingNoticeMessage(reason);
}

async function waitForClose(sockets: WebSocket[], timeoutMs: number): Promise<void> {
  const pending = sockets.filter((ws) => ws.readyState !== WebSocket.CLOSED);
  if (pending.length === 0) return;
  let timer: NodeJS.Timeout | undefined;
  await Promise.race([
    Promise.all(pending.map((ws) => new Promise<void>((resolve) => ws.once('close', () => resolve())))),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, timeoutMs);
    }),
  ]);
  clearTimeout(timer);
}

/** The core's logger interface over pino. */
function coreLogger(logger: Logger): CoreLogger {
  return {
    setLogLevel() {},
    debug: (message: string) => logger.debug(message),
    info: (message: string) => logger.info(message),
    warn: (message: string) => logger.warn(message),
    error: (message: string, ...args: unknown[]) => logger.error({ err: args[0] }, message),
  };
}
