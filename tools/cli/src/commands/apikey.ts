// Operator commands for API keys, signed with NIP-98 by the operator key (./data/operator.key).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createNip98Header } from '@fed-ai/protocol';
import { z } from 'zod';
import { dataDir } from '../devnet-file';
import { fail, printJson } from '../output';
import { formatTable, groupDigits } from '../table';
import { callJson, type RouterFlags, routerTarget } from './client';
import { readKeyFile } from './key-file';

interface AdminFlags extends RouterFlags {
  operatorKey?: string;
  json?: boolean;
}

const createdAnswer = z.looseObject({ id: z.string(), key: z.string() });
const listAnswer = z.looseObject({
  keys: z.array(
    z.looseObject({
      id: z.string(),
      name: z.string(),
      requests_per_min: z.number().int(),
      tokens_per_min: z.number().int(),
      max_parallel: z.number().int(),
      created_at: z.union([z.string(), z.number()]),
      revoked: z.boolean(),
    }),
  ),
});
const revokedAnswer = z.looseObject({ ok: z.literal(true) });

async function admin<T>(
  flags: AdminFlags,
  method: 'GET' | 'POST' | 'DELETE',
  path: string,
  schema: z.ZodType<T>,
  body?: unknown,
): Promise<T> {
  const { routerUrl } = routerTarget(flags);
  const keyPath = resolve(flags.operatorKey ?? resolve(dataDir(), 'operator.key'));
  if (!existsSync(keyPath)) fail('NO_OPERATOR_KEY', `no operator key at ${keyPath}`);
  const url = `${routerUrl}${path}`;
  const text = body === undefined ? undefined : JSON.stringify(body);
  return callJson(routerUrl, path, schema, {
    method,
    headers: { authorization: createNip98Header(url, method, text, readKeyFile(keyPath)) },
    ...(text !== undefined ? { body: text } : {}),
  });
}

function optionalCount(flag: string | undefined, name: string): number | undefined {
  if (flag === undefined) return undefined;
  const n = Number(flag);
  if (!Number.isInteger(n) || n < 1) fail('BAD_OPTION', `--${name} must be a positive integer`);
  return n;
}

export async function apikeyCreate(
  flags: AdminFlags & { name: string; rpm?: string; tpm?: string; parallel?: string },
): Promise<void> {
  const rpm = optionalCount(flags.rpm, 'rpm');
  const tpm = optionalCount(flags.tpm, 'tpm');
  const parallel = optionalCount(flags.parallel, 'parallel');
  const body = {
    name: flags.name,
    ...(rpm ? { requests_per_min: rpm } : {}),
    ...(tpm ? { tokens_per_min: tpm } : {}),
    ...(parallel ? { max_parallel: parallel } : {}),
  };
  const created = await admin(flags, 'POST', '/admin/apikeys', createdAnswer, body);
  if (flags.json) return printJson(created);
  process.stdout.write(`id  ${created.id}\nkey ${created.key}\nthe key is shown once; store it now.\n`);
}

export async function apikeyList(flags: AdminFlags): Promise<void> {
  const list = await admin(flags, 'GET', '/admin/apikeys', listAnswer);
  if (flags.json) return printJson(list);
  if (list.keys.length === 0) {
    process.stdout.write('no API keys yet; create one with: pnpm fedai apikey create --name me\n');
    return;
  }
  process.stdout.write(
    formatTable(
      [
        { header: 'ID' },
        { header: 'NAME' },
        { header: 'STATE' },
        { header: 'REQ/MIN', align: 'right' },
        { header: 'TOKENS/MIN', align: 'right' },
        { header: 'PARALLEL', align: 'right' },
        { header: 'CREATED' },
      ],
      list.keys.map((k) => [
        k.id,
        k.name,
        k.revoked ? 'revoked' : 'active',
        groupDigits(k.requests_per_min),
        groupDigits(k.tokens_per_min),
        groupDigits(k.max_parallel),
        dateText(k.created_at),
      ]),
    ),
  );
}

export async function apikeyRevoke(id: string, flags: AdminFlags): Promise<void> {
  const answer = await admin(flags, 'DELETE', `/admin/apikeys/${encodeURIComponent(id)}`, revokedAnswer);
  if (flags.json) return printJson(answer);
  process.stdout.write(`revoked ${id}\n`);
}

function dateText(value: string | number): string {
  const date = new Date(value);
  return Number.isNaN(date.getTime())
    ? String(value)
    : `${date.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}
