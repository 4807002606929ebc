// A freshly initialised PGlite cluster, kept as a tarball, so that creating another empty database
// loads it (~0.6 s here) instead of running initdb again (~3 s of CPU). Only where the operator or
// the test runner names a folder for it (`FEDAI_PGLITE_TEMPLATE_DIR`): the folder must belong to
// this user and be writable by nobody else, since whatever it holds becomes a database's catalogs.
// The tarball is taken right after initdb, before any query of ours, and named by PGlite's version.
import { existsSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { PGlite } from '@electric-sql/pglite';
import { extract } from 'tar';

const ENV = 'FEDAI_PGLITE_TEMPLATE_DIR';

function pgliteVersion(): string {
  const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  for (let dir = dirname(entry); dir !== dirname(dir); dir = dirname(dir)) {
    const manifest = join(dir, 'package.json');
    if (!existsSync(manifest)) continue;
    const parsed = JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string; version?: string };
    if (parsed.name === '@electric-sql/pglite' && parsed.version) return parsed.version;
  }
  return 'unknown';
}

/** The template's path when the folder is configured and safe; undefined otherwise. */
function templatePath(): string | undefined {
  const dir = process.env[ENV];
  if (!dir) return undefined;
  try {
    const stat = statSync(dir);
    const ownUser = typeof process.getuid !== 'function' || stat.uid === process.getuid();
    if (!stat.isDirectory() || !ownUser || (stat.mode & 0o022) !== 0) return undefined;
  } catch {
    return undefined;
  }
  return join(dir, `pglite-${pgliteVersion()}.tar`);
}

/** A database folder nothing was written to yet (or memory). */
export function isNewDataDir(dataDir: string | undefined): boolean {
  if (!dataDir || dataDir.startsWith('memory://')) return true;
  try {
    return readdirSync(dataDir).length === 0;
  } catch {
    return true;
  }
}

/** The saved fresh cluster, when there is one to load. */
export function readTemplate(): Blob | undefined {
  const path = templatePath();
  if (!path || !existsSync(path)) return undefined;
  try {
    return new Blob([readFileSync(path)]);
  } catch {
    return undefined;
  }
}

/**
 * Writes the saved fresh cluster's files into `dataDir` (an empty folder) with node-tar, so
 * PGlite opens it as an existing database: ~0.3 s of CPU instead of ~1 s for loading the tarball
 * through PGlite's emulated file system onto disk. The files are the same bytes. False, with the
 * folder emptied again, when there is no template or it is anything but plain files and folders
 * inside the data folder (the caller then loads it, or runs initdb, as before).
 */
export function extractTemplate(dataDir: string): boolean {
  const path = templatePath();
  if (!path || !existsSync(path)) return false;
  let refused = false;
  try {
    extract({
      file: path,
      cwd: dataDir,
      sync: true,
      // Links, devices and names that would leave the folder are refused; PGlite's archive names
      // start with "/", which node-tar strips (an info, not a refusal).
      filter: (_name, entry) => {
        const plain = 'type' in entry && (entry.type === 'File' || entry.type === 'Directory');
        if (!plain) refused = true;
        return plain;
      },
      onwarn: (code) => {
        if (code !== 'TAR_ENTRY_INFO') refused = true;
      },
    });
    if (!refused && existsSync(join(dataDir, 'PG_VERSION'))) return true;
  } catch {
    // A truncated or unreadable archive: as refused.
  }
  for (const name of readdirSync(dataDir)) rmSync(join(dataDir, name), { recursive: true, force: true });
  return false;
}

/** Saves `lite`, just initialised and untouched, as the template (atomically: write, then rename). */
export async function saveTemplate(lite: PGlite): Promise<void> {
  const path = templatePath();
  if (!path || existsSync(path)) return;
  const tarball = Buffer.from(await (await lite.dumpDataDir('none')).arrayBuffer());
  const temporary = `${path}.${process.pid}.tmp`;
  writeFileSync(temporary, tarball, { mode: 0o600 });
  renameSync(temporary, path);
}
