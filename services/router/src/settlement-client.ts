// The router's NIP-98 signed calls to its settlement service outside the money-op envelopes:
// open a top-up invoice for a payer, and read a payer's tab. Used by the NIP-90 bridge.
import { readErrorCode } from '@fed-ai/kit';
import { createNip98Header, FedAiError } from '@fed-ai/protocol';
import { request } from 'undici';
import { z } from 'zod';

const topupAnswer = z.object({
  payment_hash: z.string().regex(/^[0-9a-f]{64}$/),
  bolt11: z.string().min(10).max(4096),
});
const tabAnswer = z.object({
  balance_msat: z.number().int().nonnegative(),
  reserved_msat: z.number().int().nonnegative(),
});

export class SettlementClient {
  constructor(
    private readonly url: string,
    private readonly secretKey: Uint8Array,
    private readonly timeoutMs = 5_000,
  ) {}

  async openTopup(payer: string, amountMsat: number): Promise<z.infer<typeof topupAnswer>> {
    return topupAnswer.parse(await this.call('POST', '/v1/topups', { payer, amount_msat: amountMsat }));
  }

  async tab(payer: string): Promise<z.infer<typeof tabAnswer>> {
    return tabAnswer.parse(await this.call('GET', `/v1/tabs/${encodeURIComponent(payer)}`));
  }

  private async call(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    const url = `${this.url}${path}`;
    const text = body === undefined ? undefined : JSON.stringify(body);
    let response: Awaited<ReturnType<typeof request>>;
    try {
      response = await request(url, {
        method,
        headers: {
          'content-type': 'application/json',
          authorization: createNip98Header(url, method, text, this.secretKey),
        },
        ...(text ? { body: text } : {}),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch {
      throw new FedAiError('SETTLEMENT_UNAVAILABLE');
    }
    const json: unknown = await response.body.json().catch(() => null);
    if (response.statusCode !== 200) throw new FedAiError(readErrorCode(json, 'SETTLEMENT_UNAVAILABLE'));
    return json;
  }
}
