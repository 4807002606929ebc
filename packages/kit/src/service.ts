// What every service entry point and start function shares: its identity key and its lifecycle.
import { resolve } from 'node:path';
import { FedAiError, parseSecretKey, type ReplayStore, verifyNip98 } from '@fed-ai/protocol';
import type { FastifyRequest } from 'fastify';
import type { z } from 'zod';
import { loadConfigOrExit } from './config';
import { receivedBody } from './http';
import { loadOrCreateKeyFile } from './keyfile';
import {
  EXIT_PORT_IN_USE,
  isAddressInUse,
  portBindable,
  supervisorEnvSchema,
  writeReadyFile,
} from './ready-file';

/** The key given inline (nsec/hex), else the key file (created 0600 on first start). */
export function loadServiceKey(
  inline: string | undefined,
  file: string | undefined,
  defaultFile: string,
): Uint8Array {
  if (inline) return parseSecretKey(inline);
  return loadOrCreateKeyFile(resolve(file ?? defaultFile)).secretKey;
}

export interface RunServiceOptions<C> {
  /**
   * The config keys of the listen address. With FEDAI_PORT_FALLBACK=true a taken preferred port
   * is replaced by 0 (any free port) before start; the URL really bound goes to FEDAI_READY_FILE.
   */
  listen?: { host: keyof C & string; port: keyof C & string };
}

/**
 * main.ts of a service: validate the environment (one line and exit 2 on a bad value), start,
 * report the bound URL to a supervisor (FEDAI_READY_FILE), and close cleanly on SIGINT/SIGTERM
 * (forced exit after 10 s). A taken port exits with EXIT_PORT_IN_USE and a PORT_IN_USE line.
 */
export async function runService<
  S extends z.ZodObject,
  T extends { close(): Promise<void>; url: string; pubkey?: string },
>(
  name: string,
  schema: S,
  start: (config: z.infer<S>) => Promise<T>,
  options: RunServiceOptions<z.infer<S>> = {},
): Promise<void> {
  const config = loadConfigOrExit(schema);
  const supervisor = loadConfigOrExit(supervisorEnvSchema);
  const listen = options.listen;
  const preferredPort = listen ? Number(config[listen.port]) : undefined;
  let chosen = config;
  let portFallback = false;
  if (listen && supervisor.FEDAI_PORT_FALLBACK && preferredPort) {
    const host = String(config[listen.host]);
    if (!(await portBindable(host, preferredPort))) {
      chosen = { ...config, [listen.port]: 0 };
      portFallback = true;
    }
  }
  const running = await start(chosen).catch((error: unknown) => {
    if (isAddressInUse(error)) {
      process.stderr.write(
        `${name} failed to start: PORT_IN_USE: port ${preferredPort ?? '?'} is taken by another process` +
          `${supervisor.FEDAI_PORT_FALLBACK ? ' (it was free a moment before)' : '; set FEDAI_PORT_FALLBACK=true to use any free port'}\n`,
      );
      process.exit(EXIT_PORT_IN_USE);
    }
    process.stderr.write(
      `${name} failed to start: ${error instanceof Error ? error.message : String(error)}\n`,
    );
    process.exit(1);
  });
  let closing = false;
  const shutdown = (code: number) => {
    if (closing) return;
    closing = true;
    running.close().then(
      () => process.exit(code),
      () => process.exit(1),
    );
    setTimeout(() => process.exit(1), 10_000).unref();
  };
  process.on('SIGINT', () => shutdown(0));
  process.on('SIGTERM', () => shutdown(0));
  if (supervisor.FEDAI_READY_FILE) {
    try {
      writeReadyFile(supervisor.FEDAI_READY_FILE, {
        url: running.url,
        ...(running.pubkey ? { pubkey: running.pubkey } : {}),
        pid: process.pid,
        ...(preferredPort === undefined ? {} : { preferred_port: preferredPort }),
        port_fallback: portFallback,
      });
    } catch (error) {
      process.stderr.write(
        `${name} could not report its address: ${error instanceof Error ? error.message : String(error)}\n`,
      );
      shutdown(1);
    }
  }
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
