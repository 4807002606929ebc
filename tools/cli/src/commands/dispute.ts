// `fedai dispute open | show`: disputes of the API key's own charges, through the router's
// dispute routes (POST /v1/disputes, GET /v1/disputes/:id; docs/disputes.md). The evidence is
// the node-signed receipt (as `fedai tab history --json` shows it, or the x-fedai-receipt header's
// value) and, from the native API, the router-signed response envelope.
import { readFileSync, statSync } from 'node:fs';
import { decodeEnvelopeHeader } from '@fed-ai/protocol';
import { z } from 'zod';
import { fail, printJson } from '../output';
import { callJson, type RouterFlags, routerTarget } from './client';

interface DisputeFlags extends RouterFlags {
  json?: boolean;
}

/** The most a file of evidence may hold (settlement bounds a case's evidence to 256 KiB). */
const MAX_FILE_BYTES = 256 * 1024;

const msat = z.number().int().nonnegative();
const caseAnswer = z.looseObject({
  case_id: z.string(),
  charge_op_id: z.string(),
  state: z.string(),
  verdict: z.string().nullable(),
  rule: z.string().nullable(),
  detail: z.string().nullable(),
  refund_msat: msat,
  node_refund_msat: msat,
  router_refund_msat: msat,
});

/** An envelope from a file: its JSON, the header's base64 form, or a charge row holding `receipt`. */
function envelopeFile(path: string, what: string): string {
  let size: number;
  try {
    size = statSync(path).size;
  } catch {
    return fail('BAD_OPTION', `${what} file ${path} cannot be read`);
  }
  if (size > MAX_FILE_BYTES) fail('BAD_OPTION', `${what} file ${path} is over ${MAX_FILE_BYTES} bytes`);
  const text = readFileSync(path, 'utf8').trim();
  let value: unknown;
  try {
    value = JSON.parse(text.startsWith('{') ? text : decodeEnvelopeHeader(text));
  } catch {
    return fail(
      'BAD_OPTION',
      `${what} file ${path} holds neither an envelope (JSON) nor a receipt header value`,
    );
  }
  const row = value as { receipt?: unknown; kind?: unknown };
  if (row && typeof row === 'object' && row.kind === undefined && typeof row.receipt === 'object')
    value = row.receipt; // a charge of `fedai tab history --json`
  return JSON.stringify(value);
}

function keyed(flags: DisputeFlags): { routerUrl: string; headers: Record<string, string> } {
  const target = routerTarget(flags);
  if (!target.apiKey) fail('NO_API_KEY', 'no API key: disputes are of the charges of an API key');
  return { routerUrl: target.routerUrl, headers: { authorization: `Bearer ${target.apiKey}` } };
}

function show(answer: z.infer<typeof caseAnswer>, flags: DisputeFlags): void {
  if (flags.json) {
    printJson(answer);
    return;
  }
  process.stdout.write(
    `case ${answer.case_id} (charge ${answer.charge_op_id}): ${answer.state}\n` +
      `verdict ${answer.verdict ?? '-'} (${answer.rule ?? '-'}): ${answer.detail ?? ''}\n` +
      `refund ${answer.refund_msat} msat (node ${answer.node_refund_msat}, router fee ${answer.router_refund_msat})\n`,
  );
}

export async function disputeOpen(
  flags: DisputeFlags & { receipt: string; response?: string },
): Promise<void> {
  const body = {
    receipt: envelopeFile(flags.receipt, 'receipt'),
    ...(flags.response ? { response: envelopeFile(flags.response, 'response') } : {}),
  };
  const { routerUrl, headers } = keyed(flags);
  const answer = await callJson(routerUrl, '/v1/disputes', caseAnswer, {
    method: 'POST',
    headers,
    body: JSON.stringify(body),
  });
  show(answer, flags);
}

export async function disputeShow(id: string, flags: DisputeFlags): Promise<void> {
  if (!/^dsp_[0-9a-f]{32}$/.test(id)) fail('BAD_OPTION', `"${id}" is not a dispute id (dsp_ and 32 hex)`);
  const { routerUrl, headers } = keyed(flags);
  show(await callJson(routerUrl, `/v1/disputes/${id}`, caseAnswer, { headers }), flags);
}
