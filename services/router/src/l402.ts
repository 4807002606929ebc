// L402 (docs/l402.md): pay per request with a Lightning invoice, no account. A client without
// credentials gets HTTP 402 with a macaroon and a settlement top-up invoice; once paid, it sends
// `Authorization: L402 <macaroon>:<preimage>` and the request draws on the tab bound to the token,
// exactly like any tab (reserve the maximum, charge the node-signed cost, release the rest).
import { createHash, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto';
import { clientKey, readErrorCode, toFedAiError } from '@fed-ai/kit';
import { createNip98Header, FedAiError, type ProviderPrefs } from '@fed-ai/protocol';
// @ts-expect-error the package ships no types; MacaroonModule below types what this file uses.
import macaroonJs from 'macaroon';
import { request as httpRequest } from 'undici';
import { z } from 'zod';
import type { ApiKeyRecord } from './apikeys';
import { type ChatContext, estimatePromptTokens, rankFor } from './chat';
import { candidateMaxCostMsat, type GenerationParams } from './dispatch';

interface Macaroon {
  addFirstPartyCaveat(condition: Uint8Array | string): void;
  exportBinary(): Uint8Array;
  verify(rootKey: Uint8Array, check: (condition: string) => string | null, discharges?: unknown[]): void;
  readonly identifier: Uint8Array;
  readonly caveats: { identifier: Uint8Array }[];
}
interface MacaroonModule {
  newMacaroon(args: { identifier: Uint8Array; location: string; rootKey: Uint8Array }): Macaroon;
  importMacaroon(obj: Uint8Array): Macaroon;
}
const macaroons = macaroonJs as MacaroonModule;

/** The only service a token buys; a token with another `service=` caveat is refused. */
const SERVICE = 'fedai-chat';
/** Identifier layout (as Aperture's): uint16 version 0, payment hash (32 bytes), token id (32 bytes). */
const IDENTIFIER_VERSION = 0;
const IDENTIFIER_BYTES = 2 + 32 + 32;
const MAX_TOKEN_CHARS = 4096;

/**
 * The macaroon root key: HKDF-SHA256 of the router's secret key (salt and info name the use), so
 * it needs no file of its own, is the same on every replica sharing the router key, and rotates
 * with it (rotating the router key voids every outstanding token).
 */
export function l402RootKey(routerSecretKey: Uint8Array): Uint8Array {
  return new Uint8Array(hkdfSync('sha256', routerSecretKey, 'fedai-l402', 'macaroon-root-key-v0', 32));
}

/** A payer's tab name for a token: the token id (random, in the signed identifier). */
const l402Payer = (tokenId: string) => `l402:${tokenId}`;

export interface MintInput {
  rootKey: Uint8Array;
  paymentHash: string;
  tokenId: string;
  expiresAtS: number;
  location?: string;
}

/** A macaroon (binary v2, standard base64) binding the payment hash and the token id. */
export function mintL402Macaroon(input: MintInput): string {
  const identifier = new Uint8Array(IDENTIFIER_BYTES);
  new DataView(identifier.buffer).setUint16(0, IDENTIFIER_VERSION);
  identifier.set(Buffer.from(input.paymentHash, 'hex'), 2);
  identifier.set(Buffer.from(input.tokenId, 'hex'), 34);
  const m = macaroons.newMacaroon({
    identifier,
    location: input.location ?? 'fed-ai',
    rootKey: input.rootKey,
  });
  m.addFirstPartyCaveat(`payment_hash=${input.paymentHash}`);
  m.addFirstPartyCaveat(`service=${SERVICE}`);
  m.addFirstPartyCaveat(`expires=${input.expiresAtS}`);
  return Buffer.from(m.exportBinary()).toString('base64');
}

/** `L402 <token>:<preimage>` or `LSAT <token>:<preimage>`; null when the scheme is another. */
export function parseL402Authorization(
  header: string | undefined,
): { token: string; preimage: string } | null {
  const match = /^(L402|LSAT) +(\S+)$/i.exec(header?.trim() ?? '');
  if (!match) return null;
  const value = match[2] ?? '';
  const colon = value.lastIndexOf(':');
  return colon < 0
    ? { token: value, preimage: '' }
    : { token: value.slice(0, colon), preimage: value.slice(colon + 1) };
}

export interface VerifiedL402 {
  paymentHash: string;
  tokenId: string;
  payer: string;
}

/**
 * Checks a token and preimage: the macaroon verifies with the root key, every caveat holds
 * (unknown caveats fail closed), and sha256(preimage) is the payment hash it binds. Pure; throws
 * reason-coded errors that never carry the token or the preimage.
 */
export function verifyL402(
  rootKey: Uint8Array,
  credentials: { token: string; preimage: string },
  nowS: number,
): VerifiedL402 {
  const bad = (why: string) => new FedAiError('L402_BAD_TOKEN', `The L402 token is not valid: ${why}.`);
  if (credentials.token.length === 0 || credentials.token.length > MAX_TOKEN_CHARS)
    throw bad('missing or too long');
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(credentials.token)) throw bad('not base64');
  let m: Macaroon;
  try {
    m = macaroons.importMacaroon(new Uint8Array(Buffer.from(credentials.token, 'base64')));
  } catch {
    throw bad('not a macaroon');
  }
  const id = m.identifier;
  if (
    id.length !== IDENTIFIER_BYTES ||
    new DataView(id.buffer, id.byteOffset).getUint16(0) !== IDENTIFIER_VERSION
  )
    throw bad('unknown identifier version');
  const paymentHash = Buffer.from(id.subarray(2, 34)).toString('hex');
  const tokenId = Buffer.from(id.subarray(34)).toString('hex');
  let expired = false;
  const check = (condition: string): string | null => {
    const eq = condition.indexOf('=');
    const name = condition.slice(0, eq);
    const value = condition.slice(eq + 1);
    if (name === 'payment_hash') return value === paymentHash ? null : 'another payment hash';
    if (name === 'service') return value === SERVICE ? null : 'another service';
    if (name === 'expires') {
      if (!/^\d{1,12}$/.test(value)) return 'bad expiry';
      if (Number(value) > nowS) return null;
      expired = true;
      return 'expired';
    }
    return 'unknown caveat';
  };
  try {
    m.verify(rootKey, check);
  } catch {
    // The signature is checked after the caveats: report expiry only for a genuine token.
    if (expired && signatureHolds(m, rootKey))
      throw new FedAiError('L402_EXPIRED', 'This L402 token has expired; pay the new invoice.');
    throw bad('its signature or caveats do not hold');
  }
  const conditions = m.caveats.map((c) => Buffer.from(c.identifier).toString('utf8'));
  if (!conditions.some((c) => c.startsWith('expires='))) throw bad('it has no expiry');
  if (!/^[0-9a-fA-F]{64}$/.test(credentials.preimage))
    throw new FedAiError('L402_BAD_PREIMAGE', 'The preimage must be 64 hex characters.');
  const hashed = createHash('sha256').update(Buffer.from(credentials.preimage, 'hex')).digest();
  if (!timingSafeEqual(hashed, Buffer.from(paymentHash, 'hex')))
    throw new FedAiError('L402_BAD_PREIMAGE', "The preimage is not the one of this token's invoice.");
  return { paymentHash, tokenId, payer: l402Payer(tokenId) };
}

