// What every service entry point and start function shares: its identity key and its lifecycle.
import { resolve } from 'node:path';
import { FedAiError, parseSecretKey, type ReplayStore, verifyNip98 } from '@fed-ai/protocol';
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { loadConfigOrExit } from './config';
import { receivedBody } from './http';
import { loadOrCreateKeyFile } from './keyfile';

/** The key given inline (nsec/hex), else the key file (created 0600 on first start). */
export function loadServiceKey(
  inline: string | undefined,
  file: string | undefined,
  defaultFile: string,
): Uint8Array {
  if (inline) return parseSecretKey(inline);
  return loadOrCreateKeyFile(resolve(file ?? defaultFile)).secretKey;
}

/**
 * main.ts of a service: validate the environment (one line and exit 2 on a bad value), start,
 * and close cleanly on SIGINT/SIGTERM (forced exit after 10 s).
 */
export async function runService<S extends z.ZodObject, T extends { close(): Promise<void> }>(
  name: string,
  schema: S,
  start: (config: z.infer<S>) => Promise<T>,
): Promise<void> {
  const running = await start(loadConfigOrExit(schema)).catch((error: unknown) => {
    process.stderr.write(
      `${name} failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exit(1);
  });
  let closing = false;
  const shutdown = () => {
    if (closing) return;
    closing = true;
    running.close().then(
      () => process.exit(0),
      () => process.exit(1),
    );
    setTimeout(() => process.exit(1), 10_000).unref();
  };
  process.on('SIGINT', shutdown);
  process.on('SIGTERM', shutdown);
}

/**
 * NIP-98 for a request as received: the signed URL may be the one the caller used directly or
 * the service's public URL. Returns the signer, who must be in `allowed`.
 */
export async function verifyNip98Request(
  request: FastifyRequest,
  options: { replayStore: ReplayStore; allowed: ReadonlySet<string>; publicUrl?: string | undefined },
): Promise<string> {
  // The exact bytes received ('' without a body): the payload tag is checked against them.
  const body = receivedBody(request);
  const urls = [`http://${request.headers.host}${request.url}`];
  if (options.publicUrl) urls.push(`${options.publicUrl.replace(/\/+$/, '')}${request.url}`);
  let result = await verifyNip98(request.headers.authorization, {
    url: urls[0]!,
    method: request.method,
    body,
    replayStore: options.replayStore,
    allowed: options.allowed,
  });
  if (!result.ok && result.code === 'AUTH_URL_MISMATCH' && urls[1]) {
    result = await verifyNip98(request.headers.authorization, {
      url: urls[1],
      method: request.method,
      body,
      replayStore: options.replayStore,
      allowed: options.allowed,
    });
  }
  if (!result.ok) {
    if (result.code === 'FORBIDDEN')
      throw new FedAiError('FORBIDDEN', 'This key may not call this endpoint.');
    throw new FedAiError(result.code, result.detail);
  }
  return result.pubkey;
}
