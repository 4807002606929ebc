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

export interface AdminFlags extends RouterFlags {
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
      budget_msat_per_day: z.number().int().nullable().optional(),
      budget_msat_per_month: z.number().int().nullable().optional(),
      created_at: z.union([z.string(), z.number()]),
      revoked: z.boolean(),
    }),
  ),
});
const revokedAnswer = z.looseObject({ ok: z.literal(true) });
/** The router answers a budget change with the key's id and budgets (no created_at: not the list's row). */
const budgetAnswer = z.looseObject({
  id: z.string(),
  budget_msat_per_day: z.number().int().nullable().optional(),
  budget_msat_per_month: z.number().int().nullable().optional(),
});

/** One operator call to the router's /admin routes, NIP-98 signed with the operator key. */
export async function admin<T>(
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

/** A budget flag: a positive msat amount, or "none" (null: remove the budget). */
function budgetFlag(flag: string | undefined, name: string): number | null | undefined {
  if (flag === 'none') return null;
  return optionalCount(flag, name);
}

export async function apikeyCreate(
  flags: AdminFlags & {
    name: string;
    rpm?: string;
    tpm?: string;
    parallel?: string;
    budgetDay?: string;
    budgetMonth?: string;
  },
): Promise<void> {
  const rpm = optionalCount(flags.rpm, 'rpm');
  const tpm = optionalCount(flags.tpm, 'tpm');
  const parallel = optionalCount(flags.parallel, 'parallel');
  const day = optionalCount(flags.budgetDay, 'budget-day');
  const month = optionalCount(flags.budgetMonth, 'budget-month');
  const body = {
    name: flags.name,
    ...(rpm ? { requests_per_min: rpm } : {}),
    ...(tpm ? { tokens_per_min: tpm } : {}),
    ...(parallel ? { max_parallel: parallel } : {}),
    ...(day ? { budget_msat_per_day: day } : {}),
    ...(month ? { budget_msat_per_month: month } : {}),
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
        { header: 'BUDGET/DAY', align: 'right' },
        { header: 'BUDGET/MONTH', align: 'right' },
        { header: 'CREATED' },
      ],
      list.keys.map((k) => [
        k.id,
        k.name,
        k.revoked ? 'revoked' : 'active',
        groupDigits(k.requests_per_min),
        groupDigits(k.tokens_per_min),
        groupDigits(k.max_parallel),
        k.budget_msat_per_day == null ? '-' : groupDigits(k.budget_msat_per_day),
        k.budget_msat_per_month == null ? '-' : groupDigits(k.budget_msat_per_month),
        dateText(k.created_at),
      ]),
    ),
  );
}

export async function apikeyBudget(
  id: string,
  flags: AdminFlags & { day?: string; month?: string },
): Promise<void> {
  const day = budgetFlag(flags.day, 'day');
  const month = budgetFlag(flags.month, 'month');
  if (day === undefined && month === undefined)
    fail('BAD_OPTION', 'give --day and/or --month (msat, or none)');
  const body = {
    ...(day !== undefined ? { budget_msat_per_day: day } : {}),
    ...(month !== undefined ? { budget_msat_per_month: month } : {}),
  };
  const answer = await admin(
    flags,
    'POST',
    `/admin/apikeys/${encodeURIComponent(id)}/budgets`,
    budgetAnswer,
    body,
  );
  if (flags.json) return printJson(answer);
  process.stdout.write(
    `${id}: per day ${budgetText(answer.budget_msat_per_day)}, per month ${budgetText(answer.budget_msat_per_month)}\n`,
  );
}

function budgetText(msat: number | null | undefined): string {
  return msat == null ? 'no budget' : `${groupDigits(msat)} msat`;
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
