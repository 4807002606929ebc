// Pure text formatting for humans: aligned tables and exact money amounts (integers only, no floats).

export interface Column {
  header: string;
  /** Numbers read best right-aligned. */
  align?: 'left' | 'right';
}

/** Rows under a header row, every column as wide as its widest cell, two spaces between columns. */
export function formatTable(columns: readonly Column[], rows: readonly (readonly string[])[]): string {
  const widths = columns.map((c, i) => Math.max(c.header.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    columns
      .map((c, i) => {
        const cell = cells[i] ?? '';
        return c.align === 'right' ? cell.padStart(widths[i]!) : cell.padEnd(widths[i]!);
      })
      .join('  ')
      .trimEnd();
  return `${[line(columns.map((c) => c.header)), ...rows.map((r) => line(r))].join('\n')}\n`;
}

/** 1234567 → "1,234,567". Integers only. */
export function groupDigits(n: number): string {
  if (!Number.isSafeInteger(n)) throw new RangeError(`not a safe integer: ${n}`);
  return String(Math.abs(n))
    .replace(/\B(?=(\d{3})+(?!\d))/g, ',')
    .replace(/^/, n < 0 ? '-' : '');
}

/** An msat amount in sat, exactly: 1500 → "1.5", 1 → "0.001", 2000000 → "2,000". */
export function msatAsSat(msat: number): string {
  if (!Number.isSafeInteger(msat)) throw new RangeError(`not a safe integer: ${msat}`);
  const sign = msat < 0 ? '-' : '';
  const abs = Math.abs(msat);
  const fraction = String(abs % 1000)
    .padStart(3, '0')
    .replace(/0+$/, '');
  return `${sign}${groupDigits(Math.floor(abs / 1000))}${fraction ? `.${fraction}` : ''}`;
}

/** A price in msat per 1,000 tokens, per 1k and per 1M tokens, each in msat and sat. */
export function priceText(msatPer1k: number): { per1k: string; per1M: string } {
  const perMillionMsat = msatPer1k * 1000;
  return {
    per1k: `${groupDigits(msatPer1k)} msat (${msatAsSat(msatPer1k)} sat)`,
    per1M: `${groupDigits(perMillionMsat)} msat (${msatAsSat(perMillionMsat)} sat)`,
  };
}

/** How long ago, for a table cell: 850 → "850 ms", 12_000 → "12 s", 180_000 → "3 min". */
export function agoText(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return '-';
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 120_000) return `${Math.round(ms / 1000)} s`;
  return `${Math.round(ms / 60_000)} min`;
}