/** Whether the macaroon's signature holds, caveats aside (to tell "expired" from "forged"). */
function signatureHolds(m: Macaroon, rootKey: Uint8Array): boolean {
  try {
    m.verify(rootKey, () => null);
    return true;
  } catch {
    return false;
  }
}

/** What a token costs: the request's honest maximum, whole sats up, at least the minimum credit. */
function l402PriceMsat(maxCostMsat: number, minCreditMsat: number): number {
  const wholeSats = Math.ceil(maxCostMsat / 1000) * 1000;
  const price = Math.max(wholeSats, minCreditMsat, 1000);
  if (!Number.isSafeInteger(price))
    throw new FedAiError('INVALID_REQUEST', 'The request is too large to price.');
  return price;
}

function challengeHeader(token: string, bolt11: string): string {
  return `L402 version="0", token="${token}", macaroon="${token}", invoice="${bolt11}"`;
}

/** Challenges issued per client address (IPv6 by /64) in a one-minute window; bounded. */
class ChallengeLimiter {
  private readonly windows = new Map<string, { startMs: number; count: number }>();

  constructor(
    private readonly perMin: number,
    private readonly maxClients = 10_000,
  ) {}

  take(address: string | undefined, nowMs: number): { ok: true } | { ok: false; retryAfterS: number } {
    const key = clientKey(address);
    let w = this.windows.get(key);
    if (!w || nowMs - w.startMs >= 60_000) {
      this.windows.delete(key);
      if (this.windows.size >= this.maxClients) {
        for (const [k, v] of this.windows) if (nowMs - v.startMs >= 60_000) this.windows.delete(k);
        // Still full: drop the oldest entry (Map keeps insertion order).
        if (this.windows.size >= this.maxClients) this.windows.delete(this.windows.keys().next().value!);
      }
      w = { startMs: nowMs, count: 0 };
      this.windows.set(key, w);
    }
    if (w.count >= this.perMin)
      return { ok: false, retryAfterS: Math.max(1, Math.ceil((w.startMs + 60_000 - nowMs) / 1000)) };
    w.count += 1;
    return { ok: true };
  }
}

