// Two wallet-fleet PROCESSES on one real PostgreSQL, both listening on one relay: NIP-47 requests
// signed by one agent reach both, each runs in exactly one (event-id dedupe in the database), the
// day budget holds across them, and a SIGKILL of one in the middle of the payments loses nothing and
// pays nothing twice once it is back: every payment ends succeeded or failed, no hold is left, the
// settlement tab got exactly what the succeeded payments say, and both ledgers verify.
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import {
  type Db,
  openDb,
  readReadyFile,
  relaySocketClass,
  serviceNodeArgs,
  startPostgres,
} from '@fed-ai/kit';
import { Ledger, verifyLedger } from '@fed-ai/ledger';
import { SettlementAccountBackend } from '@fed-ai/lightning';
import { generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '@fed-ai/settlement';
import { nip44 } from 'nostr-tools';
import { SimplePool, useWebSocketImplementation } from 'nostr-tools/pool';
import { finalizeEvent } from 'nostr-tools/pure';
import { AuditLog } from '../src/audit';
import { Fleet } from '../src/fleet';
import { fundedAgentWallet } from './fleet-setup';

useWebSocketImplementation(relaySocketClass(1024 * 1024));
const root = resolve(new URL('../../..', import.meta.url).pathname);
const dir = mkdtempSync(join(tmpdir(), 'fedai-wf-proc-'));
const ownerKey = generateSecretKey();
const owner = publicKeyOf(ownerKey);
const fleetKey = generateSecretKey();
const fleetPubkey = publicKeyOf(fleetKey);
let pg: Awaited<ReturnType<typeof startPostgres>>;
let relay: RunningRelay;
let settlement: RunningSettlement;
let db: Db;
const children = new Map<string, ChildProcess>();
const pool = new SimplePool();

async function spawnFleet(name: string): Promise<void> {
  const readyFile = join(dir, `${name}-${Date.now()}.ready.json`);
  const child = spawn(
    process.execPath,
    serviceNodeArgs(resolve(root, 'services/wallet-fleet/src/main.ts'), ['--import', 'tsx']),
    {
      cwd: root,
      env: {
        ...process.env,
        WALLET_FLEET_PORT: '0',
        WALLET_FLEET_KEY: secretKeyHex(fleetKey),
        FLEET_OWNER_PUBKEYS: owner,
        RELAY_URLS: relay.url,
        SETTLEMENT_URL: settlement.url,
        DATABASE_URL: pg.url,
        DATA_DIR: join(dir, name),
        SWEEP_INTERVAL_MS: '200',
        PAYMENT_RECOVER_AFTER_S: '11',
        NWC_REQUESTS_PER_MIN: '10000',
        FEDAI_READY_FILE: readyFile,
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  children.set(name, child);
  for (let i = 0; i < 600 && !readReadyFile(readyFile); i++) {
    if (child.exitCode !== null) throw new Error(`${name} exited while starting (${child.exitCode})`);
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.ok(readReadyFile(readyFile), `${name} ready within 60 s`);
}

function stopAll(signal: NodeJS.Signals): Promise<unknown> {
  return Promise.all(
    [...children.values()].map(
      (c) =>
        new Promise((r) => {
          if (c.exitCode !== null || c.signalCode !== null) return r(null);
          c.once('exit', r);
          c.kill(signal);
        }),
    ),
  );
}

before(async () => {
  pg = await startPostgres();
  relay = await startRelay({ port: 0 });
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      FAUCET: 'true',
      SETTLEMENT_WALLET_PUBKEYS: fleetPubkey,
    }),
  );
  await spawnFleet('a');
  await spawnFleet('b');
  db = await openDb({ url: pg.url, maxConnections: 4 });
});

after(async () => {
  await stopAll('SIGKILL');
  pool.destroy();
  await db?.close();
  await settlement.close();
  await relay.close();
  await pg.stop();
  rmSync(dir, { recursive: true, force: true });
});

const until = async (what: string, check: () => Promise<boolean>, limitMs = 60_000) => {
  const started = Date.now();
  while (Date.now() - started < limitMs) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`waited ${limitMs} ms for ${what}`);
};

async function publishPay(clientKey: Uint8Array, bolt11: string): Promise<string> {
  const content = nip44.v2.encrypt(
    JSON.stringify({ method: 'pay_invoice', params: { invoice: bolt11 } }),
    nip44.v2.utils.getConversationKey(clientKey, fleetPubkey),
  );
  const event = finalizeEvent(
    {
      kind: 23194,
      created_at: Math.floor(Date.now() / 1000),
      tags: [
        ['p', fleetPubkey],
        ['encryption', 'nip44_v2'],
      ],
      content,
    },
    clientKey,
  );
  // Sent again (the same event: the relay keeps one) when its OK does not come within nostr-tools'
  // 4.4 s, as a client does; a loaded machine answers 60 parallel publishes slowly.
  for (let attempt = 1; ; attempt++) {
    try {
      await Promise.any(pool.publish([relay.url], event));
      return event.id;
    } catch (error) {
      if (attempt === 3) throw error;
    }
  }
}

/** The owner's setup on the shared database with the service's own classes (what the owner API runs). */
async function agentWallet(name: string, fundMsat: number, dailyMsat: number) {
  const backend = new SettlementAccountBackend({ url: settlement.url, secretKey: fleetKey });
  const fleet = new Fleet(db, await Ledger.open(db), await AuditLog.open(db), backend);
  return { fleet, ...(await fundedAgentWallet(fleet, settlement, owner, { name, fundMsat, dailyMsat })) };
}

const tab = async (payer: string) => (await settlement.books.tab(payer)).balance_msat;

test('two processes, one agent: 60 NIP-47 pay requests against a day budget for 10 run once each, exactly 10 paid', async () => {
  const { walletId, clientKey } = await agentWallet('twoproc', 30_000, 10_000);
  const bills = await Promise.all(
    Array.from({ length: 60 }, () => settlement.books.openTopup('key_twoproc', 1_000)),
  );
  const ids = await Promise.all(bills.map((b) => publishPay(clientKey, b.bolt11)));
  await until('every request answered', async () => {
    const rows = await db.query<{ n: string }>(
      'SELECT count(*) AS n FROM wf_nwc_requests WHERE event_id = ANY($1) AND response IS NOT NULL',
      [ids],
    );
    return Number(rows.rows[0]?.n) === 60;
  });
  const paid = await db.query<{ n: string }>(
    "SELECT count(*) AS n FROM wf_payments WHERE wallet_id = $1 AND state = 'succeeded'",
    [walletId],
  );
  assert.equal(Number(paid.rows[0]?.n), 10);
  assert.equal(await tab('key_twoproc'), 10_000);
  // Both processes got every request; the database let each run once.
  const decisions = await db.query<{ n: string }>(
    "SELECT count(*) AS n FROM audit_log WHERE action = 'decision' AND subject = $1",
    [walletId],
  );
  assert.equal(Number(decisions.rows[0]?.n), 60, 'one decision per request, none twice');
  assert.deepEqual((await verifyLedger(db)).problems, []);
});

test('SIGKILL of one process in the middle of payments: after its restart nothing is lost or paid twice, and every request it had taken is answered', async (t) => {
  const { walletId, clientKey, fleet } = await agentWallet('killed', 100_000, 100_000);
  const bills = await Promise.all(
    Array.from({ length: 40 }, () => settlement.books.openTopup('key_killed', 1_000)),
  );
  const ids: string[] = [];
  for (const [i, bill] of bills.entries()) {
    ids.push(await publishPay(clientKey, bill.bolt11));
    if (i === 15) children.get('a')!.kill('SIGKILL');
  }
  await spawnFleet('a');
  // Every payment that started ends (unknown outcomes are looked up after PAYMENT_RECOVER_AFTER_S).
  await until(
    'no payment left in flight and no hold open',
    async () => {
      const sending = await db.query<{ n: string }>(
        "SELECT count(*) AS n FROM wf_payments WHERE wallet_id = $1 AND state = 'sending'",
        [walletId],
      );
      const open = await db.query<{ n: string }>(
        "SELECT count(*) AS n FROM ledger_transfers WHERE kind = 'pending' AND resolution IS NULL AND debit_account_id = $1",
        [`wallet:${walletId}`],
      );
      const unanswered = await db.query<{ n: string }>(
        'SELECT count(*) AS n FROM wf_nwc_requests WHERE event_id = ANY($1) AND response IS NULL',
        [ids],
      );
      return (
        Number(sending.rows[0]?.n) === 0 &&
        Number(open.rows[0]?.n) === 0 &&
        Number(unanswered.rows[0]?.n) === 0
      );
    },
    90_000,
  );
  const succeeded = await db.query<{ n: string; total: string | null }>(
    "SELECT count(*) AS n, sum(amount_msat) AS total FROM wf_payments WHERE wallet_id = $1 AND state = 'succeeded'",
    [walletId],
  );
  const paidMsat = Number(succeeded.rows[0]?.total ?? 0);
  assert.ok(Number(succeeded.rows[0]?.n) > 0);
  assert.equal(await tab('key_killed'), paidMsat, 'the payee got exactly what the fleet recorded as paid');
  assert.equal(await fleet.balanceMsat(`wallet:${walletId}`), 100_000 - paidMsat);
  // Requests the killed process had taken but not answered were run again (once each) and answered.
  const rerun = await db.query<{ n: string }>(
    'SELECT count(*) AS n FROM wf_nwc_requests WHERE event_id = ANY($1) AND attempts > 1',
    [ids],
  );
  const decisions = await db.query<{ n: string }>(
    "SELECT count(*) AS n FROM audit_log WHERE action = 'decision' AND subject = $1",
    [walletId],
  );
  assert.ok(Number(decisions.rows[0]?.n) <= 40 + Number(rerun.rows[0]?.n));
  const states = await db.query<{ state: string; n: string }>(
    'SELECT state, count(*) AS n FROM wf_payments WHERE wallet_id = $1 GROUP BY state ORDER BY state',
    [walletId],
  );
  t.diagnostic(
    `payments ${states.rows.map((r) => `${r.state} ${r.n}`).join(', ')}; requests run again after the kill ${rerun.rows[0]?.n}`,
  );
  assert.deepEqual((await verifyLedger(db)).problems, []);
  assert.deepEqual((await verifyLedger(settlement.ledger.db)).problems, []);
});
