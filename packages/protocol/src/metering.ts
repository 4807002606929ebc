// Hashes that bind a metering record to the prompt and output it accounts for, without storing
// either. Both sides (node and router/client) compute them the same way.
import { sha256Hex } from './crypto';
import { costMsat } from './money';
import type { ChatMessage, FinishReason, MeteringRecord, Price } from './payloads';

/** sha256 of the canonical JSON of the chat messages: [[role, content, name|null], ...]. */
export function promptSha256(messages: readonly ChatMessage[]): string {
  return sha256Hex(JSON.stringify(messages.map((m) => [m.role, m.content, m.name ?? null])));
}

/** sha256 of the full output text (the concatenation of every streamed delta). */
export function outputSha256(text: string): string {
  return sha256Hex(text);
}

/** One failed field of a metering record: each has its own code. */
export type MeteringProblem =
  | 'METERING_SIGNER'
  | 'METERING_REQUEST_ID'
  | 'METERING_ROUTER'
  | 'METERING_MODEL'
  | 'METERING_PROMPT_HASH'
  | 'METERING_OUTPUT_HASH'
  | 'METERING_PRICE'
  | 'METERING_COST'
  | 'METERING_TOKENS_IN'
  | 'METERING_TOKENS_OUT'
  | 'METERING_FINISH_REASON'
  | 'METERING_OVER_RESERVED';

/** What the checker knows about the request; a field left out is not checked. */
export interface MeteringExpectations {
  /** Public key that signed the record (the node the request went to). */
  signer?: string;
  requestId?: string;
  router?: string;
  model?: string;
  messages?: readonly ChatMessage[];
  /** The output the checker received (the concatenated deltas). */
  outputText?: string;
  price?: Price;
  maxTokensOut?: number;
  /** A sound bound on prompt tokens (promptTokensBound). */
  maxTokensIn?: number;
  finishReason?: FinishReason;
  /** The reservation: the record may never cost more. */
  reservedMsat?: number;
}

export type MeteringCheck = { ok: true } | { ok: false; problems: MeteringProblem[] };

/**
 * The one checker of node-signed metering, used by the router (before it answers), settlement
 * (before it charges) and the SDK (receipts). Pure: the envelope's signature is verified by the
 * caller (verifyEnvelope) and its signer passed as `signerPubkey`.
 */
export function checkMeteringRecord(
  record: MeteringRecord,
  signerPubkey: string,
  expect: MeteringExpectations,
): MeteringCheck {
  const problems: MeteringProblem[] = [];
  const check = (failed: boolean, problem: MeteringProblem) => {
    if (failed) problems.push(problem);
  };
  check(expect.signer !== undefined && signerPubkey !== expect.signer, 'METERING_SIGNER');
  check(expect.requestId !== undefined && record.request_id !== expect.requestId, 'METERING_REQUEST_ID');
  check(expect.router !== undefined && record.router !== expect.router, 'METERING_ROUTER');
  check(expect.model !== undefined && record.model !== expect.model, 'METERING_MODEL');
  check(
    expect.messages !== undefined && record.prompt_sha256 !== promptSha256(expect.messages),
    'METERING_PROMPT_HASH',
  );
  check(
    expect.outputText !== undefined && record.output_sha256 !== outputSha256(expect.outputText),
    'METERING_OUTPUT_HASH',
  );
  check(
    expect.price !== undefined &&
      (record.price.input_msat_per_1k !== expect.price.input_msat_per_1k ||
        record.price.output_msat_per_1k !== expect.price.output_msat_per_1k),
    'METERING_PRICE',
  );
  check(record.cost_msat !== costMsat(record.tokens_in, record.tokens_out, record.price), 'METERING_COST');
  check(expect.maxTokensIn !== undefined && record.tokens_in > expect.maxTokensIn, 'METERING_TOKENS_IN');
  check(expect.maxTokensOut !== undefined && record.tokens_out > expect.maxTokensOut, 'METERING_TOKENS_OUT');
  check(
    expect.finishReason !== undefined && record.finish_reason !== expect.finishReason,
    'METERING_FINISH_REASON',
  );
  check(
    expect.reservedMsat !== undefined && record.cost_msat > expect.reservedMsat,
    'METERING_OVER_RESERVED',
  );
  return problems.length === 0 ? { ok: true } : { ok: false, problems };
}