const topupAnswer = z.object({
  payment_hash: z.string().regex(/^[0-9a-f]{64}$/),
  bolt11: z.string().min(10),
});
const tabAnswer = z.object({
  balance_msat: z.number().int(),
  reserved_msat: z.number().int(),
  charges: z.array(z.unknown()),
});

export interface L402GateOptions {
  routerSecretKey: Uint8Array;
  settlementUrl: string;
  minCreditMsat: number;
  tokenTtlS: number;
  challengesPerIpPerMin: number;
  /** Per-token limits (like an API key's): requests per minute and parallel requests. */
  requestsPerMin: number;
  maxParallel: number;
}

/** The L402 authentication mode of the OpenAI route: verify tokens, issue challenges. */
export class L402Gate {
  private readonly rootKey: Uint8Array;
  private readonly limiter: ChallengeLimiter;

  constructor(private readonly options: L402GateOptions) {
    this.rootKey = l402RootKey(options.routerSecretKey);
    this.limiter = new ChallengeLimiter(options.challengesPerIpPerMin);
  }

  verify(credentials: { token: string; preimage: string }, nowS = Math.floor(Date.now() / 1000)) {
    return verifyL402(this.rootKey, credentials, nowS);
  }

  /** A token's limits, in the shape ApiKeys.admit takes (counted under the token's payer id). */
  limits(payer: string): ApiKeyRecord {
    return {
      id: payer,
      name: 'l402',
      requests_per_min: this.options.requestsPerMin,
      tokens_per_min: 100_000_000,
      max_parallel: this.options.maxParallel,
      budget_msat_per_day: null,
      budget_msat_per_month: null,
      revoked: false,
    };
  }

  get minCreditMsat(): number {
    return this.options.minCreditMsat;
  }

  /**
   * Opens a top-up invoice at settlement for a new token's tab and mints the token: the
   * `WWW-Authenticate` value. Rate-limited per client address (each challenge is an invoice).
   */
  async challenge(clientAddress: string | undefined, maxCostMsat: number): Promise<string> {
    const admitted = this.limiter.take(clientAddress, Date.now());
    if (!admitted.ok)
      throw new FedAiError('RATE_LIMITED', 'Too many L402 challenges from this address.', {
        retry_after_s: admitted.retryAfterS,
      });
    const tokenId = randomBytes(32).toString('hex');
    const amountMsat = l402PriceMsat(maxCostMsat, this.options.minCreditMsat);
    const invoice = topupAnswer.parse(
      await this.settlement('POST', '/v1/topups', { payer: l402Payer(tokenId), amount_msat: amountMsat }),
    );
    const token = mintL402Macaroon({
      rootKey: this.rootKey,
      paymentHash: invoice.payment_hash,
      tokenId,
      expiresAtS: Math.floor(Date.now() / 1000) + this.options.tokenTtlS,
    });
    return challengeHeader(token, invoice.bolt11);
  }

