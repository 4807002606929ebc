// `fedai ledger verify`: proves the books balance. Against PostgreSQL directly (DATABASE_URL), or
// through a running settlement service (NIP-98 signed with the operator key).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { openDb } from '@fed-ai/kit';
import { createNip98Header } from '@fed-ai/protocol';
import { verifyLedger } from '@fed-ai/settlement';
import { z } from 'zod';
import { dataDir, readDevnet } from '../devnet-file';
import { EXIT, fail, green, printJson, red } from '../output';
import { callJson } from './client';
import { readKeyFile } from './key-file';

const reportSchema = z.object({
  ok: z.boolean(),
  accounts: z.number().int(),
  transfers: z.number().int(),
  postedTotalMsat: z.number().int(),
  pendingTotalMsat: z.number().int(),
  problems: z.array(z.object({ code: z.string(), detail: z.string() })),
});
type Report = z.infer<typeof reportSchema>;

export async function ledgerVerify(flags: {
  databaseUrl?: string;
  settlement?: string;
  operatorKey?: string;
  json?: boolean;
}): Promise<void> {
  let report: Report;
  const databaseUrl = flags.databaseUrl ?? process.env.DATABASE_URL;
  if (databaseUrl) {
    const db = await openDb({ url: databaseUrl }).catch((error: unknown) =>
      fail(
        'SERVICE_UNREACHABLE',
        `the database at ${withoutPassword(databaseUrl)} is unreachable (${error instanceof Error ? error.message : String(error)})`,
        { fix: 'check --database-url / DATABASE_URL and that PostgreSQL runs' },
      ),
    );
    try {
      report = await verifyLedger(db);
    } finally {
      await db.close();
    }
  } else {
    const settlement = flags.settlement ?? readDevnet()?.settlement_url;
    if (!settlement) fail('NO_LEDGER', 'no ledger to check');
    const keyPath = resolve(flags.operatorKey ?? resolve(dataDir(), 'operator.key'));
    if (!existsSync(keyPath)) fail('NO_OPERATOR_KEY', `no operator key at ${keyPath}`);
    const base = settlement.replace(/\/+$/, '');
    const url = `${base}/v1/ledger/verify`;
    report = await callJson(base, '/v1/ledger/verify', reportSchema, {
      service: 'settlement',
      headers: { authorization: createNip98Header(url, 'GET', undefined, readKeyFile(keyPath)) },
    });
  }
  if (flags.json) printJson(report);
  else {
    process.stdout.write(
      `${report.ok ? green('ledger balanced') : red('LEDGER PROBLEMS')}: ${report.accounts} accounts, ${report.transfers} transfers, ` +
        `${report.postedTotalMsat} msat posted, ${report.pendingTotalMsat} msat pending\n`,
    );
    for (const p of report.problems) process.stdout.write(`  ${red(p.code)} ${p.detail}\n`);
  }
  process.exitCode = report.ok ? EXIT.ok : EXIT.failure;
}

/** A database URL fit to print: the password replaced. */
function withoutPassword(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '(the database URL)';
  }
}
