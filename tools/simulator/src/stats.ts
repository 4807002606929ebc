// Bounded statistics for reports: a log-bucketed histogram (percentiles without keeping samples)
// and the Gini coefficient of a distribution. Pure; results are rounded where they are reported.

const RATIO = 1.02;
const LOG_RATIO = Math.log(RATIO);
const MAX_BUCKETS = 2_000;

/** Histogram of non-negative values in buckets 2% wide; percentiles are exact to about 1%. */
export class Histogram {
  private readonly counts = new Map<number, number>();
  count = 0;

  add(value: number): void {
    const index = value < 1 ? 0 : Math.min(MAX_BUCKETS, 1 + Math.floor(Math.log(value) / LOG_RATIO));
    this.counts.set(index, (this.counts.get(index) ?? 0) + 1);
    this.count += 1;
  }

  /** The value below which `q` (0..1) of the samples fall (bucket midpoint); 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const rank = Math.max(1, Math.ceil(q * this.count));
    const indices = [...this.counts.keys()].sort((a, b) => a - b);
    let seen = 0;
    for (const index of indices) {
      seen += this.counts.get(index)!;
      if (seen >= rank) return index === 0 ? 0.5 : RATIO ** (index - 0.5);
    }
    return RATIO ** (indices[indices.length - 1]! - 0.5);
  }
}

/** Gini coefficient of non-negative values: 0 all equal, towards 1 all to one. */
export function gini(values: readonly number[]): number {
  const n = values.length;
  if (n === 0) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  let total = 0;
  let weighted = 0;
  for (let i = 0; i < n; i++) {
    total += sorted[i]!;
    weighted += (i + 1) * sorted[i]!;
  }
  if (total === 0) return 0;
  return (2 * weighted) / (n * total) - (n + 1) / n;
}

/** Lorenz curve points (share of nodes, share of the total) at `points` evenly spaced steps. */
export function lorenz(values: readonly number[], points = 20): { x: number; y: number }[] {
  const sorted = [...values].sort((a, b) => a - b);
  const total = sorted.reduce((s, v) => s + v, 0);
  const out = [{ x: 0, y: 0 }];
  let cumulative = 0;
  let next = 1;
  for (let i = 0; i < sorted.length; i++) {
    cumulative += sorted[i]!;
    while (next <= points && (i + 1) / sorted.length >= next / points) {
      out.push({ x: next / points, y: total === 0 ? next / points : cumulative / total });
      next += 1;
    }
  }
  return out;
}

/** Adds two msat amounts, refusing to leave the safe-integer range. */
export function addMsat(a: number, b: number): number {
  const sum = a + b;
  if (!Number.isSafeInteger(sum)) throw new RangeError(`msat sum out of range: ${a} + ${b}`);
  return sum;
}

export function round(value: number, digits = 3): number {
  const f = 10 ** digits;
  return Math.round(value * f) / f;
}
