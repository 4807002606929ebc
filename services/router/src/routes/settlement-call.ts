// A call from a router route to its settlement service on a client's behalf (tabs, disputes):
// NIP-98 signed by the router's key, time-bounded, and answered as settlement's reason code. The
// transport's own error names settlement's internal address, so only its code is logged.
import { readErrorCode } from '@fed-ai/kit';
import { createNip98Header, FedAiError } from '@fed-ai/protocol';
import type { FastifyRequest } from 'fastify';
import { request as httpRequest } from 'undici';

export interface SettlementTarget {
  settlementUrl: string;
  secretKey: Uint8Array;
}

/** Settlement's JSON answer to `method path`, or its refusal as a FedAiError. */
export async function callSettlement(
  target: SettlementTarget,
  request: FastifyRequest,
  call: { method: 'GET' | 'POST'; path: string; body?: unknown; timeoutMs: number },
): Promise<unknown> {
  const url = `${target.settlementUrl}${call.path}`;
  const text = call.body === undefined ? undefined : JSON.stringify(call.body);
  let response: Awaited<ReturnType<typeof httpRequest>>;
  try {
    response = await httpRequest(url, {
      method: call.method,
      headers: {
        'content-type': 'application/json',
        authorization: createNip98Header(url, call.method, text, target.secretKey),
      },
      ...(text ? { body: text } : {}),
      signal: AbortSignal.timeout(call.timeoutMs),
    });
  } catch (error) {
    request.log.warn({ code: (error as { code?: unknown }).code ?? 'unknown' }, 'settlement unreachable');
    throw new FedAiError('SETTLEMENT_UNAVAILABLE');
  }
  const json = await response.body.json().catch(() => null);
  if (response.statusCode !== 200) {
    const e = (json as { error?: { message?: string } } | null)?.error;
    throw new FedAiError(readErrorCode(json, 'SETTLEMENT_UNAVAILABLE'), e?.message?.slice(0, 500));
  }
  return json;
}
