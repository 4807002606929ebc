// A real Prometheus (Debian's `prometheus`, which .ci/run installs) scrapes a running router and
// settlement on 127.0.0.1 with the project's alert rules loaded: every target up, the fedai
// metrics the rules and dashboards name are there, and the rules evaluate (the ledger verify
// gauge reads 1, so FedaiLedgerUnbalanced stays inactive).
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, test } from 'node:test';
import { generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { type RunningRouter, routerConfigSchema, startRouter } from '@fed-ai/router';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '@fed-ai/settlement';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'fedai-prom-'));
let settlement: RunningSettlement | undefined;
let router: RunningRouter | undefined;
let prometheus: ChildProcess | undefined;

after(async () => {
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((done) => prometheus!.once('exit', done));
    prometheus.kill('SIGTERM');
    await exited;
  }
  await router?.close();
  await settlement?.close();
  rmSync(dir, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((done) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => done(port));
    });
  });
}

/** Prometheus's binary on PATH (Debian: /usr/bin/prometheus); the test fails without it. */
function prometheusBinary(): string {
  const found = (process.env.PATH ?? '')
    .split(':')
    .map((d) => join(d, 'prometheus'))
    .find((p) => existsSync(p));
  assert.ok(found, 'Prometheus is not installed: apt-get install prometheus (.ci/run does)');
  return found;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const started = Date.now();
  let last: unknown;
  while (Date.now() - started < timeoutMs) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
}

test('a real Prometheus scrapes router and settlement with the alert rules loaded', async () => {
  const binary = prometheusBinary();
  const routerKey = generateSecretKey();
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      SETTLEMENT_KEY: secretKeyHex(generateSecretKey()),
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
      DATA_DIR: join(dir, 'settlement'),
    }),
  );
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      ROUTER_KEY: secretKeyHex(routerKey),
      SETTLEMENT_URL: settlement.url,
      PROBE_INTERVAL_S: '0',
      DATA_DIR: join(dir, 'router'),
    }),
  );
  const target = (url: string) => new URL(url).host;
  const promPort = await freePort();
  copyFileSync(join(root, 'infra/prometheus/alerts.yml'), join(dir, 'alerts.yml'));
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      'rule_files: [alerts.yml]',
      'scrape_configs:',
      `  - { job_name: fedai-router, static_configs: [{ targets: ["${target(router.url)}"] }] }`,
      `  - { job_name: fedai-settlement, static_configs: [{ targets: ["${target(settlement.url)}"] }] }`,
      '',
    ].join('\n'),
  );
  prometheus = spawn(
    binary,
    [
      `--config.file=${join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${join(dir, 'tsdb')}`,
      `--web.listen-address=127.0.0.1:${promPort}`,
    ],
    { stdio: 'ignore' },
  );
  const api = async (path: string) => {
    const response = await fetch(`http://127.0.0.1:${promPort}${path}`);
    return (await response.json()) as { status: string; data: Record<string, unknown> };
  };
  const targets = await until('both targets up', async () => {
    const body = await api('/api/v1/targets');
    const active = (body.data.activeTargets ?? []) as { labels: { job: string }; health: string }[];
    return active.length === 2 && active.every((t) => t.health === 'up') ? active : undefined;
  });
  assert.deepEqual(targets.map((t) => t.labels.job).sort(), ['fedai-router', 'fedai-settlement']);
  const value = async (query: string) =>
    until(query, async () => {
      const body = await api(`/api/v1/query?query=${encodeURIComponent(query)}`);
      const result = (body.data.result ?? []) as { value: [number, string] }[];
      return result.length > 0 ? Number(result[0]!.value[1]) : undefined;
    });
  assert.equal(await value('fedai_router_nodes_serving'), 0, 'no node registered in this test');
  assert.ok((await value('count(fedai_job_runs_total)')) >= 1, 'job heartbeats are exported');
  // The rules loaded from infra/prometheus/alerts.yml are evaluated against the scraped series.
  const rules = await api('/api/v1/rules');
  const names = ((rules.data.groups ?? []) as { rules: { name: string; state?: string }[] }[]).flatMap((g) =>
    g.rules.map((r) => r.name),
  );
  for (const name of ['FedaiLedgerUnbalanced', 'FedaiJobStopped']) assert.ok(names.includes(name), name);
  const alerts = await api('/api/v1/alerts');
  const firing = ((alerts.data.alerts ?? []) as { labels: { alertname: string }; state: string }[]).filter(
    (a) => a.labels.alertname === 'FedaiLedgerUnbalanced',
  );
  assert.deepEqual(firing, [], 'a balanced ledger raises no FedaiLedgerUnbalanced');
});
