// Operator commands for API keys, signed with NIP-98 by the operator key (./data/operator.key).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createNip98Header } from '@fed-ai/protocol';
import { dataDir } from '../devnet-file';
import { EXIT, fail, printJson } from '../output';
import { type RouterFlags, routerTarget } from './client';
import { readKeyFile } from './keys';

interface AdminFlags extends RouterFlags {
  operatorKey?: string;
  json?: boolean;
}

async function admin(flags: AdminFlags, method: string, path: string, body?: unknown): Promise<unknown> {
  const { routerUrl } = routerTarget(flags);
  const keyPath = resolve(flags.operatorKey ?? resolve(dataDir(), 'operator.key'));
  if (!existsSync(keyPath)) fail(`no operator key at ${keyPath}: pass --operator-key FILE`, EXIT.usage);
  const url = `${routerUrl}${path}`;
  const text = body === undefined ? undefined : JSON.stringify(body);
  let response: Response;
  try {
    response = await fetch(url, {
      method,
      headers: {
        authorization: createNip98Header(url, method, text, readKeyFile(keyPath)),
        ...(text ? { 'content-type': 'application/json' } : {}),
      },
      ...(text ? { body: text } : {}),
    });
  } catch (error) {
    fail(
      `cannot reach ${routerUrl}: ${error instanceof Error ? error.message : String(error)}`,
      EXIT.unreachable,
    );
  }
  const json = await response.json().catch(() => null);
  if (!response.ok) {
    const e = (json as { error?: { code?: string; message?: string } } | null)?.error;
    fail(`${e?.code ?? `HTTP ${response.status}`}: ${e?.message ?? 'request failed'}`, EXIT.failure);
  }
  return json;
}

export async function apikeyCreate(
  flags: AdminFlags & { name: string; rpm?: string; tpm?: string; parallel?: string },
): Promise<void> {
  const body = {
    name: flags.name,
    ...(flags.rpm ? { requests_per_min: Number(flags.rpm) } : {}),
    ...(flags.tpm ? { tokens_per_min: Number(flags.tpm) } : {}),
    ...(flags.parallel ? { max_parallel: Number(flags.parallel) } : {}),
  };
  const created = await admin(flags, 'POST', '/admin/apikeys', body);
  if (flags.json) return printJson(created);
  const c = created as { id?: string; key?: string };
  process.stdout.write(`id  ${c.id}\nkey ${c.key}\nthe key is shown once; store it now.\n`);
}

export async function apikeyList(flags: AdminFlags): Promise<void> {
  const list = await admin(flags, 'GET', '/admin/apikeys');
  printJson(list);
}

export async function apikeyRevoke(id: string, flags: AdminFlags): Promise<void> {
  await admin(flags, 'DELETE', `/admin/apikeys/${encodeURIComponent(id)}`);
  process.stdout.write(`revoked ${id}\n`);
}
