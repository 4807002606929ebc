// Settings from .env / fedai.toml / FEDAI_CONFIG under the environment, and the start checks kit
// shares (data folder lock, key files, one-line start errors).
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { generateSecretKey, publicKeyOf, toNpub } from '@fed-ai/protocol';
import { z } from 'zod';
import {
  ConfigError,
  describeStartError,
  httpUrlList,
  layeredConfig,
  loadServiceKey,
  lockDataDir,
  parseConfig,
  publicKeyList,
  StartError,
} from '../src/index';

const root = mkdtempSync(join(tmpdir(), 'fedai-config-file-'));
after(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
function folder(files: Record<string, string>): string {
  const dir = join(root, `case-${++n}`);
  mkdirSync(dir);
  for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
  return dir;
}

const schema = z.object({
  ROUTER_PORT: z.coerce.number().int().min(0).max(65535).default(7000),
  ROUTER_NAME: z.string().default('fedai-router'),
  OPERATOR_PUBKEYS: publicKeyList.default([]),
});
const keys = Object.keys(schema.shape);

function load(dir: string, env: Record<string, string> = {}, flags: Record<string, string> = {}) {
  const layers = layeredConfig('router', keys, { cwd: dir, env, flags });
  return parseConfig(schema, layers.values, layers.sources);
}

test('precedence: flags > environment > .env > fedai.toml > defaults', () => {
  const dir = folder({
    'fedai.toml': '[router]\nROUTER_PORT = 7100\nROUTER_NAME = "from-toml"\n[node]\nNODE_PORT = 1\n',
    '.env': 'ROUTER_NAME=from-dotenv\nSOMETHING_ELSE=ignored\n',
  });
  assert.deepEqual(load(folder({})), {
    ROUTER_PORT: 7000,
    ROUTER_NAME: 'fedai-router',
    OPERATOR_PUBKEYS: [],
  });
  assert.equal(load(dir).ROUTER_PORT, 7100, 'the file beats the default');
  assert.equal(load(dir).ROUTER_NAME, 'from-dotenv', '.env beats fedai.toml');
  assert.equal(load(dir, { ROUTER_PORT: '7200' }).ROUTER_PORT, 7200, 'the environment beats the file');
  assert.equal(load(dir, { ROUTER_PORT: '' }).ROUTER_PORT, 7100, 'an empty variable counts as unset');
  assert.equal(
    load(dir, { ROUTER_PORT: '7200' }, { ROUTER_PORT: '7300' }).ROUTER_PORT,
    7300,
    'flags beat all',
  );
});

test('FEDAI_CONFIG names the one file read; a missing one is refused', () => {
  const dir = folder({
    'fedai.toml': '[router]\nROUTER_PORT = 1\n',
    'other.toml': '[router]\nROUTER_PORT = 2\n',
  });
  assert.equal(load(dir, { FEDAI_CONFIG: 'other.toml' }).ROUTER_PORT, 2);
  assert.throws(
    () => load(dir, { FEDAI_CONFIG: 'nope.toml' }),
    /FEDAI_CONFIG names nope\.toml, which does not exist/,
  );
});

test('an unknown key in a section is refused with one line naming it; other sections are not checked here', () => {
  const dir = folder({ 'fedai.toml': '[router]\nROUTER_PROT = 7100\n' });
  assert.throws(
    () => load(dir),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.variable === 'ROUTER_PROT' &&
      error.message ===
        'config error: fedai.toml [router] ROUTER_PROT is not a router setting — check the spelling or remove it',
  );
  assert.throws(() => load(folder({ 'fedai.toml': '[routr]\nX = 1\n' })), /unknown section \[routr\]/);
  assert.throws(
    () => load(folder({ 'fedai.toml': 'ROUTER_PORT = 1\n' })),
    /ROUTER_PORT is outside a section/,
  );
  assert.throws(() => load(folder({ 'fedai.toml': '[router\n' })), /fedai\.toml is not valid TOML/);
});

test('a bad value is named with the file it came from; lists and npubs are accepted', () => {
  const dir = folder({ 'fedai.toml': '[router]\nROUTER_PORT = "eighty"\n' });
  assert.throws(
    () => load(dir),
    (e: unknown) =>
      e instanceof ConfigError &&
      /ROUTER_PORT is invalid \("eighty" from fedai\.toml \[router\]\)/.test(e.message) &&
      !e.message.includes('\n'),
  );
  const key = publicKeyOf(generateSecretKey());
  const other = publicKeyOf(generateSecretKey());
  const listed = folder({ 'fedai.toml': `[router]\nOPERATOR_PUBKEYS = ["${toNpub(key)}", "${other}"]\n` });
  assert.deepEqual(load(listed).OPERATOR_PUBKEYS, [key, other]);
  assert.throws(() => load(folder({}), { OPERATOR_PUBKEYS: 'npub1notakey' }), /OPERATOR_PUBKEYS is invalid/);
});

test('httpUrlList refuses what is not an http(s) URL', () => {
  assert.deepEqual(httpUrlList.parse('http://a.example, https://b.example'), [
    'http://a.example',
    'https://b.example',
  ]);
  assert.equal(httpUrlList.safeParse('notaurl').success, false);
  assert.equal(httpUrlList.safeParse('ftp://a.example').success, false);
});

test('DATA_DIR lock: a live owner is refused, a dead owner is taken over, release removes it', async () => {
  const dir = join(root, 'locked');
  const lock = lockDataDir(dir);
  assert.equal(readFileSync(join(dir, '.lock'), 'utf8').trim(), String(process.pid));
  lock.release();
  assert.equal(existsSync(join(dir, '.lock')), false);
  // A live process that is not us holds it.
  const child = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 60000)'], { stdio: 'ignore' });
  try {
    writeFileSync(join(dir, '.lock'), `${child.pid}\n`);
    assert.throws(
      () => lockDataDir(dir),
      (e: unknown) =>
        e instanceof StartError &&
        e.code === 'DATA_DIR_IN_USE' &&
        describeStartError(e) ===
          `DATA_DIR_IN_USE: DATA_DIR ${dir} is in use by another process (pid ${child.pid}) — stop it or set DATA_DIR to another folder`,
    );
  } finally {
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
  }
  // Now its pid is dead: the stale lock is taken over.
  const again = lockDataDir(dir);
  assert.equal(readFileSync(join(dir, '.lock'), 'utf8').trim(), String(process.pid));
  again.release();
});

