// startWalletFleet: database (ledger, audit, fleet tables), the settlement account as Lightning
// backend, crash recovery, the owner API, the NWC service on the relays, and the sweeper that
// credits paid invoices and resolves payments left in flight.
import { resolve } from 'node:path';
import {
  createLogger,
  createMetricsRegistry,
  DbReplayStore,
  initServiceCrypto,
  JobHeartbeats,
  loadServiceKey,
  migrate,
  openDb,
  REPLAY_MIGRATIONS,
} from '@fed-ai/kit';
import { Ledger, verifyLedger } from '@fed-ai/ledger';
import { type LightningBackend, SettlementAccountBackend } from '@fed-ai/lightning';
import { publicKeyOf } from '@fed-ai/protocol';
import { AuditLog } from './audit';
import type { WalletFleetConfig } from './config';
import { migrateWalletFleet } from './db';
import { Fleet } from './fleet';
import { FleetMetrics } from './metrics';
import { NwcService } from './nwc/service';
import { Payments } from './payments';
import { createWalletFleetServer } from './server';
import { runTopups } from './topup';

export interface RunningWalletFleet {
  url: string;
  pubkey: string;
  fleet: Fleet;
  payments: Payments;
  nwc: NwcService;
  verifyLedger(): ReturnType<typeof verifyLedger>;
  close(): Promise<void>;
}

export interface StartWalletFleetOptions {
  /** Test seam: another Lightning backend (default: the account at SETTLEMENT_URL). */
  backend?: LightningBackend;
}

export async function startWalletFleet(
  config: WalletFleetConfig,
  options: StartWalletFleetOptions = {},
): Promise<RunningWalletFleet> {
  const logger = createLogger('wallet-fleet');
  const signatures = await initServiceCrypto(logger);
  const dataDir = resolve(config.DATA_DIR);
  const secretKey = loadServiceKey(
    config.WALLET_FLEET_KEY,
    config.WALLET_FLEET_KEY_FILE,
    `${dataDir}/wallet-fleet.key`,
  );
  const pubkey = publicKeyOf(secretKey);
  const db = await openDb({ url: config.DATABASE_URL, dataDir: resolve(dataDir, 'db'), maxConnections: 20 });
  const ledger = await Ledger.open(db);
  const audit = await AuditLog.open(db);
  await migrateWalletFleet(db);
  await migrate(db, 'wallet-fleet-replay', REPLAY_MIGRATIONS);
  const backend = options.backend ?? new SettlementAccountBackend({ url: config.SETTLEMENT_URL, secretKey });
  const metrics = createMetricsRegistry('wallet_fleet');
  const fleetMetrics = new FleetMetrics(metrics, db);
  const jobs = new JobHeartbeats();
  jobs.register(metrics);
  const sweepJob = jobs.job('wallet_fleet_sweeper', { intervalMs: config.SWEEP_INTERVAL_MS });
  const topupJob = jobs.job('wallet_fleet_topups', { intervalMs: config.SWEEP_INTERVAL_MS });
  const fleet = new Fleet(db, ledger, audit, backend, {
    approvalTtlS: config.APPROVAL_TTL_S,
    metrics: fleetMetrics,
  });
  await fleet.init();
  const payments = new Payments(fleet, { recoverAfterS: config.PAYMENT_RECOVER_AFTER_S });
  const nwc = new NwcService({
    fleet,
    payments,
    relays: config.RELAY_URLS,
    secretKey,
    pubkey,
    allowNip04: config.NWC_ALLOW_NIP04,
    requestsPerMinute: config.NWC_REQUESTS_PER_MIN,
    network: config.NETWORK,
    logger,
  });
  const relayQuery = config.RELAY_URLS.map((r) => `relay=${encodeURIComponent(r)}`).join('&');
  const app = createWalletFleetServer({
    fleet,
    pubkey,
    owners: new Set(config.FLEET_OWNER_PUBKEYS),
    replayStore: new DbReplayStore(db),
    metrics,
    publicUrl: config.WALLET_FLEET_PUBLIC_URL,
    connectionUri: (secretHex) => `nostr+walletconnect://${pubkey}?${relayQuery}&secret=${secretHex}`,
  });
  const url = await app.listen({ host: config.WALLET_FLEET_HOST, port: config.WALLET_FLEET_PORT });
  await nwc.start();

  let sweeping = false;
  const sweep = async () => {
    for (const credited of await fleet.creditSettledInvoices())
      if (credited.walletId)
        await nwc.notifyPayment(credited.walletId, credited.paymentHash, 'payment_received');
    await payments.recoverPayments();
    await nwc.recoverRequests(config.PAYMENT_RECOVER_AFTER_S);
    await topupJob.run(() => runTopups(fleet));
    fleetMetrics.sweepLastSuccessS.set(Math.floor(Date.now() / 1000));
  };
  const sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    sweepJob
      .run(sweep)
      .catch((error: unknown) => logger.error({ err: error }, 'sweep failed'))
      .finally(() => {
        sweeping = false;
      });
  }, config.SWEEP_INTERVAL_MS);
  sweeper.unref();
  logger.info({ url, pubkey, relays: config.RELAY_URLS.length, signatures }, 'wallet fleet ready');
  return {
    url,
    pubkey,
    fleet,
    payments,
    nwc,
    verifyLedger: () => verifyLedger(db),
    async close() {
      clearInterval(sweeper);
      await nwc.close();
      await app.close();
      await db.close();
    },
  };
}
