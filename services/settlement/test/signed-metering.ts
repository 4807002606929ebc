// A metering record as a node signs it for a router (tokens from the node's tokenizer, cost at the
// node's price), for tests that charge through settlement's books or routes.
import {
  costMsat,
  createEnvelope,
  type Envelope,
  KIND,
  type MeteringRecord,
  outputSha256,
  type Price,
  promptSha256,
} from '@fed-ai/protocol';

export function signedMetering(input: {
  opId: string;
  router: string;
  nodeKey: Uint8Array;
  tokensIn: number;
  tokensOut: number;
  price: Price;
  output?: string;
}): { record: MeteringRecord; metering: Envelope } {
  const record: MeteringRecord = {
    request_id: input.opId,
    router: input.router,
    model: 'double-model',
    prompt_sha256: promptSha256([{ role: 'user', content: 'hi' }]),
    output_sha256: outputSha256(input.output ?? 'answer'),
    tokens_in: input.tokensIn,
    tokens_out: input.tokensOut,
    ttft_ms: 5,
    wall_ms: 50,
    price: input.price,
    cost_msat: costMsat(input.tokensIn, input.tokensOut, input.price),
    finish_reason: 'stop',
    count_source: 'tokenizer',
  };
  const metering = createEnvelope(KIND.meteringRecord, record, { audience: input.router }, input.nodeKey);
  return { record, metering };
}
