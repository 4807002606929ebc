// How much one payout pays a node, decided from numbers only (payouts.ts does the I/O). Payouts
// are netted: the Lightning routing fee comes out of the node's earnings, so the hold (what leaves
// the earnings account at most) is the invoice amount plus the fee budget, and never more than
// the node's payable earnings.

export interface PayoutInputs {
  /** Spendable balance of the node's earnings account (posted credits − debits − pending debits). */
  availableMsat: number;
  /** node_msat of every charge not yet covered by a payout (including the ones to cover now). */
  uncoveredMsat: number;
  /** node_msat of the charges this payout covers (old enough, no open dispute). */
  coveredMsat: number;
  /** Pay only from this much up (msat). */
  thresholdMsat: number;
  /** The routing fee budget, in basis points of the hold. */
  maxFeeBps: number;
  /** Least fee budget, whatever the amount (a Lightning payment rarely routes for 0). */
  minFeeMsat: number;
}

export type PayoutPlan =
  | {
      pay: true;
      /** What the statement explains: earnings from before these charges, still unpaid. */
      carriedInMsat: number;
      grossMsat: number;
      holdMsat: number;
      /** The invoice's amount: whole satoshis (Lightning addresses and wallets round msat). */
      amountMsat: number;
      /** Most routing fee: hold − amount. */
      maxFeeMsat: number;
    }
  | { pay: false; reason: 'BELOW_THRESHOLD' | 'NOTHING_PAYABLE' };

export function planPayout(input: PayoutInputs): PayoutPlan {
  // Money that is not payable yet (young or disputed charges) stays behind.
  const carriedInMsat = input.availableMsat - input.uncoveredMsat;
  const holdMsat = Math.min(input.availableMsat, input.coveredMsat + carriedInMsat);
  if (holdMsat <= 0) return { pay: false, reason: 'NOTHING_PAYABLE' };
  if (holdMsat < input.thresholdMsat) return { pay: false, reason: 'BELOW_THRESHOLD' };
  const budgetMsat = Math.max(input.minFeeMsat, Math.ceil((holdMsat * input.maxFeeBps) / 10_000));
  const amountMsat = Math.floor((holdMsat - budgetMsat) / 1000) * 1000;
  if (amountMsat <= 0) return { pay: false, reason: 'BELOW_THRESHOLD' };
  return {
    pay: true,
    carriedInMsat: holdMsat - input.coveredMsat,
    grossMsat: input.coveredMsat,
    holdMsat,
    amountMsat,
    maxFeeMsat: holdMsat - amountMsat,
  };
}
