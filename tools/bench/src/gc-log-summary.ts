// Summarises V8's `--trace-gc-nvp` lines in service logs: how often each process collected, how
// long it paused and how much survived and was promoted per young-generation collection. Promotion
// is what a request's data costs when it lives past two scavenges (held across awaits, queued in a
// batch): the paid router promoted ~1 MB per scavenge against the free router's ~0.25 (issue 15).
// Usage: BENCH_NODE_ARGS=--trace-gc-nvp BENCH_KEEP_LOGS=1 pnpm bench:gateway ... ; then
//   pnpm -s bench:gc-log [--last-s 7] <dir>/router-paid.log ...
// --last-s N: only the collections in the log's last N seconds (a single batch at the end).
import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs } from 'node:util';

interface Collection {
  atMs: number;
  young: boolean;
  pauseMs: number;
  survivedBytes: number;
  promotedBytes: number;
  allocatedBytes: number;
}

/** One `--trace-gc-nvp` line, or null for any other line. Pure. */
function parseGcLine(line: string): Collection | null {
  const at = /\s(\d+) ms: pause=/.exec(line);
  const kind = /\sgc=(\S+)/.exec(line)?.[1];
  if (!at || !kind) return null;
  const field = (name: string) => Number(new RegExp(`\\s${name}=([\\d.]+)`).exec(line)?.[1] ?? 0);
  return {
    atMs: Number(at[1]),
    young: kind === 's' || kind === 'mmc',
    pauseMs: field('pause'),
    survivedBytes: field('new_space_survived'),
    promotedBytes: field('promoted'),
    allocatedBytes: field('allocated'),
  };
}

const { values, positionals } = parseArgs({
  options: { 'last-s': { type: 'string' } },
  allowPositionals: true,
});
const lastMs = values['last-s'] === undefined ? Number.POSITIVE_INFINITY : Number(values['last-s']) * 1000;

for (const file of positionals) {
  const all = readFileSync(file, 'utf8')
    .split('\n')
    .map(parseGcLine)
    .filter((c): c is Collection => c !== null);
  const endMs = all.at(-1)?.atMs ?? 0;
  const shown = all.filter((c) => c.atMs > endMs - lastMs);
  const young = shown.filter((c) => c.young);
  const old = shown.filter((c) => !c.young);
  const sum = (cs: Collection[], pick: (c: Collection) => number) => cs.reduce((t, c) => t + pick(c), 0);
  const perYoung = (pick: (c: Collection) => number) =>
    young.length === 0 ? 0 : sum(young, pick) / young.length / 1024;
  process.stdout.write(
    `${basename(file)}: ${young.length} young (${sum(young, (c) => c.pauseMs).toFixed(0)} ms), ` +
      `${old.length} full (${sum(old, (c) => c.pauseMs).toFixed(0)} ms); per young collection: ` +
      `allocated ${perYoung((c) => c.allocatedBytes).toFixed(0)} kB, survived ${perYoung((c) => c.survivedBytes).toFixed(0)} kB, ` +
      `promoted ${perYoung((c) => c.promotedBytes).toFixed(0)} kB\n`,
  );
}
