// The router's NIP-98 signed calls to its settlement service outside the money-op envelopes:
// open a top-up invoice for a payer and read a payer's tab (the NIP-90 bridge), and read the
// operator's money overview (the dashboard).
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

const msat = z.number().int().nonnegative();
const sums = z.object({ count: z.number().int().nonnegative(), balance_msat: msat, reserved_msat: msat });
const MAX_LISTED = 100;
/** Settlement's `GET /v1/admin/overview` (services/settlement/src/overview.ts), checked before it is shown. */
const overviewAnswer = z.object({
  fees: z.object({
    router_fees_msat: msat,
    last_24h: z.object({
      requests: z.number().int().nonnegative(),
      charged_msat: msat,
      node_msat: msat,
      router_msat: msat,
    }),
  }),
  tabs: sums.extend({
    largest: z
      .array(z.object({ payer: z.string().max(200), balance_msat: msat, reserved_msat: msat }))
      .max(MAX_LISTED),
  }),
  payouts: z.object({
    owed: sums,
    recent: z
      .array(
        z.object({
          payout_id: z.string().max(100),
          node: z.string().regex(/^[0-9a-f]{64}$/),
          state: z.enum(['pending', 'succeeded', 'failed']),
          amount_msat: msat,
          fee_msat: msat.nullable(),
          created_at_s: z.number().int().nonnegative(),
        }),
      )
      .max(MAX_LISTED),
  }),
});
export type MoneyOverview = z.infer<typeof overviewAnswer>;

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

  async overview(limit: number): Promise<MoneyOverview> {
    return overviewAnswer.parse(await this.call('GET', `/v1/admin/overview?limit=${limit}`));
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