test('key files: an explicitly named missing file is refused unless creation is asked; defaults are created', () => {
  const dataDir = join(root, 'keys', 'router');
  const defaultFile = join(dataDir, 'router.key');
  const elsewhere = join(root, 'elsewhere', 'routr.key');
  assert.throws(
    () => loadServiceKey(undefined, elsewhere, defaultFile),
    (e: unknown) =>
      e instanceof StartError &&
      e.code === 'KEY_FILE_MISSING' &&
      e.message === `ROUTER_KEY_FILE ${elsewhere} does not exist`,
  );
  assert.equal(existsSync(elsewhere), false, 'no identity was minted');
  const created = loadServiceKey(undefined, elsewhere, defaultFile, { create: true });
  assert.deepEqual(
    loadServiceKey(undefined, elsewhere, defaultFile),
    created,
    'the created key is read back',
  );
  loadServiceKey(undefined, undefined, defaultFile);
  assert.ok(existsSync(defaultFile), 'the default key file is created');
  // `fedai up` keeps its keys beside each DATA_DIR (data/router.key next to data/router).
  loadServiceKey(undefined, join(root, 'keys', 'router.key'), defaultFile);
  assert.ok(existsSync(join(root, 'keys', 'router.key')));
});

test('start errors are one line with a code; PGlite aborts name DATA_DIR', () => {
  const aborted = describeStartError(
    new Error('Aborted(). Build with -sASSERTIONS for more info.\n    at abort'),
    {
      dataDir: './data/router',
    },
  );
  assert.match(aborted, /^DB_OPEN_FAILED: .*DATA_DIR \.\/data\/router.*set DATA_DIR to another folder$/);
  const refused = describeStartError(
    new TypeError('fetch failed', {
      cause: Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:1'), { code: 'ECONNREFUSED' }),
    }),
  );
  assert.match(refused, /^UPSTREAM_UNREACHABLE: .*ECONNREFUSED/);
  const other = describeStartError(new Error('first line\n    at somewhere (file.ts:1:1)'));
  assert.equal(other, 'START_FAILED: first line');
});
