// `fedai node ban <id>` against a real router (in process) with two registered signing node
// doubles: the operator's ban (by full id or by the 12-character prefix `fedai nodes` shows) takes
// the node out of serving and refuses its heartbeats; the other node is untouched; an unknown id,
// an ambiguous or too short prefix and a key that is not an operator's are refused with their codes.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { generateSecretKey, publicKeyOf, toNsec } from '@fed-ai/protocol';
import { routerConfigSchema } from '../../../services/router/src/config';
import { type RunningRouter, startRouter } from '../../../services/router/src/router';
import { SigningNodeDouble } from '../../../services/router/test/signing-node-double';
import { builtCli, type ProcessRun, runCollected } from './built-cli';

const dir = mkdtempSync(join(tmpdir(), 'fedai-node-ban-'));
const operatorKey = generateSecretKey();
const operatorKeyFile = join(dir, 'operator.key');
const strangerKeyFile = join(dir, 'stranger.key');
const first = new SigningNodeDouble();
const second = new SigningNodeDouble();
let router: RunningRouter;

before(async () => {
  writeFileSync(operatorKeyFile, toNsec(operatorKey), { mode: 0o600 });
  writeFileSync(strangerKeyFile, toNsec(generateSecretKey()), { mode: 0o600 });
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: join(dir, 'router'),
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      OPERATOR_PUBKEYS: publicKeyOf(operatorKey),
      PROBE_INTERVAL_S: '0',
      // The nodes beat only when a test says so: a slow machine must not age them out of serving.
      HEARTBEAT_TTL_S: '3600',
    }),
  );
  await first.start();
  await second.start();
  assert.equal((await first.register(router.url, router.pubkey)).status, 200);
  assert.equal((await second.register(router.url, router.pubkey)).status, 200);
});

after(async () => {
  await router.close();
  await first.stop();
  await second.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function fedai(args: string[]): Promise<ProcessRun> {
  return runCollected(process.execPath, [await builtCli(), ...args, '--router', router.url], {
    env: { ...process.env, FEDAI_DATA_DIR: dir, FEDAI_ROUTER_URL: '', NO_COLOR: '1' },
  });
}

async function listed(): Promise<Map<string, { banned: boolean; serving: boolean }>> {
  const body = (await (await fetch(`${router.url}/nodes`)).json()) as {
    nodes: { id: string; banned: boolean; serving: boolean }[];
  };
  return new Map(body.nodes.map((n) => [n.id, { banned: n.banned, serving: n.serving }]));
}

async function heartbeat(node: SigningNodeDouble): Promise<{ status: number; code: string }> {
  const response = await node.heartbeat(router.url, router.pubkey);
  const text = await response.text();
  return { status: response.status, code: /"code":"([A-Z_]+)"/.exec(text)?.[1] ?? '' };
}

test('refusals: a stranger key, an unknown id, a prefix that is not hex, matches nothing or is too short; nothing is banned', async () => {
  const stranger = await fedai(['node', 'ban', first.pubkey, '--operator-key', strangerKeyFile]);
  assert.equal(stranger.code, 1, stranger.stderr);
  assert.match(stranger.stderr, /^error: (FORBIDDEN|UNAUTHORIZED): /);

  const unknown = await fedai(['node', 'ban', 'f'.repeat(64), '--operator-key', operatorKeyFile]);
  assert.equal(unknown.code, 1, unknown.stderr);
  assert.match(unknown.stderr, /^error: NOT_FOUND: the router knows no node f{64}/);

  const unknownPrefix = await fedai(['node', 'ban', '00000000zz', '--operator-key', operatorKeyFile]);
  assert.equal(unknownPrefix.code, 2, unknownPrefix.stderr);
  assert.match(unknownPrefix.stderr, /^error: BAD_OPTION: /);

  const noMatch = await fedai(['node', 'ban', '00000000', '--operator-key', operatorKeyFile]);
  assert.equal(noMatch.code, 1, noMatch.stderr);
  assert.match(
    noMatch.stderr,
    /^error: NOT_FOUND: no node registered at \S+ has an id starting with 00000000/,
  );

  const short = await fedai(['node', 'ban', first.pubkey.slice(0, 4), '--operator-key', operatorKeyFile]);
  assert.equal(short.code, 2, short.stderr);
  assert.match(short.stderr, /^error: BAD_OPTION: a node id is 64 hex characters/);

  for (const node of (await listed()).values()) assert.equal(node.banned, false);
});

test('a ban by the prefix `fedai nodes` shows: the node is banned, its heartbeats refused, the other serves', async () => {
  assert.equal((await heartbeat(first)).status, 200, 'heartbeats are taken before the ban');
  const banned = await fedai([
    'node',
    'ban',
    `${first.pubkey.slice(0, 12)}…`,
    '--operator-key',
    operatorKeyFile,
    '--json',
  ]);
  assert.equal(banned.code, 0, banned.stderr);
  assert.deepEqual(JSON.parse(banned.stdout), { id: first.pubkey, banned: true });

  const nodes = await listed();
  assert.deepEqual(nodes.get(first.pubkey), { banned: true, serving: false });
  assert.deepEqual(nodes.get(second.pubkey), { banned: false, serving: true });
  assert.deepEqual(await heartbeat(first), { status: 403, code: 'NODE_BANNED' });
  assert.equal((await heartbeat(second)).status, 200);
  assert.equal((await first.register(router.url, router.pubkey)).status, 403, 'registering again is refused');

  const table = await fedai(['nodes']);
  assert.match(table.stdout, new RegExp(`^${first.pubkey.slice(0, 12)}…\\s+\\S+\\s+banned\\s`, 'm'));

  const byFullId = await fedai(['node', 'ban', second.pubkey, '--operator-key', operatorKeyFile]);
  assert.equal(byFullId.code, 0, byFullId.stderr);
  assert.equal(byFullId.stdout, `banned ${second.pubkey}\n`);
  assert.equal((await listed()).get(second.pubkey)?.banned, true);
});
