// Folders named after the test run that made them (`<prefix><pid>`): a run removes those of runs
// whose process is gone (killed before it could clean up), never another live run's.
import { readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return error.code === 'EPERM';
  }
}

/** Removes `parent/<prefix><pid>` folders whose pid is not a live process (and not this one). */
export function removeDeadRunFolders(parent, prefix) {
  let names;
  try {
    names = readdirSync(parent);
  } catch {
    return;
  }
  for (const name of names) {
    if (!name.startsWith(prefix)) continue;
    const rest = name.slice(prefix.length);
    const pid = /^\d+$/.test(rest) ? Number(rest) : 0;
    if (pid && pid !== process.pid && !alive(pid))
      rmSync(join(parent, name), { recursive: true, force: true });
  }
}
