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
  StartError,
} from '@fed-ai/kit';
import { Ledger, verifyLedger } from '@fed-ai/ledger';
import { InternalLightning, type LightningBackend, LnbitsBackend, LnbitsError } from '@fed-ai/lightning';
import { bytesToHex, initCrypto, publicKeyOf } from '@fed-ai/protocol';
import { BOOKS_MIGRATIONS, Books } from './books';
import type { SettlementConfig } from './config';
import { createSettlementServer } from './server';

/** The Lightning backend `LIGHTNING_BACKEND` names (config refuses the ones not built yet). */
export async function openLightningBackend(
  config: Pick<SettlementConfig, 'LIGHTNING_BACKEND' | 'LNBITS_URL' | 'LNBITS_ADMIN_KEY'>,
  db: Db,
  secretKeyHex: string,
): Promise<LightningBackend> {
  switch (config.LIGHTNING_BACKEND) {
    case 'internal':
      return InternalLightning.open(db, secretKeyHex);
    case 'lnbits':
      return openLnbits('LNBITS_ADMIN_KEY', config.LNBITS_URL, config.LNBITS_ADMIN_KEY);
  }
}

/**
 * An LNbits wallet, checked at start (its balance): an unreachable server or a refused key stops
 * settlement with one line naming the variable (never the key).
 */
async function openLnbits(
  keyVariable: 'LNBITS_ADMIN_KEY' | 'LNBITS_FAUCET_KEY',
  url: string | undefined,
  apiKey: string | undefined,
): Promise<LnbitsBackend> {
  if (!url || !apiKey)
    throw new StartError('CONFIG_INVALID', `LNBITS_URL and ${keyVariable} are required`, 'set both');
  const backend = new LnbitsBackend({ url, apiKey });
  try {
    await backend.balanceMsat();
  } catch (error) {
    if (error instanceof LnbitsError && error.status === 0)
      throw new StartError(
        'UPSTREAM_UNREACHABLE',
        `LNBITS_URL ${url} is unreachable`,
        'start LNbits (or the devnet Lightning service) first, or fix LNBITS_URL',
      );
    if (error instanceof LnbitsError && (error.status === 401 || error.status === 403))
      throw new StartError(
        'LNBITS_KEY_REFUSED',
        `LNbits at ${url} refused ${keyVariable}`,
        `set ${keyVariable} to the wallet's admin key`,
      );
    throw error;
  }
  return backend;
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
  let lightning: LightningBackend;
  // Devnet faucet on LNbits: top-ups are paid from the devnet mint wallet, as real Lightning money.
  let faucetLightning: LightningBackend | undefined;
  try {
    lightning = await openLightningBackend(config, db, bytesToHex(secretKey));
    if (config.FAUCET && config.LIGHTNING_BACKEND === 'lnbits')
      faucetLightning = await openLnbits('LNBITS_FAUCET_KEY', config.LNBITS_URL, config.LNBITS_FAUCET_KEY);
  } catch (error) {
    await db.close();
    throw error;
  }
  await migrate(db, 'settlement-books', BOOKS_MIGRATIONS);
  await migrate(db, 'settlement-replay', REPLAY_MIGRATIONS);
  const books = new Books(db, ledger, lightning, {
    routerFeeBps: config.ROUTER_FEE_BPS,
    offloadFeeBps: config.OFFLOAD_FEE_BPS,
    faucetEnabled: config.FAUCET,
    faucetLightning,
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
