// `fedai reconcile`: runs settlement's reconciliation now (POST /v1/admin/reconcile, NIP-98
// signed with the operator key) and prints the report: top-ups credited, payments resolved or
// stuck, the Lightning account against the backend balance. Exit 1 when differences were found.
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { createNip98Header } from '@fed-ai/protocol';
import { z } from 'zod';
import { dataDir, readDevnet } from '../devnet-file';
import { bold, EXIT, fail, green, printJson, red, yellow } from '../output';
import { callJson } from './client';
import { readKeyFile } from './key-file';

const msat = z.number().int();
const reportSchema = z.object({
  backend: z.string(),
  ran_at_s: z.number().int(),
  topups: z.object({
    checked: z.number().int(),
    credited: z.array(
      z.object({ payment_hash: z.string(), account: z.string(), amount_msat: msat, expired: z.boolean() }),
    ),
    open: z.number().int(),
    expired_unpaid: z.number().int(),
    unknown_at_backend: z.number().int(),
    truncated: z.boolean(),
  }),
  payments: z.object({
    checked: z.number().int(),
    resolved: z.number().int(),
    in_flight: z.number().int(),
    stuck: z.array(
      z.object({ payment_hash: z.string(), account: z.string(), amount_msat: msat, age_s: z.number().int() }),
    ),
  }),
  lightning: z.object({
    ledger_msat: msat,
    ledger_pending_out_msat: msat,
    backend_msat: msat.nullable(),
    difference_msat: msat.nullable(),
    note: z.string(),
  }),
  mismatches: z.array(
    z.object({ kind: z.string(), payment_hash: z.string().optional(), detail: z.string() }),
  ),
});

export async function reconcileCommand(flags: {
  settlement?: string;
  operatorKey?: string;
  limit?: string;
  json?: boolean;
}): Promise<void> {
  const settlement = flags.settlement ?? readDevnet()?.settlement_url;
  if (!settlement) fail('NO_LEDGER', 'no settlement to reconcile', { fix: 'pass --settlement URL' });
  const keyPath = resolve(flags.operatorKey ?? resolve(dataDir(), 'operator.key'));
  if (!existsSync(keyPath)) fail('NO_OPERATOR_KEY', `no operator key at ${keyPath}`);
  let limit: number | undefined;
  if (flags.limit !== undefined) {
    limit = Number(flags.limit);
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > 1000)
      fail('BAD_OPTION', `--limit ${flags.limit} is not 1..1000`);
  }
  const base = settlement.replace(/\/+$/, '');
  const path = '/v1/admin/reconcile';
  const body = JSON.stringify(limit === undefined ? {} : { limit });
  const report = await callJson(base, path, reportSchema, {
    method: 'POST',
    service: 'settlement',
    body,
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(`${base}${path}`, 'POST', body, readKeyFile(keyPath)),
    },
    timeoutMs: 120_000,
  });
  if (flags.json) printJson(report);
  else {
    const out = (line: string) => process.stdout.write(`${line}\n`);
    const l = report.lightning;
    out(bold(`reconcile (${report.backend})`));
    out(
      `  top-ups    checked ${report.topups.checked}, credited ${report.topups.credited.length}, open ${report.topups.open}, ` +
        `expired unpaid ${report.topups.expired_unpaid}, unknown at backend ${report.topups.unknown_at_backend}` +
        (report.topups.truncated ? yellow(' (limit reached: more next run)') : ''),
    );
    out(
      `  payments   checked ${report.payments.checked}, resolved ${report.payments.resolved}, in flight ${report.payments.in_flight}, stuck ${report.payments.stuck.length}`,
    );
    out(
      `  lightning  ledger ${l.ledger_msat} msat (${l.ledger_pending_out_msat} pending out), backend ${l.backend_msat ?? '-'} msat, difference ${l.difference_msat ?? '-'} msat`,
    );
    out(`             ${l.note}`);
    if (report.mismatches.length === 0) out(green('no differences'));
    for (const m of report.mismatches)
      out(
        `  ${red(m.kind.padEnd(20))} ${m.payment_hash ? `${m.payment_hash.slice(0, 16)}… ` : ''}${m.detail}`,
      );
  }
  process.exitCode = report.mismatches.length === 0 ? EXIT.ok : EXIT.failure;
}
