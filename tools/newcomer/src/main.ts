// pnpm newcomer: a newcomer's first hour, scripted. Clones this checkout into an empty temp folder,
// runs README's Quickstart (the first command is a long-running network: started, waited for
// data/devnet.json, stopped with SIGINT once the examples ran; the second is the test suite), and
// runs every README/docs TypeScript/JavaScript example (from the packed packages, in an app outside
// the clone) and every shell block marked `runnable` against that network. Prints pass/fail per block.
// Options: --worktree (copy this working tree's uncommitted files over the clone), --skip-suite
// (leave out `pnpm test`), --keep (keep the temp folder).
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { type CodeBlock, codeBlocks, isScript } from './markdown';
import { buildAndPack, createScratchApp, run, workspaceOpenaiVersion, writeExample } from './scratch';

const { values: flags } = parseArgs({
  options: {
    worktree: { type: 'boolean', default: false },
    'skip-suite': { type: 'boolean', default: false },
    keep: { type: 'boolean', default: false },
  },
});
const source = resolve(new URL('../../..', import.meta.url).pathname);
const work = mkdtempSync(join(tmpdir(), 'fedai-newcomer-'));
const clone = join(work, 'fed-ai');
const results: { name: string; ok: boolean; seconds: number; detail: string }[] = [];
let network: ChildProcess | undefined;

function say(line: string): void {
  process.stdout.write(`› ${line}\n`);
}

async function step(name: string, body: () => Promise<string> | string): Promise<boolean> {
  const started = performance.now();
  say(name);
  let ok = true;
  let detail = '';
  try {
    detail = await body();
  } catch (error) {
    ok = false;
    detail = error instanceof Error ? error.message : String(error);
  }
  const seconds = (performance.now() - started) / 1000;
  results.push({ name, ok, seconds, detail });
  process.stdout.write(
    `  ${ok ? 'PASS' : 'FAIL'} ${seconds.toFixed(1)} s${detail ? `: ${firstLines(detail)}` : ''}\n`,
  );
  return ok;
}

function firstLines(text: string, count = 6): string {
  return text
    .trim()
    .split('\n')
    .slice(0, count)
    .map((line) => (line.length > 160 ? `${line.slice(0, 160)}…` : line))
    .join('\n    ');
}

function sh(command: string, cwd: string): void {
  const ran = spawnSync('bash', ['-c', command], { cwd, stdio: 'inherit' });
  if (ran.status !== 0) throw new Error(`${command} exited ${ran.status}`);
}

/** This checkout's files that git tracks or would track, copied over the clone (uncommitted work). */
function overlayWorktree(): string {
  const listed = spawnSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], {
    cwd: source,
    encoding: 'utf8',
  });
  if (listed.status !== 0) throw new Error(listed.stderr);
  let copied = 0;
  for (const file of listed.stdout.split('\0').filter(Boolean)) {
    const from = join(source, file);
    const to = join(clone, file);
    if (!existsSync(from)) {
      rmSync(to, { force: true });
      continue;
    }
    mkdirSync(dirname(to), { recursive: true });
    copyFileSync(from, to);
    copied++;
  }
  return `${copied} files of the working tree copied over the clone`;
}

function quickstartCommands(readme: string): [string, string] {
  const block = codeBlocks(readme, 'README.md').find((b) => b.heading === 'Quickstart');
  const lines = block?.code.trim().split('\n') ?? [];
  if (lines.length !== 2)
    throw new Error(`README.md's Quickstart block should hold 2 commands, has ${lines.length}`);
  return [lines[0]!, lines[1]!];
}

interface DevnetFacts {
  router_url: string;
  api_key: string;
}

