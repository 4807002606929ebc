// A seeded, deterministic PRNG (mulberry32: 32-bit state, period 2^32, good enough for a
// simulation's sampling; not for secrets) and the distributions the scenarios use. Same seed, same
// numbers, on every run and platform: only integer ops, Math.imul and fdlibm-backed Math functions.

export type Rng = () => number;

/** mulberry32: a uniform draw in [0, 1). */
export function mulberry32(seed: number): Rng {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}

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
