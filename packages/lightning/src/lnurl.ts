// Lightning addresses (LUD-16) over LNURL-pay (LUD-06): `user@domain` names
// `https://domain/.well-known/lnurlp/user`, whose pay request gives a callback that mints an invoice
// for an amount. What comes back is checked before anyone pays it: the amount is exactly the one
// asked, the invoice commits to the pay request's metadata (its `h` field is sha256 of it, as LUD-06
// requires), and it has not expired. Every answer is size- and time-bounded; the caller passes the
// dispatcher (settlement's refuses private addresses unless the operator allows them).
import { createHash } from 'node:crypto';
import { type Dispatcher, request } from 'undici';
import { z } from 'zod';
import { decodeInvoice } from './bolt11';

const MAX_ANSWER_BYTES = 64 * 1024;
/** LUD-16: the user part is a-z0-9-_.+ ; the domain a host name (a port only for local devnets). */
const ADDRESS = /^([a-z0-9._+-]{1,64})@([a-z0-9.-]{1,253}(?::\d{1,5})?)$/;

export type LnurlFailure =
  | 'LNURL_BAD_ADDRESS'
  | 'LNURL_UNREACHABLE'
  | 'LNURL_REFUSED'
  | 'LNURL_BAD_ANSWER'
  | 'LNURL_AMOUNT_OUT_OF_RANGE'
  | 'LNURL_INVOICE_MISMATCH';

export class LnurlError extends Error {
  constructor(
    readonly code: LnurlFailure,
    message: string,
  ) {
    super(message);
    this.name = 'LnurlError';
  }
}

const payRequestSchema = z.object({
  tag: z.literal('payRequest'),
  callback: z.string().url().max(2048),
  minSendable: z.number().int().positive(),
  maxSendable: z.number().int().positive(),
  metadata: z.string().max(16_384),
});
const callbackAnswerSchema = z.object({ pr: z.string().min(10).max(4096) });
const errorAnswerSchema = z.object({ status: z.literal('ERROR'), reason: z.string().max(500) });

export interface LnurlOptions {
  /** undici dispatcher for every request (e.g. one that refuses private addresses). */
  dispatcher?: Dispatcher;
  /** `http://` instead of `https://` (a devnet on 127.0.0.1 only). */
  allowHttp?: boolean;
  timeoutMs?: number;
  nowS?: () => number;
}

/** Parses `user@domain`; throws LnurlError LNURL_BAD_ADDRESS. */
export function parseLightningAddress(address: string): { user: string; domain: string } {
  const match = ADDRESS.exec(address.trim().toLowerCase());
  if (!match) throw new LnurlError('LNURL_BAD_ADDRESS', 'expected a Lightning address like name@example.com');
  return { user: match[1]!, domain: match[2]! };
}

async function getJson(url: string, options: LnurlOptions): Promise<unknown> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  let response: Dispatcher.ResponseData;
  try {
    response = await request(url, {
      method: 'GET',
      headers: { accept: 'application/json' },
      signal: AbortSignal.timeout(timeoutMs),
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      ...(options.dispatcher ? { dispatcher: options.dispatcher } : {}),
    });
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new LnurlError(
      'LNURL_UNREACHABLE',
      `${new URL(url).host} gave no answer (${String(code ?? 'error')})`,
    );
  }
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of response.body) {
    size += (chunk as Buffer).length;
    if (size > MAX_ANSWER_BYTES) {
      response.body.destroy();
      throw new LnurlError('LNURL_BAD_ANSWER', `answer over ${MAX_ANSWER_BYTES} bytes`);
    }
    chunks.push(chunk as Buffer);
  }
  let body: unknown = null;
  try {
    body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    body = null;
  }
  const refusal = errorAnswerSchema.safeParse(body);
  if (refusal.success) throw new LnurlError('LNURL_REFUSED', refusal.data.reason);
  if (response.statusCode !== 200)
    throw new LnurlError('LNURL_REFUSED', `${new URL(url).host} answered HTTP ${response.statusCode}`);
  return body;
}

/**
 * A BOLT11 invoice for exactly `amountMsat` from the Lightning address, checked against its pay
 * request (amount, metadata hash, expiry). Throws LnurlError.
 */
export async function invoiceFromLightningAddress(
  address: string,
  amountMsat: number,
  options: LnurlOptions = {},
): Promise<string> {
  const { user, domain } = parseLightningAddress(address);
  const scheme = options.allowHttp ? 'http' : 'https';
  const payRequest = payRequestSchema.safeParse(
    await getJson(`${scheme}://${domain}/.well-known/lnurlp/${encodeURIComponent(user)}`, options),
  );
  if (!payRequest.success) throw new LnurlError('LNURL_BAD_ANSWER', 'not an LNURL-pay request (LUD-06)');
  const { callback, minSendable, maxSendable, metadata } = payRequest.data;
  if (!options.allowHttp && !callback.startsWith('https://'))
    throw new LnurlError('LNURL_BAD_ANSWER', 'the callback is not https');
  if (amountMsat < minSendable || amountMsat > maxSendable)
    throw new LnurlError(
      'LNURL_AMOUNT_OUT_OF_RANGE',
      `${amountMsat} msat is outside ${minSendable}..${maxSendable} msat`,
    );
  const url = new URL(callback);
  url.searchParams.set('amount', String(amountMsat));
  const answer = callbackAnswerSchema.safeParse(await getJson(url.toString(), options));
  if (!answer.success) throw new LnurlError('LNURL_BAD_ANSWER', 'the callback gave no invoice');
  let decoded: ReturnType<typeof decodeInvoice>;
  try {
    decoded = decodeInvoice(answer.data.pr);
  } catch {
    throw new LnurlError('LNURL_BAD_ANSWER', 'the callback gave an invoice that does not decode');
  }
  if (decoded.amountMsat !== amountMsat)
    throw new LnurlError(
      'LNURL_INVOICE_MISMATCH',
      `the invoice is for ${decoded.amountMsat} msat, not ${amountMsat}`,
    );
  const metadataHash = createHash('sha256').update(metadata, 'utf8').digest('hex');
  if (decoded.descriptionHash !== metadataHash)
    throw new LnurlError('LNURL_INVOICE_MISMATCH', 'the invoice does not commit to the pay request metadata');
  const nowS = options.nowS?.() ?? Math.floor(Date.now() / 1000);
  if (decoded.expiresAtS <= nowS + 30)
    throw new LnurlError('LNURL_INVOICE_MISMATCH', 'the invoice has expired or expires within 30 s');
  return answer.data.pr.trim();
}
