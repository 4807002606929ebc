// `fedai --version` and `fedai --help` load only commander and the option wiring: every command's
// implementation (and through it the SDK, zod, settlement...) is imported inside its action.
// Checked by tracing every module the CLI resolves (an ESM resolve hook), not by timing it.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { test } from 'node:test';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const cli = join(root, 'tools/cli/src/main.ts');

/** A `--import` URL that registers a resolve hook appending every resolved URL to $FEDAI_IMPORT_TRACE. */
function traceHook(): string {
  const hooks = `import { appendFileSync } from 'node:fs';
export async function resolve(specifier, context, next) {
  const result = await next(specifier, context);
  appendFileSync(process.env.FEDAI_IMPORT_TRACE, result.url + '\\n');
  return result;
}`;
  const register = `import { register } from 'node:module'; register(${JSON.stringify(`data:text/javascript,${encodeURIComponent(hooks)}`)});`;
  return `data:text/javascript,${encodeURIComponent(register)}`;
}

function tracedRun(args: string[], traceFile: string): Promise<{ code: number | null; stdout: string }> {
  return new Promise((done, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', '--import', traceHook(), cli, ...args], {
      cwd: root,
      env: { ...process.env, FEDAI_IMPORT_TRACE: traceFile, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.once('error', reject);
    child.once('exit', (code) => done({ code, stdout }));
  });
}

test('--version and --help import only commander and the CLI wiring, no command and no workspace package', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-start-'));
  try {
    const runs = await Promise.all(
      [['--version'], ['--help'], ['tab', '--help']].map(async (args, i) => {
        const trace = join(dir, `trace-${i}.txt`);
        const run = await tracedRun(args, trace);
        return { args, run, loaded: [...new Set(readFileSync(trace, 'utf8').trim().split('\n'))] };
      }),
    );
    for (const { args, run, loaded } of runs) {
      assert.equal(run.code, 0, `fedai ${args.join(' ')} exited ${run.code}`);
      // The trace works: it saw the entry point and commander.
      assert.ok(loaded.includes(`file://${cli}`), `trace misses main.ts: ${loaded.join(', ')}`);
      assert.ok(
        loaded.some((u) => u.includes('/commander/')),
        'trace misses commander',
      );
      const ours = loaded.filter((u) => u.startsWith(`file://${root}/`) && !u.includes('/node_modules/'));
      assert.deepEqual(
        ours.map((u) => u.slice(`file://${root}/`.length)).sort(),
        ['tools/cli/src/main.ts', 'tools/cli/src/output.ts'],
        `fedai ${args.join(' ')} loaded more of the project than the wiring`,
      );
      const heavy = loaded.filter((u) =>
        /\/node_modules\/.*\/(zod|@fed-ai|fastify|undici|@electric-sql)\//.test(u),
      );
      assert.deepEqual(heavy, [], `fedai ${args.join(' ')} loaded ${heavy.join(', ')}`);
    }
    assert.match(runs[0]!.run.stdout, /^\d+\.\d+\.\d+\n$/);
    assert.match(runs[1]!.run.stdout, /Commands:[\s\S]*\btab\b/);
    assert.match(runs[2]!.run.stdout, /topup[\s\S]*balance[\s\S]*history[\s\S]*refund/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
