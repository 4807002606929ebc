// `fedai node payout set | show` and `fedai node statement verify`: a node operator names where
// settlement pays the node's earnings (a Lightning address or the node's NWC connection) and
// checks each paid statement against the node's own log of the metering records it signed
// (docs/lightning.md "Payouts"). Every call is NIP-98 signed with the node's own key: settlement
// knows which node asks from the signature, never from an argument.
import { existsSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { readMeteringLog } from '@fed-ai/node/metering-log';
import {
  checkPayoutStatement,
  createNip98Header,
  KIND,
  payoutStatementSchema,
  publicKeyOf,
  toNpub,
  verifyEnvelope,
} from '@fed-ai/protocol';
import { z } from 'zod';
import { dataDir, readDevnet } from '../devnet-file';
import { bold, EXIT, fail, green, printJson, red } from '../output';
import { callJson } from './client';
import { readKeyFile } from './key-file';

export interface NodeFlags {
  nodeDir?: string;
  key?: string;
  settlement?: string;
  json?: boolean;
}

const destinationSchema = z.object({ kind: z.string(), address: z.string() }).nullable();
const listingSchema = z.object({
  node: z.string(),
  destination: destinationSchema,
  earnings_msat: z.number().int(),
  payouts: z.array(
    z.object({
      payout_id: z.string(),
      state: z.string(),
      hold_msat: z.number().int(),
      statement: z.unknown().nullable(),
    }),
  ),
});

function target(flags: NodeFlags): { base: string; key: Uint8Array; nodeDir: string } {
  const nodeDir = resolve(flags.nodeDir ?? process.env.DATA_DIR ?? './data/node');
  const keyPath = resolve(flags.key ?? process.env.NODE_KEY_FILE ?? join(nodeDir, 'node.key'));
  if (!existsSync(keyPath)) fail('NO_NODE_KEY', `no node key at ${keyPath}`);
  const settlement = flags.settlement ?? process.env.SETTLEMENT_URL ?? readDevnet()?.settlement_url;
  if (!settlement) fail('NO_SETTLEMENT', 'no settlement service to ask');
  return { base: settlement.replace(/\/+$/, ''), key: readKeyFile(keyPath), nodeDir };
}

function signed(base: string, path: string, method: 'GET' | 'PUT', key: Uint8Array, body?: string) {
  return {
    method,
    service: 'settlement',
    ...(body === undefined ? {} : { body }),
    headers: { authorization: createNip98Header(`${base}${path}`, method, body, key) },
  } as const;
}

export async function payoutSet(
  flags: NodeFlags & { lightningAddress?: string; nwc?: string },
): Promise<void> {
  if (Boolean(flags.lightningAddress) === Boolean(flags.nwc))
    fail('BAD_OPTION', 'give exactly one of --lightning-address or --nwc');
  const { base, key } = target(flags);
  const body = JSON.stringify(
    flags.lightningAddress
      ? { kind: 'lightning_address', address: flags.lightningAddress }
      : { kind: 'nwc', uri: flags.nwc },
  );
  const path = '/v1/payouts/destination';
  const answer = await callJson(
    base,
    path,
    z.object({ node: z.string(), destination: destinationSchema }),
    signed(base, path, 'PUT', key, body),
  );
  if (flags.json) return printJson(answer);
  process.stdout.write(
    `${green('payouts go to')} ${answer.destination?.kind} ${answer.destination?.address} (node ${toNpub(answer.node)})\n`,
  );
}

export async function payoutShow(flags: NodeFlags): Promise<void> {
  const { base, key } = target(flags);
  const listing = await callJson(base, '/v1/payouts', listingSchema, signed(base, '/v1/payouts', 'GET', key));
  if (flags.json) return printJson(listing);
  const out = (line: string) => process.stdout.write(`${line}\n`);
  out(bold(`node ${toNpub(listing.node)}`));
  out(
    `  destination  ${listing.destination ? `${listing.destination.kind} ${listing.destination.address}` : 'none (fedai node payout set)'}`,
  );
  out(`  unpaid       ${listing.earnings_msat} msat`);
  if (listing.payouts.length === 0) out('  no payouts yet');
  for (const p of listing.payouts) {
    const paid = payoutStatementSchema.safeParse(
      p.statement ? JSON.parse((p.statement as { content: string }).content) : null,
    );
    const amount = paid.success
      ? `${paid.data.amount_msat} msat paid, fee ${paid.data.fee_msat}`
      : `${p.hold_msat} msat held`;
    out(`  ${p.payout_id}  ${p.state.padEnd(9)}  ${amount}`);
  }
}

/**
 * Every paid statement: the settlement signature (against --settlement-pubkey, else the key its
 * /v1/info names), then each line against the node's own metering log. Exit 4 on any problem.
 */
export async function statementVerify(flags: NodeFlags & { settlementPubkey?: string }): Promise<void> {
  const { base, key, nodeDir } = target(flags);
  const node = publicKeyOf(key);
  const signer =
    flags.settlementPubkey ??
    (await callJson(base, '/v1/info', z.object({ pubkey: z.string() }), { service: 'settlement' })).pubkey;
  const listing = await callJson(base, '/v1/payouts', listingSchema, signed(base, '/v1/payouts', 'GET', key));
  const results: { payout_id: string; ok: boolean; problems: { code: string; detail: string }[] }[] = [];
  for (const p of listing.payouts) {
    if (!p.statement) continue;
    const checked = await verifyEnvelope(JSON.stringify(p.statement), {
      me: node,
      kinds: [KIND.payoutStatement],
      windowS: Number.MAX_SAFE_INTEGER, // statements are checked whenever the node likes
    });
    if (!checked.ok || checked.envelope.pubkey !== signer) {
      const why = checked.ok
        ? `signed by ${checked.envelope.pubkey}, not settlement ${signer}`
        : checked.detail;
      results.push({ payout_id: p.payout_id, ok: false, problems: [{ code: 'BAD_SIGNATURE', detail: why }] });
      continue;
    }
    const statement = checked.payload;
    const wanted = new Set(statement.charges.map((c) => c.metering_id));
    const records = await readMeteringLog(join(nodeDir, 'metering'), node, wanted);
    const problems = checkPayoutStatement(statement, node, records);
    results.push({ payout_id: p.payout_id, ok: problems.length === 0, problems });
  }
  const bad = results.filter((r) => !r.ok);
  if (flags.json) printJson({ node, settlement: signer, statements: results });
  else {
    if (results.length === 0) process.stdout.write('no paid statements yet\n');
    for (const r of results) {
      process.stdout.write(`${r.ok ? green('ok ') : red('BAD')} ${r.payout_id}\n`);
      for (const problem of r.problems) process.stdout.write(`    ${red(problem.code)} ${problem.detail}\n`);
    }
  }
  process.exitCode = bad.length === 0 ? EXIT.ok : EXIT.problemsFound;
}

/** `fedai payouts run` (operators): pays every node whose payable earnings pass the threshold now. */
export async function payoutsRun(flags: {
  settlement?: string;
  operatorKey?: string;
  json?: boolean;
}): Promise<void> {
  const settlement = flags.settlement ?? process.env.SETTLEMENT_URL ?? readDevnet()?.settlement_url;
  if (!settlement) fail('NO_SETTLEMENT', 'no settlement service to ask');
  const keyPath = resolve(flags.operatorKey ?? resolve(dataDir(), 'operator.key'));
  if (!existsSync(keyPath)) fail('NO_OPERATOR_KEY', `no operator key at ${keyPath}`);
  const base = settlement.replace(/\/+$/, '');
  const path = '/v1/admin/payouts/run';
  const body = '{}';
  const answer = await callJson(
    base,
    path,
    z.object({
      outcomes: z.array(
        z.object({
          node: z.string(),
          state: z.string(),
          payout_id: z.string().optional(),
          amount_msat: z.number().int().optional(),
          reason: z.string().optional(),
        }),
      ),
    }),
    {
      method: 'POST',
      service: 'settlement',
      body,
      headers: { authorization: createNip98Header(`${base}${path}`, 'POST', body, readKeyFile(keyPath)) },
      timeoutMs: 300_000,
    },
  );
  if (flags.json) return printJson(answer);
  if (answer.outcomes.length === 0) process.stdout.write('no node has a payout destination\n');
  for (const o of answer.outcomes)
    process.stdout.write(
      `${toNpub(o.node).slice(0, 20)}…  ${o.state.padEnd(9)}  ${o.amount_msat !== undefined ? `${o.amount_msat} msat` : (o.reason ?? '')}\n`,
    );
}
