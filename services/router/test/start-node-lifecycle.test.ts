// A real router and a real node (scripted runner): a refusal that cannot heal (PRIVATE_ENDPOINT)
// stops the node's retries and /ready says why; a stopping node tells the router at once.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, test } from 'node:test';
import { nodeConfigSchema, type RunningNode, startNode } from '@fed-ai/node';
import { ScriptedRunnerDouble } from '../../node/test/runner-double';
import { routerConfigSchema } from '../src/config';
import { type RunningRouter, startRouter } from '../src/router';

const dir = mkdtempSync(join(tmpdir(), 'fedai-node-lifecycle-'));
const running: { close(): Promise<void> }[] = [];
after(async () => {
  for (const r of running.reverse()) await r.close().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

async function router(name: string, allowPrivate: boolean): Promise<RunningRouter> {
  const r = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: join(dir, name),
      ALLOW_PRIVATE_ENDPOINTS: String(allowPrivate),
      PROBE_INTERVAL_S: '0',
    }),
  );
  running.push(r);
  return r;
}

async function node(name: string, routerUrl: string): Promise<RunningNode> {
  const n = await startNode(
    nodeConfigSchema.parse({
      NODE_PORT: '0',
      DATA_DIR: join(dir, name),
      DEMO_MODEL: 'true',
      ROUTER_URLS: routerUrl,
      HEARTBEAT_INTERVAL_S: '1',
    }),
    { runner: new ScriptedRunnerDouble() },
  );
  running.push(n);
  return n;
}

async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  // Generous limit for slow machines; the loop ends as soon as the check holds.
  for (let i = 0; i < 600; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

test('PRIVATE_ENDPOINT is permanent: the node stops retrying, /health stays 200, /ready says not registered', async () => {
  const r = await router('strict-router', false);
  let attempts = 0;
  const original = r.registry.register.bind(r.registry);
  r.registry.register = async (...args) => {
    attempts += 1;
    return original(...args);
  };
  const n = await node('strict-node', r.url);
  let body = '';
  await until(async () => {
    const ready = await fetch(`${n.url}/ready`);
    body = await ready.text();
    return ready.status === 503;
  }, '/ready to refuse');
  assert.match(body, /NOT_READY/);
  assert.match(body, /not registered: every router refused this node \(PRIVATE_ENDPOINT\)/);
  assert.equal((await fetch(`${n.url}/health`)).status, 200);
  const seen = attempts;
  assert.equal(seen, 1);
  // Backoff after a first failure is at most a second here; three seconds would show a retry.
  await new Promise((done) => setTimeout(done, 3_000));
  assert.equal(attempts, seen, 'no retry after a permanent refusal');
});

test('a stopping node sends ready:false: the router stops routing to it at once (TTL is 30 s)', async () => {
  const r = await router('open-router', true);
  const n = await node('leaving-node', r.url);
  // A heartbeat came: the node knows it is registered (it says goodbye only to routers that accepted it).
  await until(
    () => r.registry.all().some((x) => x.id === n.pubkey && x.heartbeat !== undefined),
    'the first heartbeat',
  );
  assert.equal(r.registry.views('double-model').length, 1);
  const record = r.registry.all().find((x) => x.id === n.pubkey)!;
  assert.equal(r.registry.isServing(record), true);
  await n.close();
  const after = r.registry.all().find((x) => x.id === n.pubkey)!;
  assert.equal(after.heartbeat?.ready, false);
  assert.equal(r.registry.isServing(after), false);
  assert.equal(r.registry.views('double-model').length, 0);
});