  /**
   * Why a verified token's tab did not cover a request: never credited (the payment is still
   * being credited: retry shortly) or drawn down (TOKEN_SPENT: pay a new challenge).
   */
  async shortfall(payer: string): Promise<FedAiError> {
    const tab = tabAnswer.safeParse(await this.settlement('GET', `/v1/tabs/${encodeURIComponent(payer)}`));
    if (
      tab.success &&
      tab.data.balance_msat === 0 &&
      tab.data.reserved_msat === 0 &&
      tab.data.charges.length === 0
    )
      return new FedAiError('L402_NOT_CREDITED', undefined, { retry_after_s: 2 });
    const balance = tab.success ? ` (${tab.data.balance_msat} msat left)` : '';
    return new FedAiError(
      'TOKEN_SPENT',
      `This L402 token's credit does not cover this request's maximum cost${balance}; pay the new invoice.`,
    );
  }

  private async settlement(method: 'GET' | 'POST', path: string, body?: unknown): Promise<unknown> {
    const url = `${this.options.settlementUrl}${path}`;
    const text = body === undefined ? undefined : JSON.stringify(body);
    let response: Awaited<ReturnType<typeof httpRequest>>;
    try {
      response = await httpRequest(url, {
        method,
        headers: {
          'content-type': 'application/json',
          authorization: createNip98Header(url, method, text, this.options.routerSecretKey),
        },
        ...(text ? { body: text } : {}),
        signal: AbortSignal.timeout(5_000),
      });
    } catch {
      throw new FedAiError('SETTLEMENT_UNAVAILABLE');
    }
    const json = await response.body.json().catch(() => null);
    if (response.statusCode !== 200) throw new FedAiError(readErrorCode(json, 'SETTLEMENT_UNAVAILABLE'));
    return json;
  }
}

/** The reservation runChat would make for these params now: the max over the ranked candidates. */
function l402MaxCostMsat(ctx: ChatContext, params: GenerationParams, provider?: ProviderPrefs): number {
  const ranked = rankFor(
    ctx,
    params.model,
    estimatePromptTokens(params.messages),
    params.max_tokens,
    provider,
  );
  return Math.max(...ranked.map((c) => candidateMaxCostMsat(c, params)));
}

/** Refusals that come with a fresh challenge: no credentials, an expired token, a spent one. */
const CHALLENGED: ReadonlySet<string> = new Set(['PAYMENT_REQUIRED', 'L402_EXPIRED', 'TOKEN_SPENT']);

/**
 * The answer to a refused L402 request: the error, and for the codes that ask for a (new)
 * payment the `WWW-Authenticate` challenge priced for this request. A challenge that cannot be
 * issued (rate limit, settlement down, model not served) answers its own error for a plain
 * PAYMENT_REQUIRED, and the original refusal without a challenge otherwise.
 */
export async function l402Refusal(
  gate: L402Gate,
  ctx: ChatContext,
  error: FedAiError,
  request: {
    clientAddress: string | undefined;
    params: GenerationParams;
    provider?: ProviderPrefs | undefined;
  },
): Promise<{ error: FedAiError; challenge?: string }> {
  if (!CHALLENGED.has(error.code)) return { error };
  try {
    const maxCostMsat = l402MaxCostMsat(ctx, request.params, request.provider);
    const challenge = await gate.challenge(request.clientAddress, maxCostMsat);
    const sats = l402PriceMsat(maxCostMsat, gate.minCreditMsat) / 1000;
    const message =
      error.code === 'PAYMENT_REQUIRED'
        ? `Payment required: pay the invoice in WWW-Authenticate (${sats} sat, a small prepaid credit) and retry with Authorization: L402 <token>:<preimage>.`
        : error.message;
    return { error: new FedAiError(error.code, message), challenge };
  } catch (challengeError) {
    return { error: error.code === 'PAYMENT_REQUIRED' ? toFedAiError(challengeError) : error };
  }
}
