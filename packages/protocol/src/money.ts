// Money math on integer millisatoshi. No floats: products go through BigInt so that no
// intermediate value can lose precision, and every rounding rule is stated.
import type { Price } from './payloads';

const MAX = BigInt(Number.MAX_SAFE_INTEGER);

/** Products of non-negative counts are never negative: only the upper end can overflow. */
function toSafe(value: bigint, what: string): number {
  if (value > MAX) throw new RangeError(`${what} out of range: ${value}`);
  return Number(value);
}

function assertCount(n: number, what: string): void {
  if (!Number.isSafeInteger(n) || n < 0)
    throw new RangeError(`${what} must be a non-negative safe integer, got ${n}`);
}

/**
 * Cost of a generation: (tokens_in x input price + tokens_out x output price) / 1000, rounded UP
 * to the next msat, so a node is never paid less than its price and the rounding is at most 1 msat.
 */
export function costMsat(tokensIn: number, tokensOut: number, price: Price): number {
  assertCount(tokensIn, 'tokensIn');
  assertCount(tokensOut, 'tokensOut');
  assertCount(price.input_msat_per_1k, 'input price');
  assertCount(price.output_msat_per_1k, 'output price');
  const milli =
    BigInt(tokensIn) * BigInt(price.input_msat_per_1k) + BigInt(tokensOut) * BigInt(price.output_msat_per_1k);
  return toSafe((milli + 999n) / 1000n, 'cost');
}

/**
 * The most a request can cost: estimated prompt tokens at the input price plus max_tokens (capped
 * by the node's own output limit) at the output price. Because costMsat is monotone in both token
 * counts, any generation within these bounds costs at most this.
 */
export function maxCostMsat(
  estimatedPromptTokens: number,
  maxTokens: number,
  price: Price,
  outputCap?: number,
): number {
  const cappedOut = outputCap === undefined ? maxTokens : Math.min(maxTokens, outputCap);
  return costMsat(estimatedPromptTokens, cappedOut, price);
}

export interface SplitPart<Id extends string = string> {
  id: Id;
  /** Share in basis points (1/10,000). All parts must add up to exactly 10,000. */
  bps: number;
}

/**
 * Splits `amountMsat` into parts by basis points. Each part gets floor(amount x bps / 10,000);
 * the remainder (always < number of parts) goes to the FIRST part. Deterministic, never negative,
 * and the parts sum to the whole.
 */
export function splitMsat<Id extends string>(
  amountMsat: number,
  parts: readonly SplitPart<Id>[],
): Map<Id, number> {
  assertCount(amountMsat, 'amount');
  if (parts.length === 0) throw new RangeError('split needs at least one part');
  let totalBps = 0;
  const seen = new Set<Id>();
  for (const part of parts) {
    if (!Number.isInteger(part.bps) || part.bps < 0 || part.bps > 10_000)
      throw new RangeError(`bad bps ${part.bps}`);
    if (seen.has(part.id)) throw new RangeError(`duplicate part ${part.id}`);
    seen.add(part.id);
    totalBps += part.bps;
  }
  if (totalBps !== 10_000) throw new RangeError(`parts must add up to 10000 bps, got ${totalBps}`);
  const amount = BigInt(amountMsat);
  const shares = new Map<Id, number>();
  let allocated = 0n;
  for (const part of parts) {
    const share = (amount * BigInt(part.bps)) / 10_000n;
    shares.set(part.id, Number(share));
    allocated += share;
  }
  const first = parts[0]!.id;
  shares.set(first, (shares.get(first) ?? 0) + Number(amount - allocated));
  return shares;
}

/**
 * The offload fee on a peer router's cost (floor: the client is never charged a fraction up).
 * Settlement charges it, the offloading router reserves with it.
 */
export function offloadFeeMsat(peerCostMsat: number, feeBps: number): number {
  return Math.floor((peerCostMsat * feeBps) / 10_000);
}

/** Router fee and node earnings of one charge: the node gets the remainder msat. */
export function splitCharge(
  chargeMsat: number,
  routerFeeBps: number,
): { nodeMsat: number; routerMsat: number } {
  const shares = splitMsat(chargeMsat, [
    { id: 'node', bps: 10_000 - routerFeeBps },
    { id: 'router', bps: routerFeeBps },
  ]);
  return { nodeMsat: shares.get('node')!, routerMsat: shares.get('router')! };
}
