// The distributions the scenarios use, over a seeded PRNG (the protocol's mulberry32; not for
// secrets). Same seed, same
// numbers, on every run and platform: only integer ops, Math.imul and fdlibm-backed Math functions.

import { mulberry32 } from '@fed-ai/protocol';

export type Rng = () => number;

/** The protocol's mulberry32 (one PRNG for simulator, chaos, fuzz and the demo model). */
export { mulberry32 };

/** Derives an independent stream's seed from a base seed and a label (splitmix32 over FNV-1a). */
export function deriveSeed(seed: number, label: string): number {
  let h = 0x811c9dc5 ^ (seed >>> 0);
  for (let i = 0; i < label.length; i++) h = Math.imul(h ^ label.charCodeAt(i), 0x01000193);
  h = (h + 0x9e3779b9) >>> 0;
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

/** Exponential draw with the given mean (inter-arrival times of a Poisson process). */
export function exponential(rng: Rng, mean: number): number {
  return -Math.log(1 - rng()) * mean;
}

/** Standard normal draw (Box-Muller; one of the pair is dropped to keep the stream simple). */
function normal(rng: Rng): number {
  const u = 1 - rng();
  const v = rng();
  return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * v);
}

/** Lognormal draw given its median and the sigma of the underlying normal. */
export function lognormal(rng: Rng, median: number, sigma: number): number {
  return sigma === 0 ? median : median * Math.exp(sigma * normal(rng));
}

/** Whole-number lognormal draw clamped to [min, max]. */
export function lognormalInt(rng: Rng, median: number, sigma: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, Math.round(lognormal(rng, median, sigma))));
}

/** Index drawn with probability proportional to `weights` (all >= 0, sum > 0). */
export function weightedIndex(rng: Rng, weights: readonly number[], total: number): number {
  let x = rng() * total;
  for (let i = 0; i < weights.length; i++) {
    x -= weights[i]!;
    if (x < 0) return i;
  }
  return weights.length - 1;
}
