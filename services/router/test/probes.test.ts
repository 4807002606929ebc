import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { routerConfigSchema } from '../src/config';
import { probeAll } from '../src/probes';
import { type RunningRouter, startRouter } from '../src/router';
import { SigningNodeDouble } from './signing-node-double';

const dir = mkdtempSync(join(tmpdir(), 'fedai-probes-'));
let router: RunningRouter;
const alive = new SigningNodeDouble();
const dying = new SigningNodeDouble();

before(async () => {
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: dir,
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      PROBE_INTERVAL_S: '1',
    }),
  );
  for (const n of [alive, dying]) {
    await n.start();
    await n.register(router.url, router.pubkey);
  }
});

after(async () => {
  await router.close();
  await alive.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('active probes open the breaker of a node that stopped answering, before its heartbeat is stale', async () => {
  assert.equal(router.registry.views('double-model').length, 2);
  await dying.stop();
  for (let i = 0; i < 800 && router.registry.views('double-model').length !== 1; i++)
    await new Promise((r) => setTimeout(r, 100));
  const views = router.registry.views('double-model');
  assert.deepEqual(
    views.map((v) => v.id),
    [alive.pubkey],
  );
  assert.equal(router.registry.get(dying.pubkey)!.health.snapshot().state, 'open');
  assert.equal(router.registry.get(alive.pubkey)!.health.snapshot().state, 'closed');
});

test('probeAll: banned nodes are skipped, failures count against the breaker, at most `concurrency` at once', async () => {
  const failures: string[] = [];
  const node = (id: string, banned = false) =>
    ({ id, endpoint: `http://${id}`, banned, health: { recordFailure: () => failures.push(id) } }) as never;
  const targets = { all: () => [node('a'), node('b'), node('c', true), node('d'), node('e')], now: () => 0 };
  let running = 0;
  let most = 0;
  const result = await probeAll(
    targets,
    async (endpoint) => {
      running += 1;
      most = Math.max(most, running);
      await new Promise((r) => setTimeout(r, 5));
      running -= 1;
      if (endpoint === 'http://d') throw new Error('refused');
      return endpoint !== 'http://b';
    },
    2,
  );
  assert.deepEqual(result, { ok: 2, failed: 2 });
  assert.deepEqual(failures.sort(), ['b', 'd']);
  assert.equal(most, 2);
});

test('probeAll: a round aborted by its job (past its timeout) stops between batches', async () => {
  const node = (id: string) =>
    ({ id, endpoint: `http://${id}`, banned: false, health: { recordFailure: () => {} } }) as never;
  const targets = { all: () => [node('a'), node('b'), node('c'), node('d')], now: () => 0 };
  const controller = new AbortController();
  const probed: string[] = [];
  await assert.rejects(
    probeAll(
      targets,
      async (endpoint) => {
        probed.push(endpoint);
        controller.abort(new Error('job timeout'));
        return true;
      },
      2,
      controller.signal,
    ),
    /job timeout/,
  );
  assert.deepEqual(probed, ['http://a', 'http://b'], 'the second batch never starts');
});
