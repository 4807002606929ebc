// The router's loops beat as background jobs on its /metrics (kit's job-heartbeat.ts): the health
// probes and the federation loops (relay check, announcements, peer prune), wired by startRouter.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import pino from 'pino';
import { routerConfigSchema } from '../src/config';
import { type RunningRouter, startRouter } from '../src/router';

const dir = mkdtempSync(join(tmpdir(), 'fedai-router-jobs-'));
let relay: RunningRelay;
let router: RunningRouter;

before(async () => {
  relay = await startRelay({
    port: 0,
    logger: pino({ level: 'silent' }) as unknown as NonNullable<Parameters<typeof startRelay>[0]>['logger'],
  });
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: dir,
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      PROBE_INTERVAL_S: '1',
      FEDERATION_RELAYS: relay.url,
    }),
  );
});

after(async () => {
  await router.close();
  await relay.close();
  rmSync(dir, { recursive: true, force: true });
});

/** `name{job_name="job"[,outcome="outcome"],service="router"}` from the router's /metrics. */
async function sample(name: string, job: string, outcome?: string): Promise<number | undefined> {
  const text = await (await fetch(`${router.url}/metrics`)).text();
  const labels = `job_name="${job}"${outcome ? `,outcome="${outcome}"` : ''},service="router"`;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('probe rounds and the federation loops are exported as jobs and their beats advance', async () => {
  // Every new job is exported from the start (a zero success count) and not overdue.
  for (const job of [
    'router_health_probes',
    'router_federation_relays',
    'router_federation_announce',
    'router_federation_peer_prune',
  ]) {
    assert.notEqual(await sample('fedai_job_runs_total', job, 'success'), undefined, `${job} exported`);
    assert.equal(await sample('fedai_job_overdue', job), 0, `${job} not overdue`);
  }
  // Probes every second (a round over no nodes still beats); the relay check every 500 ms.
  for (const job of ['router_health_probes', 'router_federation_relays']) {
    let firstSuccesses = 0;
    let firstAt = 0;
    await until(`${job} beats`, async () => {
      firstSuccesses = (await sample('fedai_job_runs_total', job, 'success')) ?? 0;
      firstAt = (await sample('fedai_job_last_success_timestamp_seconds', job)) ?? 0;
      return firstSuccesses >= 1;
    });
    await until(
      `${job} beats again`,
      async () =>
        ((await sample('fedai_job_runs_total', job, 'success')) ?? 0) > firstSuccesses &&
        ((await sample('fedai_job_last_success_timestamp_seconds', job)) ?? 0) > firstAt,
    );
    assert.equal((await sample('fedai_job_runs_total', job, 'timeout')) ?? 0, 0, `${job}: no timeouts`);
  }
});
