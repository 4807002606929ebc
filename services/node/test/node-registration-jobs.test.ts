// The node's registration and heartbeat loop beats as a background job (`node_registration`,
// kit's job-heartbeat.ts) on the node's /metrics: each contact with a router that succeeds
// advances it; a router that answers 503 counts as an error (the loop retries with backoff).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { nodeConfigSchema } from '../src/config';
import { type RunningNode, startNode } from '../src/node';
import { routerPubkey } from './helpers';
import { ScriptedRunnerDouble } from './runner-double';

const dir = mkdtempSync(join(tmpdir(), 'fedai-node-jobs-'));
let node: RunningNode;
let routerDouble: Server;
/** What the router double answers on register and heartbeat. */
let answerStatus = 200;
const contacts: string[] = [];

before(async () => {
  // A router that takes every registration and heartbeat (signatures are the router's tests' business).
  routerDouble = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      contacts.push(`${req.method} ${req.url}`);
      if (req.method === 'GET' && req.url === '/v1/router') {
        res
          .writeHead(200, { 'content-type': 'application/json' })
          .end(JSON.stringify({ pubkey: routerPubkey }));
        return;
      }
      res
        .writeHead(answerStatus, { 'content-type': 'application/json' })
        .end(answerStatus === 200 ? '{}' : '{"error":{"code":"OVERLOADED","message":"busy"}}');
    });
  });
  await new Promise<void>((resolve) => routerDouble.listen(0, '127.0.0.1', resolve));
  const { port } = routerDouble.address() as AddressInfo;
  const config = nodeConfigSchema.parse({
    NODE_PORT: '0',
    DATA_DIR: dir,
    DEMO_MODEL: 'true',
    ROUTER_URLS: '',
    HEARTBEAT_INTERVAL_S: '1',
  });
  node = await startNode(
    { ...config, ROUTER_URLS: [`http://127.0.0.1:${port}`], ROUTER_PUBKEYS: [] },
    { runner: new ScriptedRunnerDouble(['x'], 1) },
  );
});

after(async () => {
  answerStatus = 200;
  await node.close();
  routerDouble.closeAllConnections();
  await new Promise((resolve) => routerDouble.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

/**
 * `name{job_name="node_registration"[,outcome=…],service="node"}` from the node's /metrics; an
 * outcome not counted yet reads 0 (only `success` is exported from the start).
 */
async function sample(name: string, outcome?: string): Promise<number> {
  const text = await (await fetch(`${node.url}/metrics`)).text();
  const labels = `job_name="node_registration"${outcome ? `,outcome="${outcome}"` : ''},service="node"`;
  const line = text.split('\n').find((l) => l.startsWith(`${name}{${labels}} `));
  if (line === undefined && outcome !== undefined && outcome !== 'success') return 0;
  assert.ok(line, `${name}{${labels}} is exported`);
  return Number(line.slice(line.lastIndexOf(' ') + 1));
}

async function until(what: string, probe: () => Promise<boolean>, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await probe())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

test('each router contact beats node_registration; refused heartbeats count as errors', async () => {
  // Registration, then heartbeats every second: the success count and its timestamp advance.
  await until(
    'registered and one heartbeat sent',
    async () => (await sample('fedai_job_runs_total', 'success')) >= 2,
  );
  assert.ok(contacts.includes('POST /v1/nodes/register'), contacts.join(', '));
  assert.ok(contacts.includes('POST /v1/nodes/heartbeat'), contacts.join(', '));
  const successes = await sample('fedai_job_runs_total', 'success');
  const beatAt = await sample('fedai_job_last_success_timestamp_seconds');
  assert.ok(Math.abs(beatAt - Date.now() / 1000) < 60, `last success ${beatAt}`);
  await until(
    'another heartbeat',
    async () =>
      (await sample('fedai_job_runs_total', 'success')) > successes &&
      (await sample('fedai_job_last_success_timestamp_seconds')) > beatAt,
  );
  assert.equal(await sample('fedai_job_overdue'), 0);
  assert.equal(await sample('fedai_job_runs_total', 'error'), 0);

  // The router turns busy: the heartbeats fail and are counted as errors, not successes.
  answerStatus = 503;
  await until('a failed heartbeat', async () => (await sample('fedai_job_runs_total', 'error')) >= 1);
  const failedAt = await sample('fedai_job_last_success_timestamp_seconds');
  const errors = await sample('fedai_job_runs_total', 'error');
  await until(
    'another failed heartbeat',
    async () => (await sample('fedai_job_runs_total', 'error')) > errors,
  );
  assert.equal(
    await sample('fedai_job_last_success_timestamp_seconds'),
    failedAt,
    'no success while refused',
  );
  // It heals: the next contact succeeds again.
  answerStatus = 200;
  const before = await sample('fedai_job_runs_total', 'success');
  await until(
    'heartbeats succeed again',
    async () => (await sample('fedai_job_runs_total', 'success')) > before,
  );
});
