// The HTTP shell every service shares: fastify with JSON logs (pino) that redact secrets and
// prompts, a request id that follows the request, bounded bodies, and one error shape
// `{ error: { code, message, hint } }` carrying a stable reason code.
import { randomUUID } from 'node:crypto';
import { STATUS_CODES } from 'node:http';
import type { Socket } from 'node:net';
import { FedAiError, isReasonCode, REASONS, type ReasonCode } from '@fed-ai/protocol';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { type Logger, pino } from 'pino';
import { ZodError } from 'zod';
import { limitConnectionsPerClient } from './connections';
import { traceRequests } from './tracing';

export const REQUEST_ID_HEADER = 'x-request-id';

/** Paths pino must never print: credentials and anything that can hold a prompt or output. */
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["x-api-key"]',
  'headers.authorization',
  '*.authorization',
  '*.apiKey',
  '*.api_key',
  '*.secretKey',
  '*.secret_key',
  '*.nsec',
  '*.preimage',
  '*.messages',
  '*.prompt',
  '*.content',
  '*.text',
];

export function createLogger(name: string, level = process.env.LOG_LEVEL ?? 'info'): Logger {
  return pino({
    name,
    level: process.env.NODE_ENV === 'test' && !process.env.LOG_LEVEL ? 'silent' : level,
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    base: { service: name },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

export interface ServerOptions {
  name: string;
  logger?: Logger;
  bodyLimitBytes?: number;
  /**
   * Time a client has to send a whole request (headers and body); a slower one gets 408 and is
   * closed. Only receiving is bounded: a response (a token stream) may run longer. 0 turns it off.
   */
  requestTimeoutMs?: number;
  /** Time a client has to send the request headers (at most requestTimeoutMs). */
  headersTimeoutMs?: number;
  /** How long an idle keep-alive connection stays open between requests. */
  keepAliveTimeoutMs?: number;
  /** Requests served on one connection before it is closed (0 = no limit). */
  maxRequestsPerSocket?: number;
  /** Connections one client address (IPv6: one /64) may hold open at once; more are refused. */
  maxConnectionsPerClient?: number;
  /** Connections the server holds open at once; more are refused. */
  maxConnections?: number;
}

export const SERVER_DEFAULTS = {
  requestTimeoutMs: 60_000,
  headersTimeoutMs: 20_000,
  keepAliveTimeoutMs: 10_000,
  maxRequestsPerSocket: 10_000,
  // Generous: a node's and the settlement's clients are a few routers with many parallel
  // requests each, and a service behind a proxy sees one address for many clients.
  maxConnectionsPerClient: 256,
  maxConnections: 10_000,
} as const;

const SAFE_REQUEST_ID = /^[A-Za-z0-9_\-:.]{8,128}$/;

export function createServer(options: ServerOptions): FastifyInstance {
  const logger = options.logger ?? createLogger(options.name);
  const requestTimeoutMs = options.requestTimeoutMs ?? SERVER_DEFAULTS.requestTimeoutMs;
  const headersTimeoutMs = Math.min(
    options.headersTimeoutMs ?? SERVER_DEFAULTS.headersTimeoutMs,
    requestTimeoutMs > 0 ? requestTimeoutMs : Number.MAX_SAFE_INTEGER,
  );
  // Node looks for overdue requests on this period (30 s by default): a fraction of the shortest
  // timeout keeps the cut-off close to the configured time.
  const checkEveryMs = Math.max(
    10,
    Math.min(1_000, Math.floor(Math.min(headersTimeoutMs, requestTimeoutMs || headersTimeoutMs) / 4)),
  );
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: options.bodyLimitBytes ?? 1024 * 1024,
    requestTimeout: requestTimeoutMs,
    keepAliveTimeout: options.keepAliveTimeoutMs ?? SERVER_DEFAULTS.keepAliveTimeoutMs,
    maxRequestsPerSocket: options.maxRequestsPerSocket ?? SERVER_DEFAULTS.maxRequestsPerSocket,
    http: {
      requestTimeout: requestTimeoutMs,
      headersTimeout: headersTimeoutMs,
      connectionsCheckingInterval: checkEveryMs,
    },
    // Accept a caller's request id when it is well-formed, so one id follows client -> router -> node.
    genReqId: (req) => {
      const given = req.headers[REQUEST_ID_HEADER];
      return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Our own onResponse hook logs one line per request (without bodies).
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: true,
    clientErrorHandler: answerClientError,
  }) as unknown as FastifyInstance;
  app.server.maxConnections = options.maxConnections ?? SERVER_DEFAULTS.maxConnections;
  const routes: RouteShape[] = [];
  ROUTE_TABLES.set(app.server, routes);
  app.addHook('onRoute', (route) => {
    const methods = Array.isArray(route.method) ? route.method : [route.method];
    routes.push({ pattern: routePattern(route.url ?? route.path), methods: methods.map(String) });
  });
  // Server spans (continuing a caller's traceparent) when tracing is on; nothing at all when off.
  traceRequests(app);
  limitConnectionsPerClient(
    app.server,
    options.maxConnectionsPerClient ?? SERVER_DEFAULTS.maxConnectionsPerClient,
  );

  app.addHook('onRequest', async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    // Health and readiness polls that succeed are noise at info level.
    const route = request.routeOptions.url;
    const quiet = reply.statusCode < 400 && (route === '/health' || route === '/ready');
    request.log[quiet ? 'debug' : 'info'](
      {
        method: request.method,
        url: request.routeOptions.url ?? request.url.split('?')[0]?.slice(0, 200),
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      'request',
    );
  });

  app.setNotFoundHandler((request, reply) => {
    const allow = allowedMethods(app, request.url);
    if (allow.length > 0) {
      reply.header('allow', allow.join(', '));
      return sendError(reply, 'METHOD_NOT_ALLOWED', `${pathOf(request.url)} accepts ${allow.join(', ')}`);
    }
    return sendError(reply, 'NOT_FOUND', `No route ${request.method} ${pathOf(request.url)}`);
  });
  app.setErrorHandler((error, request, reply) => {
    const e = toFedAiError(error);
    if (e.status >= 500) request.log.error({ err: error }, 'request failed');
    sendError(reply, e.code, e.message, e.details);
  });
  return app;
}

interface RouteShape {
  pattern: RegExp;
  methods: string[];
}

/** Each server's routes (by its node:http server, shared by all encapsulated scopes). */
const ROUTE_TABLES = new WeakMap<object, RouteShape[]>();

function routePattern(url: string): RegExp {
  const source = url
    .split('/')
    .map((part) =>
      part.startsWith(':') ? '[^/]+' : part === '*' ? '.*' : part.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'),
    )
    .join('/');
  return new RegExp(`^${source}$`);
}

/**
 * The methods routes accept at this URL's path (empty when no route has the path): a 404 for a
 * known path with another method is answered 405 with an Allow header.
 */
export function allowedMethods(app: FastifyInstance, url: string): string[] {
  const routes = ROUTE_TABLES.get(app.server);
  if (!routes) return [];
  let path = url.split('?')[0] ?? '';
  try {
    path = decodeURIComponent(path);
  } catch {
    return [];
  }
  const methods = new Set<string>();
  for (const route of routes) if (route.pattern.test(path)) for (const m of route.methods) methods.add(m);
  return [...methods].sort();
}

/** The path of a request URL for messages: no query, bounded length. */
export function pathOf(url: string): string {
  const path = url.split('?')[0] ?? '';
  return path.length > 200 ? `${path.slice(0, 200)}...` : path;
}

/**
 * Errors Node raises before a request reaches a route (headers too large, too slow, not HTTP):
 * answered in our error shape with a reason code, then the connection is closed.
 */
function answerClientError(error: Error & { code?: string }, socket: Socket): void {
  if (error.code === 'ECONNRESET' || socket.destroyed) return;
  const code: ReasonCode =
    error.code === 'HPE_HEADER_OVERFLOW'
      ? 'HEADERS_TOO_LARGE'
      : error.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? 'REQUEST_TIMEOUT'
        : 'BAD_HTTP';
  // Only when no response has started on this connection (else it would corrupt that response).
  const current = (socket as Socket & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (socket.writable && !current?.headersSent) {
    const status = REASONS[code].status;
    const body = JSON.stringify(errorBody(code));
    socket.write(
      `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? 'Error'}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
    );
  }
  socket.destroy();
}

const MAX_ISSUE_CHARS = 160;

/** Maps anything thrown in a handler to a reason-coded error with a short human message. */
export function toFedAiError(error: unknown): FedAiError {
  if (error instanceof FedAiError) return error;
  if (isZodError(error)) {
    const detail = error.issues
      .slice(0, 5)
      .map((i) => {
        const path = i.path.map((p) => String(p)).join('.') || '(body)';
        const message =
          i.message.length > MAX_ISSUE_CHARS ? `${i.message.slice(0, MAX_ISSUE_CHARS)}...` : i.message;
        return `${path}: ${message}`;
      })
      .join('; ');
    const more = error.issues.length > 5 ? ` (and ${error.issues.length - 5} more)` : '';
    return new FedAiError('INVALID_REQUEST', `Invalid request: ${detail}${more}`);
  }
  if (typeof error !== 'object' || error === null) return new FedAiError('INTERNAL');
  const {
    code: fastifyCode,
    statusCode: status,
    name,
  } = error as {
    code?: unknown;
    statusCode?: unknown;
    name?: unknown;
  };
  if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE') return new FedAiError('BODY_TOO_LARGE');
  if (
    fastifyCode === 'FST_ERR_CTP_INVALID_MEDIA_TYPE' ||
    fastifyCode === 'FST_ERR_CTP_INVALID_TYPE' ||
    fastifyCode === 'FST_ERR_CTP_EMPTY_TYPE'
  )
    return new FedAiError('UNSUPPORTED_MEDIA_TYPE');
  if (fastifyCode === 'FST_ERR_CTP_EMPTY_JSON_BODY' || name === 'SyntaxError') {
    // Never echo the JSON parser's own text (positions, fragments of the body).
    return new FedAiError('INVALID_REQUEST', 'The body is not valid JSON.');
  }
  if (fastifyCode === 'FST_ERR_CTP_INVALID_CONTENT_LENGTH')
    return new FedAiError('INVALID_REQUEST', 'Content-Length does not match the body.');
  if (typeof status === 'number' && status === 408) return new FedAiError('REQUEST_TIMEOUT');
  if (typeof status === 'number' && status >= 400 && status < 500) {
    // Framework refusals (bad URL, bad encoding...) carry short fixed texts; anything else is generic.
    const message = (error as Error).message;
    return new FedAiError(
      'INVALID_REQUEST',
      typeof fastifyCode === 'string' && fastifyCode.startsWith('FST_') && message.length <= 200
        ? message
        : undefined,
    );
  }
  return new FedAiError('INTERNAL');
}

function isZodError(error: unknown): error is ZodError {
  if (error instanceof ZodError) return true;
  // Another copy of zod (a dependency's) throws errors of another class with the same shape.
  return (
    typeof error === 'object' &&
    error !== null &&
    (error as { name?: unknown }).name === 'ZodError' &&
    Array.isArray((error as { issues?: unknown }).issues)
  );
}

export interface ErrorBody {
  error: { code: ReasonCode; message: string; hint: string; details?: Record<string, unknown> };
}

export function errorBody(code: ReasonCode, message?: string, details?: Record<string, unknown>): ErrorBody {
  const info = REASONS[code];
  return {
    error: { code, message: message ?? info.message, hint: info.hint, ...(details ? { details } : {}) },
  };
}

export function sendError(
  reply: FastifyReply,
  code: ReasonCode,
  message?: string,
  details?: Record<string, unknown>,
): FastifyReply {
  if (code === 'RATE_LIMITED' || code === 'OVERLOADED' || code === 'BUDGET_EXHAUSTED') {
    const retry = details?.retry_after_s;
    reply.header('retry-after', String(typeof retry === 'number' ? retry : 1));
  }
  return reply.code(REASONS[code].status).send(errorBody(code, message, details));
}

/** Parses a reason code from a peer's error body; unknown codes map to `fallback`. */
export function readErrorCode(body: unknown, fallback: ReasonCode): ReasonCode {
  const code = (body as { error?: { code?: unknown } } | null)?.error?.code;
  return typeof code === 'string' && isReasonCode(code) ? code : fallback;
}

/** The raw body text, for routes that must verify signatures over exact bytes. */
export function addRawJsonParser(app: FastifyInstance): void {
  app.removeContentTypeParser('application/json');
  app.addContentTypeParser('application/json', { parseAs: 'string' }, (_req, body, done) => {
    done(null, body);
  });
}

export function rawBody(request: FastifyRequest): string {
  return typeof request.body === 'string' ? request.body : JSON.stringify(request.body ?? null);
}

/**
 * The exact body text received, '' when there was none (rawBody gives "null" then). For checks
 * over the bytes sent, such as the NIP-98 payload hash.
 */
export function receivedBody(request: FastifyRequest): string {
  if (typeof request.body === 'string') return request.body;
  if (request.body === undefined || request.body === null) return '';
  if (Buffer.isBuffer(request.body)) return request.body.toString('utf8');
  return JSON.stringify(request.body);
}

/** An AbortSignal that fires when the client goes away before the response finished. */
export function abortOnDisconnect(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}
