// Hand-written SVG charts (no dependency): a line chart and a bar chart with axes, ticks, a title
// and a legend. Pure string building with fixed number formatting, so the same data gives the
// same bytes.

const WIDTH = 760;
const HEIGHT = 360;
const PAD = { left: 70, right: 20, top: 40, bottom: 60 };
const COLOURS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

export interface Series {
  name: string;
  points: readonly (readonly [number, number])[];
  dashed?: boolean;
}

const fmt = (v: number) => (Number.isInteger(v) ? String(v) : v.toFixed(2));

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A readable tick value: 1, 2 or 5 times a power of ten. */
function niceStep(range: number, ticks: number): number {
  const raw = range / ticks || 1;
  const power = 10 ** Math.floor(Math.log10(raw));
  const unit = raw / power;
  return (unit <= 1 ? 1 : unit <= 2 ? 2 : unit <= 5 ? 5 : 10) * power;
}

function shortNumber(v: number): string {
  const abs = Math.abs(v);
  if (abs >= 1e9) return `${fmt(v / 1e9)}G`;
  if (abs >= 1e6) return `${fmt(v / 1e6)}M`;
  if (abs >= 1e4) return `${fmt(v / 1e3)}k`;
  return fmt(Math.round(v * 100) / 100);
}

function frame(title: string, xLabel: string, yLabel: string, body: string): string {
  const h = HEIGHT - PAD.bottom;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${HEIGHT}" viewBox="0 0 ${WIDTH} ${HEIGHT}" font-family="sans-serif" font-size="11">`,
    `<rect width="${WIDTH}" height="${HEIGHT}" fill="#fff"/>`,
    `<text x="${WIDTH / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">${escapeXml(title)}</text>`,
    `<line x1="${PAD.left}" y1="${h}" x2="${WIDTH - PAD.right}" y2="${h}" stroke="#333"/>`,
    `<line x1="${PAD.left}" y1="${PAD.top}" x2="${PAD.left}" y2="${h}" stroke="#333"/>`,
    `<text x="${(PAD.left + WIDTH - PAD.right) / 2}" y="${HEIGHT - 12}" text-anchor="middle">${escapeXml(xLabel)}</text>`,
    `<text x="16" y="${(PAD.top + h) / 2}" text-anchor="middle" transform="rotate(-90 16 ${(PAD.top + h) / 2})">${escapeXml(yLabel)}</text>`,
    body,
    '</svg>',
    '',
  ].join('\n');
}

function yAxis(maxY: number): { scaleY: (v: number) => number; ticks: string; top: number } {
  const step = niceStep(maxY, 5);
  const top = Math.max(step, Math.ceil(maxY / step) * step);
  const h = HEIGHT - PAD.bottom;
  const scaleY = (v: number) => h - (v / top) * (h - PAD.top);
  const parts: string[] = [];
  for (let v = 0; v <= top + step / 2; v += step) {
    const y = scaleY(v).toFixed(1);
    parts.push(
      `<line x1="${PAD.left - 4}" y1="${y}" x2="${WIDTH - PAD.right}" y2="${y}" stroke="#eee"/>`,
      `<text x="${PAD.left - 6}" y="${y}" text-anchor="end" dominant-baseline="middle">${shortNumber(v)}</text>`,
    );
  }
  return { scaleY, ticks: parts.join('\n'), top };
}

function legend(names: readonly string[]): string {
  return names
    .map((name, i) => {
      const x = PAD.left + 10 + i * 130;
      const colour = COLOURS[i % COLOURS.length];
      return `<rect x="${x}" y="${PAD.top - 14}" width="10" height="10" fill="${colour}"/><text x="${x + 14}" y="${PAD.top - 5}">${escapeXml(name)}</text>`;
    })
    .join('\n');
}

export function lineChart(opts: {
  title: string;
  xLabel: string;
  yLabel: string;
  series: readonly Series[];
}): string {
  const all = opts.series.flatMap((s) => s.points);
  const minX = Math.min(0, ...all.map((p) => p[0]));
  const maxX = Math.max(minX + 1e-9, ...all.map((p) => p[0]));
  const { scaleY, ticks } = yAxis(Math.max(1e-9, ...all.map((p) => p[1])));
  const w = WIDTH - PAD.left - PAD.right;
  const scaleX = (v: number) => PAD.left + ((v - minX) / (maxX - minX)) * w;
  const xStep = niceStep(maxX - minX, 6);
  const xTicks: string[] = [];
  for (let v = Math.ceil(minX / xStep) * xStep; v <= maxX + xStep / 1e6; v += xStep)
    xTicks.push(
      `<text x="${scaleX(v).toFixed(1)}" y="${HEIGHT - PAD.bottom + 16}" text-anchor="middle">${shortNumber(v)}</text>`,
    );
  const lines = opts.series.map((s, i) => {
    const d = s.points.map(
      (p, j) => `${j === 0 ? 'M' : 'L'}${scaleX(p[0]).toFixed(1)},${scaleY(p[1]).toFixed(1)}`,
    );
    const dash = s.dashed ? ' stroke-dasharray="4 3"' : '';
    return `<path d="${d.join(' ')}" fill="none" stroke="${COLOURS[i % COLOURS.length]}" stroke-width="1.8"${dash}/>`;
  });
  const body = [ticks, xTicks.join('\n'), lines.join('\n'), legend(opts.series.map((s) => s.name))].join(
    '\n',
  );
  return frame(opts.title, opts.xLabel, opts.yLabel, body);
}

export function barChart(opts: {
  title: string;
  xLabel: string;
  yLabel: string;
  labels: readonly string[];
  values: readonly number[];
  colours?: readonly number[];
}): string {
  const { scaleY, ticks } = yAxis(Math.max(1e-9, ...opts.values));
  const w = WIDTH - PAD.left - PAD.right;
  const slot = w / Math.max(1, opts.values.length);
  const base = HEIGHT - PAD.bottom;
  const labelEvery = Math.max(1, Math.ceil(opts.values.length / 30));
  const bars = opts.values.map((v, i) => {
    const x = PAD.left + i * slot + slot * 0.1;
    const y = scaleY(v);
    const colour = COLOURS[(opts.colours?.[i] ?? 0) % COLOURS.length];
    const label =
      i % labelEvery === 0
        ? `<text x="${(x + slot * 0.4).toFixed(1)}" y="${base + 10}" text-anchor="end" transform="rotate(-45 ${(x + slot * 0.4).toFixed(1)} ${base + 10})" font-size="9">${escapeXml(opts.labels[i] ?? '')}</text>`
        : '';
    return `<rect x="${x.toFixed(1)}" y="${y.toFixed(1)}" width="${(slot * 0.8).toFixed(1)}" height="${(base - y).toFixed(1)}" fill="${colour}"/>${label}`;
  });
  return frame(opts.title, opts.xLabel, opts.yLabel, [ticks, bars.join('\n')].join('\n'));
}
