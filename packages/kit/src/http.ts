// The HTTP shell every service shares: fastify with JSON logs (pino) that redact secrets and
// prompts, a request id that follows the request, bounded bodies, and one error shape
// `{ error: { code, message, hint } }` carrying a stable reason code.
import { randomUUID } from 'node:crypto';
import { FedAiError, isReasonCode, REASONS, type ReasonCode } from '@fed-ai/protocol';
import Fastify, {
  type FastifyInstance,
  type FastifyReply,
  type FastifyRequest,
  LogController,
} from 'fastify';
import { type Logger, pino } from 'pino';
import { ZodError } from 'zod';

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
  /** Time a request may take end to end; streams set their own. */
  requestTimeoutMs?: number;
}

const SAFE_REQUEST_ID = /^[A-Za-z0-9_\-:.]{8,128}$/;

export function createServer(options: ServerOptions): FastifyInstance {
  const logger = options.logger ?? createLogger(options.name);
  const app = Fastify({
    loggerInstance: logger,
    bodyLimit: options.bodyLimitBytes ?? 1024 * 1024,
    requestTimeout: options.requestTimeoutMs ?? 0,
    // Accept a caller's request id when it is well-formed, so one id follows client -> router -> node.
    genReqId: (req) => {
      const given = req.headers[REQUEST_ID_HEADER];
      return typeof given === 'string' && SAFE_REQUEST_ID.test(given) ? given : randomUUID();
    },
    // Our own onResponse hook logs one line per request (without bodies).
    logController: new LogController({ disableRequestLogging: true }),
    forceCloseConnections: true,
  }) as unknown as FastifyInstance;

  app.addHook('onRequest', async (request, reply) => {
    reply.header(REQUEST_ID_HEADER, request.id);
  });
  app.addHook('onResponse', async (request, reply) => {
    request.log.info(
      {
        method: request.method,
        url: request.routeOptions.url ?? request.url,
        status: reply.statusCode,
        ms: Math.round(reply.elapsedTime),
      },
      'request',
    );
  });

  app.setNotFoundHandler((request, reply) => {
    sendError(reply, 'NOT_FOUND', `No route ${request.method} ${request.url.split('?')[0]}`);
  });
  app.setErrorHandler((error, request, reply) => {
    const e = toFedAiError(error);
    if (e.status >= 500) request.log.error({ err: error }, 'request failed');
    sendError(reply, e.code, e.message, e.details);
  });
  return app;
}

/** Maps anything thrown in a handler to a reason-coded error. */
export function toFedAiError(error: unknown): FedAiError {
  if (error instanceof FedAiError) return error;
  if (error instanceof ZodError) {
    const detail = error.issues
      .slice(0, 5)
      .map((i) => `${i.path.join('.') || '(body)'}: ${i.message}`)
      .join('; ');
    return new FedAiError('INVALID_REQUEST', `Invalid request: ${detail}`);
  }
  const fastifyCode = (error as { code?: string }).code;
  if (fastifyCode === 'FST_ERR_CTP_BODY_TOO_LARGE') return new FedAiError('BODY_TOO_LARGE');
  if (fastifyCode === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return new FedAiError('UNSUPPORTED_MEDIA_TYPE');
  if (fastifyCode === 'FST_ERR_CTP_EMPTY_JSON_BODY' || (error as Error).name === 'SyntaxError') {
    return new FedAiError('INVALID_REQUEST', 'The body is not valid JSON.');
  }
  const status = (error as { statusCode?: number }).statusCode;
  if (status && status >= 400 && status < 500)
    return new FedAiError('INVALID_REQUEST', (error as Error).message);
  return new FedAiError('INTERNAL');
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
  if (code === 'RATE_LIMITED' || code === 'OVERLOADED') {
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

/** An AbortSignal that fires when the client goes away before the response finished. */
export function abortOnDisconnect(reply: FastifyReply): AbortSignal {
  const controller = new AbortController();
  reply.raw.on('close', () => {
    if (!reply.raw.writableFinished) controller.abort();
  });
  return controller.signal;
}
