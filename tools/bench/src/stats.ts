// Small helpers every benchmark shares: repeated runs, median and p99, ratio lines.

function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const index = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[index]!;
}

export function summarize(samples: readonly number[]): {
  median: number;
  p99: number;
  min: number;
  max: number;
} {
  const sorted = [...samples].sort((a, b) => a - b);
  return {
    median: percentile(sorted, 50),
    p99: percentile(sorted, 99),
    min: sorted[0]!,
    max: sorted.at(-1)!,
  };
}

/** Runs `fn` `count` times per round for `rounds` rounds; returns ops/s of each round. */
export function opsPerSecond(fn: (i: number) => void, count: number, rounds: number): number[] {
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < count; i++) fn(i);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    rates.push(count / seconds);
  }
  return rates;
}

export async function opsPerSecondAsync(
  fn: (i: number) => Promise<unknown>,
  count: number,
  rounds: number,
): Promise<number[]> {
  const rates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const start = process.hrtime.bigint();
    for (let i = 0; i < count; i++) await fn(i);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    rates.push(count / seconds);
  }
  return rates;
}

export const fmt = (n: number, digits = 0): string =>
  n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
