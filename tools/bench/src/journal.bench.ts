// pnpm bench:journal — what one durable append to the router's outbox journal costs: the journal
// as it runs (OutboxJournal: O_DSYNC, appends made while a write is on its way share the next one)
// against a write then an fdatasync per append (before session 20) and one O_DSYNC write per
// append, one at a time (before session 24), with --concurrency appenders at once (a router with
// that many captures in flight), in alternated rounds in one process, on the file system of --dir
// (default: the temporary folder; a router's journal lives in its DATA_DIR).
import { constants, mkdtempSync, rmSync } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { OutboxJournal } from '@fed-ai/router';
import { fmt, summarize } from './stats';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: tmpdir() },
    appends: { type: 'string', default: '1000' },
    rounds: { type: 'string', default: '4' },
    concurrency: { type: 'string', default: '1,16' },
  },
});
const APPENDS = Number(values.appends);
const ROUNDS = Number(values.rounds);
const CONCURRENCY = values.concurrency.split(',').map(Number);
// A capture's row: its payload carries the node-signed record (~1.5 kB).
const payload = JSON.stringify({ op: 'capture', op_id: 'x'.repeat(64), metering: 'm'.repeat(1400) });
const lineOf = (i: number) => `${JSON.stringify(['a', `op-${i}`, 'capture', payload, 0])}\n`;

interface Round {
  wallMs: number[];
  cpuMsPerAppend: number;
}

/** APPENDS appends, `concurrency` at a time; each append's wall time and the CPU per append. */
async function timed(concurrency: number, append: (i: number) => Promise<void>): Promise<Round> {
  const wallMs: number[] = [];
  const cpu = process.cpuUsage();
  let next = 0;
  const worker = async () => {
    while (next < APPENDS) {
      const i = next++;
      const started = performance.now();
      await append(i);
      wallMs.push(performance.now() - started);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  const used = process.cpuUsage(cpu);
  return { wallMs, cpuMsPerAppend: (used.user + used.system) / 1000 / APPENDS };
}

/** Appends one at a time on one file, each its own write (and fdatasync where asked). */
async function oneEach(path: string, flags: string | number, sync: boolean, concurrency: number) {
  const fd: FileHandle = await open(path, flags, 0o600);
  let tail: Promise<void> = Promise.resolve();
  try {
    return await timed(concurrency, (i) => {
      tail = tail.then(async () => {
        await fd.write(lineOf(i));
        if (sync) await fd.datasync();
      });
      return tail;
    });
  } finally {
    await fd.close();
  }
}

async function journal(path: string, concurrency: number): Promise<Round> {
  const j = await OutboxJournal.open(path);
  try {
    return await timed(concurrency, (i) =>
      j.append([{ opId: `op-${i}`, op: 'capture', payload, repeatUntilMs: 0 }]),
    );
  } finally {
    await j.close();
  }
}

const DSYNC_FLAGS =
  constants.O_DSYNC === undefined
    ? 'a+'
    : constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_DSYNC;
const ways = {
  'write + fdatasync (before session 20)': (p: string, c: number) => oneEach(p, 'a+', true, c),
  'O_DSYNC, one write each (before session 24)': (p: string, c: number) =>
    oneEach(p, DSYNC_FLAGS, constants.O_DSYNC === undefined, c),
  'OutboxJournal (O_DSYNC, group commit)': journal,
};

const dir = mkdtempSync(join(values.dir, 'fedai-bench-journal-'));
try {
  console.log(`journal bench: ${ROUNDS} rounds × ${APPENDS} appends, alternated; ${dir}`);
  console.log(`O_DSYNC on this platform: ${constants.O_DSYNC === undefined ? 'no' : 'yes'}\n`);
  console.log('| concurrency | append | wall p50 ms | wall p99 ms | CPU ms per append (median of rounds) |');
  console.log('|---|---|---|---|---|');
  for (const concurrency of CONCURRENCY) {
    const runs = new Map<string, Round[]>(Object.keys(ways).map((name) => [name, []]));
    for (let r = 0; r < ROUNDS; r++)
      for (const [w, [name, run]] of Object.entries(ways).entries())
        runs.get(name)!.push(await run(join(dir, `${w}-${concurrency}-${r}`), concurrency));
    for (const [name, rounds] of runs) {
      const wall = summarize(rounds.flatMap((r) => r.wallMs));
      const cpu = summarize(rounds.map((r) => r.cpuMsPerAppend)).median;
      console.log(
        `| ${concurrency} | ${name} | ${fmt(wall.median, 3)} | ${fmt(wall.p99, 3)} | ${fmt(cpu, 3)} |`,
      );
    }
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
