// startSettlement: database, ledger, Lightning backend, books, HTTP API and the expiry sweeper.
import { resolve } from 'node:path';
import {
  createLogger,
  createMetricsRegistry,
  type Db,
  DbReplayStore,
  loadServiceKey,
  migrate,
  openDb,
  REPLAY_MIGRATIONS,
} from '@fed-ai/kit';
import { Ledger, verifyLedger } from '@fed-ai/ledger';
import { InternalLightning, type LightningBackend } from '@fed-ai/lightning';
import { bytesToHex, initCrypto, publicKeyOf } from '@fed-ai/protocol';
import { BOOKS_MIGRATIONS, Books } from './books';
import type { SettlementConfig } from './config';
import { createSettlementServer } from './server';

/** The Lightning backend `LIGHTNING_BACKEND` names (config refuses the ones not built yet). */
export async function openLightningBackend(
  name: SettlementConfig['LIGHTNING_BACKEND'],
  db: Db,
  secretKeyHex: string,
): Promise<LightningBackend> {
  switch (name) {
    case 'internal':
      return InternalLightning.open(db, secretKeyHex);
  }
}

/** A payment still pending this long after it started is resolved from the backend's answer. */
const PAYMENT_RECOVERY_AFTER_S = 300;

export interface RunningSettlement {
  url: string;
  pubkey: string;
  books: Books;
  ledger: Ledger;
  close(): Promise<void>;
}

export async function startSettlement(config: SettlementConfig): Promise<RunningSettlement> {
  const logger = createLogger('settlement');
  await initCrypto();
  const dataDir = resolve(config.DATA_DIR);
  const secretKey = loadServiceKey(
    config.SETTLEMENT_KEY,
    config.SETTLEMENT_KEY_FILE,
    `${dataDir}/settlement.key`,
  );
  const pubkey = publicKeyOf(secretKey);
  const db = await openDb({ url: config.DATABASE_URL, dataDir: resolve(dataDir, 'db'), maxConnections: 20 });
  const ledger = await Ledger.open(db);
  const lightning = await openLightningBackend(config.LIGHTNING_BACKEND, db, bytesToHex(secretKey));
  await migrate(db, 'settlement-books', BOOKS_MIGRATIONS);
  await migrate(db, 'settlement-replay', REPLAY_MIGRATIONS);
  const books = new Books(db, ledger, lightning, {
    routerFeeBps: config.ROUTER_FEE_BPS,
    offloadFeeBps: config.OFFLOAD_FEE_BPS,
    faucetEnabled: config.FAUCET,
  });
  await books.init();
  // Heal anything a crash left half done before serving: payments left between hold and
  // post/void (nothing is in flight yet), then expiries and top-ups.
  await books.resolvePendingPayments();
  await ledger.expirePending();
  await books.creditSettledTopups();

  const app = createSettlementServer({
    books,
    pubkey,
    routers: new Set(config.SETTLEMENT_ROUTER_PUBKEYS),
    wallets: new Set(config.SETTLEMENT_WALLET_PUBKEYS),
    operators: new Set(config.SETTLEMENT_OPERATOR_PUBKEYS),
    verify: () => verifyLedger(db),
    replayStore: new DbReplayStore(db),
    metrics: createMetricsRegistry('settlement'),
    publicUrl: config.SETTLEMENT_PUBLIC_URL,
    offloadFeeBps: config.OFFLOAD_FEE_BPS,
  });
  const url = await app.listen({ host: config.SETTLEMENT_HOST, port: config.SETTLEMENT_PORT });
  let sweeping = false;
  const sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    Promise.all([
      ledger.expirePending(),
      books.creditSettledTopups(),
      books.resolvePendingPayments({ olderThanS: PAYMENT_RECOVERY_AFTER_S }),
    ])
      .catch((error: unknown) => logger.error({ err: error }, 'sweep failed'))
      .finally(() => {
        sweeping = false;
      });
  }, config.SWEEP_INTERVAL_MS);
  sweeper.unref();
  logger.info({ url, pubkey, backend: lightning.name, faucet: config.FAUCET }, 'settlement ready');
  return {
    url,
    pubkey,
    books,
    ledger,
    async close() {
      clearInterval(sweeper);
      await app.close();
      await db.close();
    },
  };
}
