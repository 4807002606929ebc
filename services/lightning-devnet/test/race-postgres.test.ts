// The devnet service on a real PostgreSQL server, two instances sharing it (two replicas):
// payments in opposite directions at once never deadlock, racing payers of one invoice debit
// exactly one wallet, and no money is created or lost (balances sum to zero with the mint's debt).
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startPostgres } from '@fed-ai/kit';
import { LightningPaymentError, LnbitsBackend } from '@fed-ai/lightning';
import { devnetConfigSchema } from '../src/config';
import { type RunningDevnet, startLightningDevnet } from '../src/server';

const ADMIN = 'devnet-admin-key-race-test-0123456789';
const dir = mkdtempSync(join(tmpdir(), 'fedai-devnet-race-'));
let pg: Awaited<ReturnType<typeof startPostgres>>;
let one: RunningDevnet;
let two: RunningDevnet;

before(async () => {
  pg = await startPostgres();
  const start = (name: string) =>
    startLightningDevnet(
      devnetConfigSchema.parse({
        LIGHTNING_DEVNET_PORT: '0',
        DATA_DIR: join(dir, name),
        DATABASE_URL: pg.url,
        DEVNET_ADMIN_KEY: ADMIN,
        // One node key for both replicas: they are one service.
        LIGHTNING_DEVNET_KEY: '22'.repeat(32),
      }),
    );
  one = await start('one');
  two = await start('two');
});

after(async () => {
  await one?.close();
  await two?.close();
  await pg?.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function wallet(name: string, mint = false) {
  const response = await fetch(`${one.url}/devnet/wallets`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-admin-key': ADMIN },
    body: JSON.stringify({ name, mint }),
  });
  assert.equal(response.status, 201);
  const keys = (await response.json()) as { adminkey: string };
  return {
    viaOne: new LnbitsBackend({ url: one.url, apiKey: keys.adminkey }),
    viaTwo: new LnbitsBackend({ url: two.url, apiKey: keys.adminkey }),
  };
}

test('crosswise payments through two replicas: no deadlock, exact balances, the sum stays zero', async () => {
  const mint = await wallet('mint', true);
  const a = await wallet('a');
  const b = await wallet('b');
  for (const w of [a, b]) {
    const invoice = await w.viaOne.createInvoice({
      amountMsat: 100_000,
      description: '',
      expirySeconds: 600,
    });
    await mint.viaTwo.payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
  }
  const rounds = 10;
  const toA = await Promise.all(
    Array.from({ length: rounds }, () =>
      a.viaOne.createInvoice({ amountMsat: 1000, description: '', expirySeconds: 600 }),
    ),
  );
  const toB = await Promise.all(
    Array.from({ length: rounds }, () =>
      b.viaTwo.createInvoice({ amountMsat: 2000, description: '', expirySeconds: 600 }),
    ),
  );
  await Promise.all([
    ...toA.map((invoice, i) => (i % 2 ? b.viaOne : b.viaTwo).payInvoice(invoice.bolt11, { maxFeeMsat: 0 })),
    ...toB.map((invoice, i) => (i % 2 ? a.viaTwo : a.viaOne).payInvoice(invoice.bolt11, { maxFeeMsat: 0 })),
  ]);
  assert.equal(await a.viaOne.balanceMsat(), 100_000 + rounds * 1000 - rounds * 2000);
  assert.equal(await b.viaTwo.balanceMsat(), 100_000 + rounds * 2000 - rounds * 1000);
  assert.equal(await one.store.totalMsat(), 0);

  // Racing payers of one invoice, through both replicas: exactly one debit.
  const contested = await a.viaOne.createInvoice({ amountMsat: 5000, description: '', expirySeconds: 600 });
  const payers = await Promise.all(Array.from({ length: 4 }, (_, i) => wallet(`payer-${i}`)));
  for (const p of payers) {
    const invoice = await p.viaOne.createInvoice({ amountMsat: 5000, description: '', expirySeconds: 600 });
    await mint.viaOne.payInvoice(invoice.bolt11, { maxFeeMsat: 0 });
  }
  const results = await Promise.allSettled(
    payers.map((p, i) => (i % 2 ? p.viaOne : p.viaTwo).payInvoice(contested.bolt11, { maxFeeMsat: 0 })),
  );
  assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1);
  for (const r of results)
    if (r.status === 'rejected') {
      assert.ok(r.reason instanceof LightningPaymentError);
      assert.equal(r.reason.code, 'ALREADY_PAID');
      assert.equal(r.reason.definite, true);
    }
  const balances = await Promise.all(payers.map((p) => p.viaOne.balanceMsat()));
  assert.equal(
    balances.reduce((sum, x) => sum + x, 0),
    3 * 5000,
  );
  assert.equal(await two.store.totalMsat(), 0);
});