async function startNetwork(command: string): Promise<DevnetFacts> {
  const devnet = join(clone, 'data/devnet.json');
  const log = join(work, 'quickstart-1.log');
  // Own process group: SIGINT reaches pnpm, the CLI and every service, as Ctrl-C in a terminal does.
  network = spawn('bash', ['-c', `(${command}) > '${log}' 2>&1`], { cwd: clone, detached: true });
  const deadline = Date.now() + 300_000;
  while (Date.now() < deadline) {
    if (network.exitCode !== null) throw new Error(`exited ${network.exitCode}; log ${log}`);
    if (existsSync(devnet)) {
      try {
        const facts = JSON.parse(readFileSync(devnet, 'utf8')) as DevnetFacts;
        if (facts.router_url && facts.api_key) return facts;
      } catch {
        // being written
      }
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  throw new Error(`no data/devnet.json within 300 s; log ${log}`);
}

async function stopNetwork(): Promise<string> {
  const child = network;
  network = undefined;
  if (!child?.pid || child.exitCode !== null) return `already exited (${child?.exitCode})`;
  const group = child.pid;
  const exited = new Promise<string>((r) =>
    child.once('exit', (code, signal) => r(signal ?? `exit ${code}`)),
  );
  process.kill(-group, 'SIGINT');
  const timer = setTimeout(() => process.kill(-group, 'SIGKILL'), 30_000);
  const how = await exited;
  clearTimeout(timer);
  // Ctrl-C ends the shell with SIGINT (or 130); any other end, or a process left behind, fails.
  if (!['SIGINT', 'exit 0', 'exit 130'].includes(how)) throw new Error(`ended by ${how}`);
  for (let i = 0; i < 50 && groupAlive(group); i++) await new Promise((r) => setTimeout(r, 200));
  if (groupAlive(group)) {
    process.kill(-group, 'SIGKILL');
    throw new Error('processes of the network were still running 10 s after it ended');
  }
  return `ended by ${how}; no process of the network left`;
}

function groupAlive(group: number): boolean {
  try {
    process.kill(-group, 0);
    return true;
  } catch {
    return false;
  }
}

function docsBlocks(): CodeBlock[] {
  const files = [
    'README.md',
    ...readdirSync(join(clone, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ];
  return files.flatMap((file) => codeBlocks(readFileSync(join(clone, file), 'utf8'), file));
}

async function main(): Promise<void> {
  await step(`git clone ${source} into an empty folder`, () => {
    sh(`git clone --quiet '${source}' '${clone}'`, work);
    return flags.worktree ? overlayWorktree() : '';
  });
  const [first, second] = quickstartCommands(readFileSync(join(clone, 'README.md'), 'utf8'));
  let facts: DevnetFacts | undefined;
  await step(`Quickstart: ${first} (until data/devnet.json)`, async () => {
    facts = await startNetwork(first);
    return `router ${facts.router_url}`;
  });
  const blocks = docsBlocks();
  const scripts = blocks.filter(isScript);
  const shells = blocks.filter((b) => !isScript(b) && b.tags.includes('runnable'));
  const app = join(work, 'app');
  const packed =
    facts !== undefined &&
    (await step('pnpm build, pnpm pack, npm install of the tarballs into a new app', () => {
      const tarballs = buildAndPack(clone, join(work, 'packs'));
      createScratchApp(app, tarballs, [`openai@${workspaceOpenaiVersion(clone)}`]);
      return tarballs.map((t) => t.slice(t.lastIndexOf('/') + 1)).join(', ');
    }));
  const env = {
    ...process.env,
    FEDAI_ROUTER_URL: facts?.router_url ?? '',
    FEDAI_API_KEY: facts?.api_key ?? '',
  };
  for (const [i, block] of scripts.entries())
    await step(`example ${block.where} (${block.heading})`, async () => {
      if (!packed) throw new Error('not run: no network or no packages');
      const ran = await run(process.execPath, [writeExample(app, block, `example-${i}`)], {
        cwd: app,
        env,
        timeoutMs: 60_000,
      });
      if (ran.code !== 0 || ran.stderr !== '') throw new Error(`exit ${ran.code}\n${ran.stderr}`);
      return ran.stdout;
    });
  for (const block of shells)
    await step(`shell ${block.where} (${block.heading})`, async () => {
      if (!facts) throw new Error('not run: no network');
      const ran = await run('bash', ['-e', '-c', block.code], { cwd: clone, env, timeoutMs: 60_000 });
      // curl exits 0 on an HTTP error: an error body fails the block too.
      if (ran.code !== 0 || ran.stdout.includes('"error"'))
        throw new Error(`exit ${ran.code}\n${ran.stdout}${ran.stderr}`);
      return ran.stdout;
    });
  await step('stop the network with SIGINT (Ctrl-C)', stopNetwork);
  if (!flags['skip-suite'])
    await step(`Quickstart: ${second}`, () => {
      sh(second, clone);
      return '';
    });
}

try {
  await main();
} finally {
  if (network) await stopNetwork().catch(() => undefined);
  const failed = results.filter((r) => !r.ok);
  process.stdout.write(`\nnewcomer run: ${results.length - failed.length} passed, ${failed.length} failed\n`);
  for (const r of results)
    process.stdout.write(`  ${r.ok ? 'PASS' : 'FAIL'}  ${r.seconds.toFixed(1).padStart(6)} s  ${r.name}\n`);
  if (flags.keep) process.stdout.write(`kept ${work}\n`);
  else rmSync(work, { recursive: true, force: true });
  process.exitCode = failed.length === 0 ? 0 : 1;
}
