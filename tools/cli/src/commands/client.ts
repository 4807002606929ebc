// Shared by commands that talk to a router: flags first, then ./data/devnet.json; one JSON call
// helper that validates every answer with zod and turns every failure into one reason-coded line.
import type { z } from 'zod';
import { readDevnet } from '../devnet-file';
import { fail } from '../output';

export interface RouterFlags {
  router?: string;
  apiKey?: string;
  model?: string;
}

/** An environment variable; set but empty counts as unset. */
const env = (name: string): string | undefined => process.env[name] || undefined;

export function routerTarget(flags: RouterFlags): {
  routerUrl: string;
  apiKey: string | undefined;
  model: string | undefined;
  /** True when the router is the one of ./data/devnet.json (a local network from fedai up). */
  devnet: boolean;
} {
  const devnet = readDevnet();
  const routerUrl = (flags.router || env('FEDAI_ROUTER_URL') || devnet?.router_url)?.replace(/\/+$/, '');
  if (!routerUrl) fail('NO_ROUTER', 'no router to talk to');
  if (!/^https?:\/\/[^/]/.test(routerUrl))
    fail('BAD_OPTION', `the router URL "${routerUrl}" is not an http(s) URL`, {
      fix: 'pass --router http://HOST:PORT',
    });
  return {
    routerUrl,
    apiKey: flags.apiKey || env('FEDAI_API_KEY') || devnet?.api_key,
    model: flags.model || env('FEDAI_MODEL_ID') || devnet?.model,
    devnet: devnet !== null && devnet.router_url.replace(/\/+$/, '') === routerUrl,
  };
}

/** Why a connection failed, from fetch's error and its cause (ECONNREFUSED, ENOTFOUND, timeout). */
function connectionProblem(error: unknown): string {
  const e = error as { name?: string; message?: string; cause?: { code?: string; message?: string } };
  if (e?.name === 'TimeoutError') return 'no answer in time';
  return e?.cause?.code ?? e?.cause?.message ?? e?.message ?? String(error);
}

export interface CallOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE';
  headers?: Record<string, string>;
  /** JSON text (already serialized, so a NIP-98 header can hash exactly these bytes). */
  body?: string;
  /** Names the far side in errors. */
  service?: 'router' | 'settlement' | 'wallet fleet';
  timeoutMs?: number;
}

/**
 * One JSON call. Unreachable: ROUTER_UNREACHABLE (exit 3) naming the URL. Refused: the answer's
 * reason code and message. An answer that does not match `schema`: BAD_ANSWER. Never throws.
 * `schema` must not transform: the body is returned as sent once it is valid.
 */
export async function callJson<T>(
  baseUrl: string,
  path: string,
  schema: z.ZodType<T>,
  options: CallOptions = {},
): Promise<T> {
  const service = options.service ?? 'router';
  const url = `${baseUrl}${path}`;
  let response: Response;
  try {
    response = await fetch(url, {
      method: options.method ?? 'GET',
      headers: {
        ...(options.body !== undefined ? { 'content-type': 'application/json' } : {}),
        ...options.headers,
      },
      ...(options.body !== undefined ? { body: options.body } : {}),
      signal: AbortSignal.timeout(options.timeoutMs ?? 15_000),
    });
  } catch (error) {
    fail(
      service === 'router' ? 'ROUTER_UNREACHABLE' : 'SERVICE_UNREACHABLE',
      `the ${service} at ${baseUrl} is unreachable (${connectionProblem(error)})`,
    );
  }
  const text = await response.text().catch(() => '');
  let body: unknown = null;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: handled below
  }
  if (!response.ok) {
    const e = (body as { error?: { code?: unknown; message?: unknown; hint?: unknown } } | null)?.error;
    const code = typeof e?.code === 'string' && /^[A-Z][A-Z0-9_]+$/.test(e.code) ? e.code : 'BAD_ANSWER';
    const message =
      typeof e?.message === 'string' ? e.message : `${url} answered HTTP ${response.status} without a reason`;
    fail(code, `${message} (HTTP ${response.status} from ${url})`, {
      ...(typeof e?.hint === 'string' && e.hint ? { fix: e.hint } : {}),
    });
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    fail(
      'BAD_ANSWER',
      `${url} answered something else than expected (${issue ? `${issue.path.join('.') || 'body'}: ${issue.message}` : 'not JSON'})`,
    );
  }
  // The answer as sent (validated): `--json` prints exactly what the router said, keys in its order.
  return body as T;
}
