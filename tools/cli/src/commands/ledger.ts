// `fedai ledger verify`: proves the books balance. Against PostgreSQL directly (DATABASE_URL), or
// through a running settlement service (NIP-98 signed with the operator key).
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { openDb } from '@fed-ai/kit';
import { createNip98Header } from '@fed-ai/protocol';
import { verifyLedger } from '@fed-ai/settlement';
import { dataDir, readDevnet } from '../devnet-file';
import { EXIT, fail, green, printJson, red } from '../output';
import { readKeyFile } from './keys';

interface Report {
  ok: boolean;
  accounts: number;
  transfers: number;
  postedTotalMsat: number;
  pendingTotalMsat: number;
  problems: { code: string; detail: string }[];
}

export async function ledgerVerify(flags: {
  databaseUrl?: string;
  settlement?: string;
  operatorKey?: string;
  json?: boolean;
}): Promise<void> {
  let report: Report;
  const databaseUrl = flags.databaseUrl ?? process.env.DATABASE_URL;
  if (databaseUrl) {
    const db = await openDb({ url: databaseUrl });
    try {
      report = await verifyLedger(db);
    } finally {
      await db.close();
    }
  } else {
    const settlement = flags.settlement ?? readDevnet()?.settlement_url;
    if (!settlement)
      fail(
        'no ledger to check: pass --database-url, or --settlement URL, or start a network with fedai up',
        EXIT.usage,
      );
    const keyPath = resolve(flags.operatorKey ?? resolve(dataDir(), 'operator.key'));
    if (!existsSync(keyPath)) fail(`no operator key at ${keyPath}: pass --operator-key FILE`, EXIT.usage);
    const url = `${settlement.replace(/\/+$/, '')}/v1/ledger/verify`;
    let response: Response;
    try {
      response = await fetch(url, {
        headers: { authorization: createNip98Header(url, 'GET', undefined, readKeyFile(keyPath)) },
      });
    } catch (error) {
      fail(`cannot reach ${settlement}: ${(error as Error).message}`, EXIT.unreachable);
    }
    if (!response.ok) fail(`${url} answered ${response.status}: ${await response.text()}`, EXIT.failure);
    report = (await response.json()) as Report;
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
