// pnpm bench:journal — what one durable append to the router's outbox journal costs: the journal
// as it runs (OutboxJournal, O_DSYNC: one write) against the way it ran before session 20 (a
// write, then an fdatasync), in alternated rounds in one process, on the file system of --dir
// (default: the temporary folder; a router's journal lives in its DATA_DIR).
import { constants, mkdtempSync, rmSync } from 'node:fs';
import { open } from 'node:fs/promises';
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
  },
});
const APPENDS = Number(values.appends);
const ROUNDS = Number(values.rounds);
// A capture's row: its payload carries the node-signed record (~1.5 kB).
const payload = JSON.stringify({ op: 'capture', op_id: 'x'.repeat(64), metering: 'm'.repeat(1400) });

interface Round {
  wallMs: number[];
  cpuMsPerAppend: number;
}

async function timed(append: (i: number) => Promise<void>): Promise<Round> {
  const wallMs: number[] = [];
  const cpu = process.cpuUsage();
  for (let i = 0; i < APPENDS; i++) {
    const started = performance.now();
    await append(i);
    wallMs.push(performance.now() - started);
  }
  const used = process.cpuUsage(cpu);
  return { wallMs, cpuMsPerAppend: (used.user + used.system) / 1000 / APPENDS };
}

async function writeThenSync(dir: string): Promise<Round> {
  const fd = await open(join(dir, 'before'), 'a+', 0o600);
  try {
    return await timed(async (i) => {
      await fd.write(`${JSON.stringify(['a', `op-${i}`, 'capture', payload, 0])}\n`);
      await fd.datasync();
    });
  } finally {
    await fd.close();
  }
}

async function journal(dir: string, round: number): Promise<Round> {
  const j = await OutboxJournal.open(join(dir, `journal-${round}`));
  try {
    return await timed((i) => j.append([{ opId: `op-${i}`, op: 'capture', payload, repeatUntilMs: 0 }]));
  } finally {
    await j.close();
  }
}

const dir = mkdtempSync(join(values.dir, 'fedai-bench-journal-'));
try {
  const runs = { before: [] as Round[], journal: [] as Round[] };
  for (let r = 0; r < ROUNDS; r++) {
    runs.before.push(await writeThenSync(dir));
    runs.journal.push(await journal(dir, r));
  }
  console.log(`journal bench: ${ROUNDS} rounds × ${APPENDS} appends, alternated; ${dir}`);
  console.log(`O_DSYNC on this platform: ${constants.O_DSYNC === undefined ? 'no' : 'yes'}\n`);
  console.log('| append | wall p50 ms | wall p99 ms | CPU ms per append (median of rounds) |');
  console.log('|---|---|---|---|');
  const cpu: Record<string, number> = {};
  for (const [name, rounds] of Object.entries(runs)) {
    const wall = summarize(rounds.flatMap((r) => r.wallMs));
    cpu[name] = summarize(rounds.map((r) => r.cpuMsPerAppend)).median;
    const label = name === 'before' ? 'write + fdatasync (before)' : 'OutboxJournal (O_DSYNC)';
    console.log(`| ${label} | ${fmt(wall.median, 3)} | ${fmt(wall.p99, 3)} | ${fmt(cpu[name]!, 3)} |`);
  }
  console.log(`\nCPU per append, journal / before: ${fmt(cpu.journal! / cpu.before!, 2)}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
