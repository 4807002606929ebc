// The newcomer's path through the packages: build, pack, install the three tarballs with npm into an
// app outside the workspace, then run README.md's and docs/sdk.md's TypeScript/JavaScript examples,
// copied from the markdown as written, with plain node against a router and a node started here.
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { type RunningRouter, routerConfigSchema, startRouter } from '@fed-ai/router';
import { SigningNodeDouble } from '../../../services/router/test/signing-node-double';
import { type CodeBlock, codeBlocks, isScript } from '../src/markdown';
import {
  buildAndPack,
  createScratchApp,
  run,
  typecheckExamples,
  workspaceOpenaiVersion,
  writeExample,
} from '../src/scratch';

const repo = resolve(new URL('../../..', import.meta.url).pathname);
const MODEL = 'fedai-demo-noise-v1';
const dir = mkdtempSync(join(tmpdir(), 'fedai-newcomer-test-'));
const app = join(dir, 'app');
const node = new SigningNodeDouble();
let router: RunningRouter;
let apiKey: string;
let tarballs: string[];

const examples: CodeBlock[] = ['README.md', 'docs/sdk.md'].flatMap((file) =>
  codeBlocks(readFileSync(join(repo, file), 'utf8'), file).filter(isScript),
);

before(async () => {
  tarballs = buildAndPack(repo, join(dir, 'packs'));
  createScratchApp(app, tarballs, [`openai@${workspaceOpenaiVersion(repo)}`]);
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: join(dir, 'router'),
      ALLOW_PRIVATE_ENDPOINTS: 'true',
    }),
  );
  await node.start();
  const registered = await node.register(router.url, router.pubkey, MODEL);
  assert.equal(registered.status, 200);
  apiKey = (await router.createApiKey({ name: 'newcomer' })).key;
});

after(async () => {
  try {
    await router?.close();
    await node.stop();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

function env(): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    FEDAI_ROUTER_URL: router.url,
    FEDAI_API_KEY: apiKey,
  };
}

test('the tarballs hold built JavaScript, declarations and a package.json pointing at dist', () => {
  assert.equal(tarballs.length, 3);
  for (const name of ['protocol', 'sdk']) {
    const installed = join(app, 'node_modules/@fed-ai', name);
    const pkg = JSON.parse(readFileSync(join(installed, 'package.json'), 'utf8'));
    assert.deepEqual(pkg.exports, { '.': { types: './dist/index.d.ts', default: './dist/index.js' } });
    assert.equal(pkg.private, undefined);
    assert.deepEqual(pkg.files, ['dist']);
    for (const version of Object.values<string>(pkg.dependencies)) assert.doesNotMatch(version, /workspace:/);
    assert.match(readFileSync(join(installed, 'dist/index.d.ts'), 'utf8'), /export/);
  }
  const cli = JSON.parse(readFileSync(join(app, 'node_modules/@fed-ai/cli/package.json'), 'utf8'));
  assert.deepEqual(cli.bin, { fedai: './bin/fedai.mjs' });
  for (const dep of Object.keys(cli.dependencies)) assert.doesNotMatch(dep, /^@fed-ai\//);
});

test('README.md and docs/sdk.md have examples, and each is complete TypeScript for NodeNext', () => {
  assert.ok(examples.some((b) => b.where.startsWith('README.md')));
  assert.ok(examples.some((b) => b.where.startsWith('docs/sdk.md')));
  examples.forEach((block, i) => {
    writeExample(app, block, `example-${i}`);
  });
  const checked = typecheckExamples(app, repo);
  assert.equal(checked.code, 0, `tsc on the examples:\n${checked.stdout}${checked.stderr}`);
});

for (const [i, block] of examples.entries())
  test(`example ${block.where} (${block.heading}) runs as written with plain node`, async () => {
    const file = writeExample(app, block, `example-${i}`);
    const ran = await run(process.execPath, [file], { cwd: app, env: env(), timeoutMs: 30_000 });
    assert.equal(ran.timedOut, false, `timed out; stdout: ${ran.stdout}`);
    assert.equal(ran.code, 0, ran.stderr);
    assert.equal(ran.stderr, '');
    // The node double answers every request with these tokens.
    assert.match(ran.stdout, /Hello from the double/);
  });

test('the installed fedai runs with plain node: version, models from the router', async () => {
  const fedai = join(app, 'node_modules/.bin/fedai');
  const version = await run(fedai, ['--version'], { cwd: app, env: env(), timeoutMs: 20_000 });
  assert.equal(version.code, 0, version.stderr);
  assert.equal(version.stdout.trim(), '0.1.0');
  const models = await run(fedai, ['models', '--json'], { cwd: app, env: env(), timeoutMs: 20_000 });
  assert.equal(models.code, 0, models.stderr);
  assert.match(models.stdout, new RegExp(MODEL));
});

test('outside a source checkout, fedai up says in one line that it needs one (exit 2)', async () => {
  const fedai = join(app, 'node_modules/.bin/fedai');
  for (const args of [['up'], ['router', 'start'], ['models', 'demo']]) {
    const ran = await run(fedai, args, { cwd: app, env: env(), timeoutMs: 20_000 });
    assert.equal(ran.code, 2, `${args.join(' ')}: ${ran.stdout}${ran.stderr}`);
    assert.equal(ran.stderr.trim().split('\n').length, 1);
    assert.match(ran.stderr, /needs a fed-ai source checkout/);
  }
});
