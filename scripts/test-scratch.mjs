// The tests' temporary files (os.tmpdir(): PGlite clusters, data directories, logs) in a folder
// on a memory file system, when the machine has one with room. The suite creates and deletes tens
// of thousands of files; on ext4, allocating their inodes alone took ~50 s of CPU per run (perf
// record of the whole suite, session 18), and the run's system time fell from ~200 s to ~110 s.
import { chmodSync, mkdirSync, rmSync, statfsSync } from 'node:fs';
import { join } from 'node:path';
import { removeDeadRunFolders } from './run-folders.mjs';

const MEMORY_FS = '/dev/shm';
const PREFIX = 'fedai-test-';
const TMPFS_MAGIC = 0x01021994;
const MIN_FREE_BYTES = 2 * 1024 ** 3;

/**
 * A new folder `fedai-test-<pid>` under /dev/shm when that is a tmpfs with 2 GiB free, after
 * removing the folders of earlier runs whose process is gone; undefined otherwise, and with
 * FEDAI_TEST_TMPDIR=keep (the tests then use TMPDIR as it is).
 */
export function scratchDir() {
  if (process.env.FEDAI_TEST_TMPDIR === 'keep') return undefined;
  try {
    const fs = statfsSync(MEMORY_FS);
    if (fs.type !== TMPFS_MAGIC || fs.bavail * fs.bsize < MIN_FREE_BYTES) return undefined;
    removeDeadRunFolders(MEMORY_FS, PREFIX);
    const dir = join(MEMORY_FS, `${PREFIX}${process.pid}`);
    rmSync(dir, { recursive: true, force: true });
    mkdirSync(dir);
    // As /tmp: anyone may create files, only their owner may remove them (the PostgreSQL tests
    // run initdb as the postgres user, in a folder they make inside this one).
    chmodSync(dir, 0o1777);
    return dir;
  } catch {
    return undefined;
  }
}
