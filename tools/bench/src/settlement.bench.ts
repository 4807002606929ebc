// pnpm bench:settlement — what settlement itself costs per paid request (one reserve + one capture
// with a node-signed metering record), on embedded PGlite, one at a time and at concurrency 16 / 64
// (where group commit can share a transaction). Settlement runs in this process; every envelope and
// metering record is signed before the clock starts, so the CPU measured is settlement's plus a thin
// HTTP client's (node:http, keep-alive). Every answer is checked; the tab's charges must equal
// the signed costs and `ledger verify` must pass.
// Flags: --requests N per level (400) --concurrency 1,16,64 --json FILE.
import { randomUUID } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  costMsat,
  createEnvelope,
  createNip98Header,
  type Envelope,
  generateSecretKey,
  KIND,
  type MeteringRecord,
  outputSha256,
  promptSha256,
  publicKeyOf,
} from '@fed-ai/protocol';
import { settlementConfigSchema, startSettlement } from '@fed-ai/settlement';
import { fmt, summarize } from './stats';

const { values } = parseArgs({
  options: {
    requests: { type: 'string', default: '400' },
    concurrency: { type: 'string', default: '1,16,64' },
    json: { type: 'string' },
  },
});
const requests = Number(values.requests);
const levels = values.concurrency.split(',').map(Number);

const routerKey = generateSecretKey();
const router = publicKeyOf(routerKey);
const nodeKey = generateSecretKey();
const node = publicKeyOf(nodeKey);
const payer = 'bench-payer';
const price = { input_msat_per_1k: 1_000, output_msat_per_1k: 2_000 };
process.env.LOG_LEVEL = 'silent'; // as in production benches: request logs off
const dir = mkdtempSync(join(tmpdir(), 'fedai-bench-settlement-'));
const settlement = await startSettlement(
  settlementConfigSchema.parse({
    SETTLEMENT_PORT: '0',
    DATA_DIR: join(dir, 'settlement'),
    SETTLEMENT_ROUTER_PUBKEYS: router,
    SETTLEMENT_OPERATOR_PUBKEYS: router,
    FAUCET: 'true',
  }),
);
const agent = new Agent({ keepAlive: true, maxSockets: 128 });

/** One HTTP call on the keep-alive agent: status and parsed JSON body. */
function call(
  method: 'GET' | 'POST',
  url: string,
  headers: Record<string, string>,
  body?: string,
): Promise<{ status: number; json: Record<string, unknown> }> {
  return new Promise((done, fail) => {
    const req = httpRequest(url, { method, agent, headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        done({ status: res.statusCode ?? 0, json: JSON.parse(Buffer.concat(chunks).toString()) }),
      );
    });
    req.on('error', fail);
    req.end(body);
  });
}

async function nip98(method: 'GET' | 'POST', path: string, body?: unknown): Promise<Record<string, unknown>> {
  const url = `${settlement.url}${path}`;
  const text = body === undefined ? undefined : JSON.stringify(body);
  const { status, json } = await call(
    method,
    url,
    { 'content-type': 'application/json', authorization: createNip98Header(url, method, text, routerKey) },
    text,
  );
  if (status !== 200) throw new Error(`${path}: ${JSON.stringify(json)}`);
  return json;
}

const invoice = await nip98('POST', '/v1/topups', { payer, amount_msat: 1_000_000_000 });
await nip98('POST', '/v1/faucet/pay', { bolt11: invoice.bolt11 });

function op(payload: unknown): string {
  const envelope = createEnvelope(
    KIND.settlementRequest,
    payload as never,
    { audience: settlement.pubkey, tags: [['nonce', randomUUID()]] },
    routerKey,
  );
  return JSON.stringify(envelope);
}

/** A request's two envelopes, signed ahead: its reserve and its capture (with the node's record). */
function prepare(): { reserve: string; capture: string; costMsat: number } {
  const opId = `rq-${randomUUID()}`;
  const record: MeteringRecord = {
    request_id: opId,
    router,
    model: 'bench-model',
    prompt_sha256: promptSha256([{ role: 'user', content: 'hi' }]),
    output_sha256: outputSha256('answer'),
    tokens_in: 20,
    tokens_out: 16,
    ttft_ms: 1,
    wall_ms: 2,
    price,
    cost_msat: costMsat(20, 16, price),
    finish_reason: 'stop',
    count_source: 'tokenizer',
  };
  const metering: Envelope = createEnvelope(KIND.meteringRecord, record, { audience: router }, nodeKey);
  return {
    reserve: op({ op: 'reserve', op_id: opId, account: payer, amount_msat: 5_000, timeout_s: 600 }),
    capture: op({
      op: 'capture',
      op_id: opId,
      amount_msat: record.cost_msat,
      node,
      metering: JSON.stringify(metering),
    }),
    costMsat: record.cost_msat,
  };
}

async function post(body: string): Promise<void> {
  const { status, json } = await call(
    'POST',
    `${settlement.url}/v1/ops`,
    { 'content-type': 'application/json' },
    body,
  );
  if (status !== 200 || json.ok !== true) throw new Error(`op: ${JSON.stringify(json)}`);
}

let chargedExpectedMsat = 0;
const rows: Record<string, unknown>[] = [];
for (const concurrency of [...levels, ...levels]) {
  const prepared = Array.from({ length: requests }, prepare);
  const latencies: number[] = [];
  let next = 0;
  const cpu0 = process.cpuUsage();
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < prepared.length) {
        const p = prepared[next++]!;
        const started = performance.now();
        await post(p.reserve);
        latencies.push(performance.now() - started);
        await post(p.capture);
        chargedExpectedMsat += p.costMsat;
      }
    }),
  );
  const wallMs = performance.now() - t0;
  const cpu = process.cpuUsage(cpu0);
  const s = summarize(latencies);
  const row = {
    concurrency,
    requests,
    reserve_p50_ms: s.median,
    reserve_p99_ms: s.p99,
    requests_per_s: (requests * 1000) / wallMs,
    cpu_ms_per_request: (cpu.user + cpu.system) / 1000 / requests,
  };
  rows.push(row);
  console.log(
    `c=${concurrency}: reserve p50 ${fmt(s.median)} ms p99 ${fmt(s.p99)} ms · ${row.requests_per_s.toFixed(0)} paid requests/s · CPU ${row.cpu_ms_per_request.toFixed(2)} ms per request (reserve + capture)`,
  );
}

const tab = (await nip98('GET', `/v1/tabs/${payer}`)) as { balance_msat: number; reserved_msat: number };
const verified = await nip98('GET', '/v1/ledger/verify');
const charged = 1_000_000_000 - tab.balance_msat;
console.log(
  `charged ${charged} msat, signed costs ${chargedExpectedMsat} msat (${charged === chargedExpectedMsat ? 'equal' : 'DIFFERENT'}), reserved left ${tab.reserved_msat}, ledger verify ${JSON.stringify(verified).slice(0, 80)}`,
);
if (values.json) writeFileSync(values.json, JSON.stringify(rows, null, 2));
await settlement.close();
agent.destroy();
rmSync(dir, { recursive: true, force: true });
if (charged !== chargedExpectedMsat || tab.reserved_msat !== 0) process.exit(1);
