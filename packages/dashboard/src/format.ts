// How the pages write amounts and ages: pure, so tests in Node compare the page's text with them.

/** msat as sats with up to three decimals (integer arithmetic; money is never a float here). */
export function sats(msat: number): string {
  const whole = Math.trunc(msat / 1000);
  const rest = Math.abs(msat % 1000);
  return `${whole.toLocaleString('en')}${rest ? `.${String(rest).padStart(3, '0').replace(/0+$/, '')}` : ''} sat`;
}

export function ago(ms: number): string {
  if (ms < 1000) return 'now';
  const s = Math.floor(ms / 1000);
  if (s < 120) return `${s} s ago`;
  const m = Math.floor(s / 60);
  return m < 120 ? `${m} min ago` : `${Math.floor(m / 60)} h ago`;
}
