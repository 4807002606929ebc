// One seeded PRNG for everything that must repeat a run from a seed: the simulator, chaos
// schedules, the fuzzer, benches and the demo model's weights. Not for secrets.

/**
 * mulberry32 (32-bit state, period 2^32): a uniform draw in [0, 1). The same seed gives the same
 * sequence on every run and platform (integer ops and Math.imul only).
 */
export function mulberry32(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296;
  };
}
