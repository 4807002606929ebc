// pnpm bench:ledger — ledger transfers/s, one transfer per transaction vs batches of 100, on
// embedded PGlite and on a real PostgreSQL server; then router latency with payments off vs on
// (same node, same process), sequential requests.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type Db, openDb, startPostgres } from '@fed-ai/kit';
import { nodeConfigSchema, startNode } from '@fed-ai/node';
import { generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { routerConfigSchema, startRouter } from '@fed-ai/router';
import {
  ACCOUNT_FLAGS,
  Ledger,
  settlementConfigSchema,
  startSettlement,
  type TransferInput,
} from '@fed-ai/settlement';
import { fmt, summarize } from './stats';

const TRANSFERS = Number(process.env.BENCH_TRANSFERS ?? 2000);

async function ledgerRate(db: Db, label: string): Promise<{ single: number; batched: number }> {
  const ledger = await Ledger.open(db);
  const run = `${label}-${Date.now()}`;
  await ledger.createAccounts([
    { id: `${run}:a` },
    { id: `${run}:b`, flags: ACCOUNT_FLAGS.debitsMustNotExceedCredits },
  ]);
  let started = performance.now();
  for (let i = 0; i < TRANSFERS / 4; i++) {
    await ledger.createTransfers([
      {
        id: `${run}-s-${i}`,
        kind: 'single',
        debitAccountId: `${run}:a`,
        creditAccountId: `${run}:b`,
        amountMsat: 1,
      },
    ]);
  }
  const single = TRANSFERS / 4 / ((performance.now() - started) / 1000);
  started = performance.now();
  for (let i = 0; i < TRANSFERS / 100; i++) {
    const batch: TransferInput[] = Array.from({ length: 100 }, (_, k) => ({
      id: `${run}-b-${i}-${k}`,
      kind: 'single' as const,
      debitAccountId: `${run}:a`,
      creditAccountId: `${run}:b`,
      amountMsat: 1,
    }));
    await ledger.createTransfers(batch);
  }
  const batched = TRANSFERS / ((performance.now() - started) / 1000);
  return { single, batched };
}

const dir = mkdtempSync(join(tmpdir(), 'fedai-bench-ledger-'));
const pg = await startPostgres();
try {
  console.log(`ledger bench: ${TRANSFERS} transfers per mode (node ${process.version})`);
  console.log('| store | transfers/s, 1 per transaction | transfers/s, batches of 100 | batch gain |');
  console.log('|---|---|---|---|');
  for (const [name, open] of [
    ['PGlite (file)', () => openDb({ dataDir: join(dir, 'pglite') })],
    ['PostgreSQL 15', () => openDb({ url: pg.url })],
  ] as const) {
    const db = await open();
    const r = await ledgerRate(db, name.replace(/\W/g, ''));
    console.log(`| ${name} | ${fmt(r.single)} | ${fmt(r.batched)} | ${fmt(r.batched / r.single, 1)}x |`);
    await db.close();
  }

  // Router with payments off vs on, same node.
  const routerKey = generateSecretKey();
  const settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
      FAUCET: 'true',
    }),
  );
  const free = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: join(dir, 'free'),
      ALLOW_PRIVATE_ENDPOINTS: 'true',
    }),
  );
  const paid = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      ROUTER_KEY: secretKeyHex(routerKey),
      DATA_DIR: join(dir, 'paid'),
      ALLOW_PRIVATE_ENDPOINTS: 'true',
      SETTLEMENT_URL: settlement.url,
    }),
  );
  const node = await startNode({
    ...nodeConfigSchema.parse({
      NODE_PORT: '0',
      DATA_DIR: join(dir, 'node'),
      DEMO_MODEL: 'true',
      HEARTBEAT_INTERVAL_S: '1',
    }),
    ROUTER_URLS: [free.url, paid.url],
  });
  for (
    let i = 0;
    i < 100 &&
    (free.registry.views('fedai-demo-noise-v1').length === 0 ||
      paid.registry.views('fedai-demo-noise-v1').length === 0);
    i++
  ) {
    await new Promise((r) => setTimeout(r, 100));
  }
  const freeKey = await free.createApiKey({ name: 'bench', requests_per_min: 1_000_000 });
  const paidKey = await paid.createApiKey({ name: 'bench', requests_per_min: 1_000_000 });
  const tab = (path: string, body?: unknown) =>
    fetch(`${paid.url}/v1/tabs/${path}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${paidKey.key}`, 'content-type': 'application/json' },
      body: JSON.stringify(body),
    }).then((r) => r.json() as Promise<{ bolt11: string }>);
  const invoice = await tab('topup', { amount_msat: 100_000_000 });
  await tab('faucet', { bolt11: invoice.bolt11 });

  const measure = async (url: string, key: string) => {
    const latencies: number[] = [];
    const overheads: number[] = [];
    for (let i = 0; i < 300; i++) {
      const started = performance.now();
      const r = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          model: 'fedai-demo-noise-v1',
          messages: [{ role: 'user', content: 'Hi' }],
          max_tokens: 1,
        }),
      });
      await r.arrayBuffer();
      if (!r.ok) throw new Error(`bench request failed: ${r.status}`);
      if (i >= 20) {
        latencies.push(performance.now() - started);
        overheads.push(Number(r.headers.get('x-fedai-overhead-ms')));
      }
    }
    return { latency: summarize(latencies), overhead: summarize(overheads) };
  };
  const off = await measure(free.url, freeKey.key);
  const on = await measure(paid.url, paidKey.key);
  console.log('');
  console.log(
    '| router payments | latency p50 ms | latency p99 ms | own overhead p50 ms | own overhead p99 ms |',
  );
  console.log('|---|---|---|---|---|');
  console.log(
    `| off (free) | ${fmt(off.latency.median, 2)} | ${fmt(off.latency.p99, 2)} | ${fmt(off.overhead.median, 2)} | ${fmt(off.overhead.p99, 2)} |`,
  );
  console.log(
    `| on (settlement) | ${fmt(on.latency.median, 2)} | ${fmt(on.latency.p99, 2)} | ${fmt(on.overhead.median, 2)} | ${fmt(on.overhead.p99, 2)} |`,
  );
  console.log(`payments on/off latency ratio p50: ${fmt(on.latency.median / off.latency.median, 2)}x`);
  await node.close();
  await free.close();
  await paid.close();
  await settlement.close();
} finally {
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
}
