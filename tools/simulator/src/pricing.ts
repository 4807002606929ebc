// Node pricing strategies (pure): a fixed price, or "undercut": below a target utilisation cut the
// price by a step (never under a floor), above a high-water mark raise it by the same step.
// Integer msat: a step is applied as floor(price x (10,000 -/+ step) / 10,000), at least 1 msat.
import type { Price } from '@fed-ai/protocol';
import type { PricingSpec } from './scenario';

export function nextPrice(price: Price, utilisation: number, spec: PricingSpec): Price {
  if (spec.strategy === 'fixed') return price;
  if (utilisation < spec.targetUtilisation)
    return {
      input_msat_per_1k: stepDown(price.input_msat_per_1k, spec.stepBps, spec.floorInputMsatPer1k),
      output_msat_per_1k: stepDown(price.output_msat_per_1k, spec.stepBps, spec.floorOutputMsatPer1k),
    };
  if (utilisation > spec.highUtilisation)
    return {
      input_msat_per_1k: stepUp(price.input_msat_per_1k, spec.stepBps),
      output_msat_per_1k: stepUp(price.output_msat_per_1k, spec.stepBps),
    };
  return price;
}

function stepDown(priceMsat: number, stepBps: number, floorMsat: number): number {
  if (priceMsat <= floorMsat) return priceMsat;
  const cut = Math.min(priceMsat - 1, Math.floor((priceMsat * (10_000 - stepBps)) / 10_000));
  return Math.max(floorMsat, cut);
}

function stepUp(priceMsat: number, stepBps: number): number {
  const raised = Math.max(priceMsat + 1, Math.floor((priceMsat * (10_000 + stepBps)) / 10_000));
  return Math.min(1_000_000_000, raised);
}
