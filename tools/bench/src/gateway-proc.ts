// CPU time of a process from /proc/<pid>/stat (utime + stime, all its threads), in milliseconds,
// and the machine's load average: what `pnpm bench:gateway` reads before and after each batch.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';

const CLOCK_TICKS_PER_S = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

/** Fields after "(comm)": state is the first, ppid the second, utime the 12th, stime the 13th. */
function statFields(pid: number): string[] {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

export function cpuMs(pid: number): number {
  const fields = statFields(pid);
  return ((Number(fields[11]) + Number(fields[12])) * 1000) / CLOCK_TICKS_PER_S;
}

/**
 * A server and its live children (PostgreSQL: the postmaster and its backends, which are its
 * direct children). Children that exited during a batch are missed, so keep connections pooled.
 */
export function cpuMsWithChildren(pid: number): number {
  let total = cpuMs(pid);
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      if (Number(statFields(Number(name))[1]) === pid) total += cpuMs(Number(name));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}

export const loadavg = (): string => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
