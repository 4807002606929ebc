// startSettlement: database, ledger, Lightning backend, books, HTTP API and the expiry sweeper.
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import {
  addReplayStoreMetrics,
  beating,
  createLogger,
  createMetricsRegistry,
  createSafeAgent,
  type Db,
  initServiceCrypto,
  JobHeartbeats,
  loadServiceKey,
  migrate,
  openDb,
  openReplayStore,
  REPLAY_MIGRATIONS,
  StartError,
  untilReachable,
} from '@fed-ai/kit';
import { Ledger, verifyLedger } from '@fed-ai/ledger';
import {
  ClnBackend,
  ClnError,
  InternalLightning,
  type LightningBackend,
  LnbitsBackend,
  LnbitsError,
  LndBackend,
  LndError,
  NwcBackend,
  NwcCallError,
} from '@fed-ai/lightning';
import { bytesToHex, ChannelKeys, FedAiError, publicKeyOf } from '@fed-ai/protocol';
import { Histogram } from 'prom-client';
import { BOOKS_MIGRATIONS, Books } from './books';
import type { SettlementConfig } from './config';
import { Disputes } from './disputes';
import { LedgerWatch } from './ledger-watch';
import { readOverview } from './overview';
import { Payouts } from './payouts';
import { ReconcileMetrics, Reconciler } from './reconcile';
import { createSettlementServer } from './server';

type BackendConfig = Pick<
  SettlementConfig,
  | 'LIGHTNING_BACKEND'
  | 'LNBITS_URL'
  | 'LNBITS_ADMIN_KEY'
  | 'LND_REST_URL'
  | 'LND_MACAROON_HEX'
  | 'LND_MACAROON_FILE'
  | 'LND_TLS_CERT_FILE'
  | 'CLN_REST_URL'
  | 'CLN_RUNE'
  | 'CLN_RUNE_FILE'
  | 'CLN_TLS_CERT_FILE'
  | 'NWC_URL'
> &
  Partial<Pick<SettlementConfig, 'STARTUP_WAIT_S'>>;

/**
 * The Lightning backend `LIGHTNING_BACKEND` names. An external one is checked at start (its
 * balance): a bad value, an unreachable server or refused credentials stop settlement with one
 * line naming the variable (never a secret).
 */
export async function openLightningBackend(
  config: BackendConfig,
  db: Db,
  secretKeyHex: string,
): Promise<LightningBackend> {
  // Absent (a direct call, as in the start-check tests): no wait.
  const waitMs = (config.STARTUP_WAIT_S ?? 0) * 1000;
  switch (config.LIGHTNING_BACKEND) {
    case 'internal':
      return InternalLightning.open(db, secretKeyHex);
    case 'lnbits':
      return openLnbits('LNBITS_ADMIN_KEY', config.LNBITS_URL, config.LNBITS_ADMIN_KEY, waitMs);
    case 'lnd':
      return openLnd(config, waitMs);
    case 'cln':
      return openCln(config, waitMs);
    case 'nwc':
      return openNwc(config, waitMs);
  }
}

function required<T>(value: T | undefined, variable: string): T {
  if (value === undefined || value === '')
    throw new StartError('CONFIG_INVALID', `${variable} is required`, `set ${variable}`);
  return value;
}

/** A file a variable names (a certificate, a macaroon, a rune): one line if it cannot be read. */
function readVariableFile(variable: string, path: string): Buffer {
  try {
    return readFileSync(path);
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    throw new StartError(
      'CONFIG_INVALID',
      `${variable} ${path} cannot be read (${typeof code === 'string' ? code : 'error'})`,
      `fix ${variable}`,
    );
  }
}

/** The adapter refused a value while being built: one line naming the variable, not the value. */
function built<T>(variable: string, build: () => T): T {
  try {
    return build();
  } catch (error) {
    if (!(error instanceof FedAiError)) throw error;
    throw new StartError('CONFIG_INVALID', `${variable} is invalid: ${error.message}`, `fix ${variable}`);
  }
}

interface StartCheck {
  /** Shown in the line: the backend, the variable holding its address, the address (or a safe part). */
  backend: string;
  urlVariable: string;
  shownUrl: string;
  /** The variable holding the credential. */
  secretVariable: string;
  unreachable: (error: unknown) => boolean;
  refused: (error: unknown) => boolean;
}

/** Asks the balance once; the backend is destroyed when the check fails. */
async function checkAtStart<
  B extends LightningBackend & { balanceMsat(): Promise<number>; destroy(): Promise<void> },
>(backend: B, check: StartCheck, waitMs: number): Promise<B> {
  try {
    await untilReachable(() => backend.balanceMsat(), check.unreachable, waitMs);
    return backend;
  } catch (error) {
    await backend.destroy().catch(() => undefined);
    const why = error instanceof Error ? error.message.slice(0, 300) : 'error';
    if (check.unreachable(error))
      throw new StartError(
        'UPSTREAM_UNREACHABLE',
        `${check.urlVariable} ${check.shownUrl} is unreachable (${why})`,
        `start ${check.backend} first, or fix ${check.urlVariable}`,
      );
    if (check.refused(error))
      throw new StartError(
        'LIGHTNING_KEY_REFUSED',
        `${check.backend} at ${check.shownUrl} refused ${check.secretVariable} (${why})`,
        `set ${check.secretVariable} to a credential that may read the balance, make, look up and pay invoices`,
      );
    throw new StartError(
      'LIGHTNING_BACKEND_ERROR',
      `${check.backend} at ${check.shownUrl} (${check.urlVariable}) did not answer the balance check (${why})`,
      `check ${check.urlVariable}`,
    );
  }
}

const optionalPem = (variable: string, path: string | undefined) =>
  path === undefined ? undefined : readVariableFile(variable, path).toString('utf8');
const noAnswer = (error: unknown) =>
  (error instanceof LndError || error instanceof ClnError) && error.status === 0;
const credentialRefused = (error: unknown) =>
  (error instanceof LndError || error instanceof ClnError) && (error.status === 401 || error.status === 403);

async function openLnd(config: BackendConfig, waitMs: number): Promise<LndBackend> {
  const url = required(config.LND_REST_URL, 'LND_REST_URL');
  const secretVariable = config.LND_MACAROON_HEX ? 'LND_MACAROON_HEX' : 'LND_MACAROON_FILE';
  let macaroonHex = config.LND_MACAROON_HEX?.trim();
  if (!macaroonHex) {
    const bytes = readVariableFile(
      'LND_MACAROON_FILE',
      required(config.LND_MACAROON_FILE, 'LND_MACAROON_HEX'),
    );
    const text = bytes.toString('utf8').trim();
    // `admin.macaroon` is binary; a file of hex text is accepted too.
    macaroonHex = /^[0-9a-fA-F]+$/.test(text) ? text : bytes.toString('hex');
  }
  const tlsCertPem = optionalPem('LND_TLS_CERT_FILE', config.LND_TLS_CERT_FILE);
  const backend = built(
    secretVariable,
    () => new LndBackend({ url, macaroonHex, ...(tlsCertPem ? { tlsCertPem } : {}) }),
  );
  return checkAtStart(
    backend,
    {
      backend: 'LND',
      urlVariable: 'LND_REST_URL',
      shownUrl: url,
      secretVariable,
      unreachable: noAnswer,
      refused: credentialRefused,
    },
    waitMs,
  );
}

async function openCln(config: BackendConfig, waitMs: number): Promise<ClnBackend> {
  const url = required(config.CLN_REST_URL, 'CLN_REST_URL');
  const secretVariable = config.CLN_RUNE ? 'CLN_RUNE' : 'CLN_RUNE_FILE';
  const rune =
    config.CLN_RUNE?.trim() ||
    readVariableFile('CLN_RUNE_FILE', required(config.CLN_RUNE_FILE, 'CLN_RUNE')).toString('utf8').trim();
  const tlsCertPem = optionalPem('CLN_TLS_CERT_FILE', config.CLN_TLS_CERT_FILE);
  const backend = built(
    secretVariable,
    () => new ClnBackend({ url, rune, ...(tlsCertPem ? { tlsCertPem } : {}) }),
  );
  return checkAtStart(
    backend,
    {
      backend: 'Core Lightning (clnrest)',
      urlVariable: 'CLN_REST_URL',
      shownUrl: url,
      secretVariable,
      unreachable: noAnswer,
      refused: credentialRefused,
    },
    waitMs,
  );
}

async function openNwc(config: BackendConfig, waitMs: number): Promise<NwcBackend> {
  const uri = required(config.NWC_URL, 'NWC_URL');
  const backend = built('NWC_URL', () => new NwcBackend({ url: uri }));
  return checkAtStart(
    backend,
    {
      backend: 'the NWC wallet',
      urlVariable: 'NWC_URL',
      // The URI holds the secret: only its relays and the wallet's pubkey are shown.
      shownUrl: `(wallet ${backend.walletPubkey.slice(0, 12)}… on ${backend.relayUrls.join(', ')})`,
      secretVariable: 'NWC_URL',
      unreachable: (error) => error instanceof NwcCallError && !error.answered,
      refused: (error) => error instanceof NwcCallError && error.answered,
    },
    waitMs,
  );
}

/**
 * An LNbits wallet, checked at start (its balance): an unreachable server or a refused key stops
 * settlement with one line naming the variable (never the key).
 */
async function openLnbits(
  keyVariable: 'LNBITS_ADMIN_KEY' | 'LNBITS_FAUCET_KEY',
  url: string | undefined,
  apiKey: string | undefined,
  waitMs: number,
): Promise<LnbitsBackend> {
  if (!url || !apiKey)
    throw new StartError('CONFIG_INVALID', `LNBITS_URL and ${keyVariable} are required`, 'set both');
  const backend = new LnbitsBackend({ url, apiKey });
  try {
    await untilReachable(
      () => backend.balanceMsat(),
      (error) => error instanceof LnbitsError && error.status === 0,
      waitMs,
    );
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

/** Closes what an external backend holds open (relay connections, TLS agents, pollers). */
async function destroyBackend(backend: LightningBackend): Promise<void> {
  const closable = backend as Partial<{ destroy(): Promise<void> }>;
  if (typeof closable.destroy === 'function') await closable.destroy().catch(() => undefined);
}

/** `GET /v1/backend`: which backend, and whether it answers a balance check now (no secrets). */
async function backendStatus(
  backend: LightningBackend,
): Promise<{ backend: string; reachable: boolean; balance_msat: number | null }> {
  const withBalance = backend as Partial<{ balanceMsat(): Promise<number> }>;
  if (backend.name === 'internal' || typeof withBalance.balanceMsat !== 'function')
    return { backend: backend.name, reachable: true, balance_msat: null };
  try {
    return { backend: backend.name, reachable: true, balance_msat: await withBalance.balanceMsat() };
  } catch {
    return { backend: backend.name, reachable: false, balance_msat: null };
  }
}

/** Runs payouts every `intervalS` (0: never), one run at a time; stop() waits for a run. */
function schedulePayouts(
  payouts: Payouts,
  intervalS: number,
  logger: ReturnType<typeof createLogger>,
  jobs: JobHeartbeats,
): { stop(): Promise<void> } {
  let running: Promise<void> | null = null;
  const job = intervalS > 0 ? jobs.job('settlement_payouts', { intervalMs: intervalS * 1000 }) : undefined;
  const timer =
    intervalS > 0
      ? setInterval(() => {
          if (running) return;
          running = beating(job, () => payouts.runOnce())
            .then((outcomes = []) => {
              const paid = outcomes.filter((o) => o.state === 'succeeded').length;
              if (paid > 0) logger.info({ paid }, 'payouts paid');
            })
            .catch((error: unknown) => logger.error({ err: error }, 'payout run failed'))
            .finally(() => {
              running = null;
            });
        }, intervalS * 1000)
      : null;
  timer?.unref();
  return {
    async stop() {
      if (timer) clearInterval(timer);
      await running;
    },
  };
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
  const signatures = await initServiceCrypto(logger);
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
      faucetLightning = await openLnbits(
        'LNBITS_FAUCET_KEY',
        config.LNBITS_URL,
        config.LNBITS_FAUCET_KEY,
        config.STARTUP_WAIT_S * 1000,
      );
  } catch (error) {
    await db.close();
    throw error;
  }
  await migrate(db, 'settlement-books', BOOKS_MIGRATIONS);
  await migrate(db, 'settlement-replay', REPLAY_MIGRATIONS);
  const replayStore = await openReplayStore(db);
  const metrics = createMetricsRegistry('settlement');
  const requestBatch = new Histogram({
    name: 'fedai_settlement_request_batch_ops',
    help: 'Request operations (reserves, captures) per ledger transaction',
    buckets: [1, 2, 4, 8, 16, 32, 64, 128, 256],
    registers: [metrics],
  });
  const books = new Books(db, ledger, lightning, {
    onRequestBatch: (ops) => requestBatch.observe(ops),
    routerFeeBps: config.ROUTER_FEE_BPS,
    offloadFeeBps: config.OFFLOAD_FEE_BPS,
    network: config.LIGHTNING_NETWORK,
    faucetEnabled: config.FAUCET,
    faucetLightning,
  });
  await books.init();
  // Before recovery: a payout left in flight by a crash is finished by its hook.
  const payoutAgent = createSafeAgent({ allowPrivate: config.PAYOUT_ALLOW_PRIVATE, connections: 8 });
  const payouts = new Payouts(db, ledger, books, {
    secretKey,
    routerFeeBps: config.ROUTER_FEE_BPS,
    thresholdMsat: config.PAYOUT_THRESHOLD_MSAT,
    maxFeeBps: config.PAYOUT_MAX_FEE_BPS,
    minFeeMsat: config.PAYOUT_MIN_FEE_MSAT,
    holdBackS: config.PAYOUT_HOLD_BACK_S,
    holdTimeoutS: 14 * 24 * 3600,
    dispatcher: payoutAgent,
    allowHttp: config.PAYOUT_ALLOW_PRIVATE,
  });
  // Heal anything a crash left half done before serving: payments left between hold and
  // post/void (nothing is in flight yet), then expiries and top-ups.
  // A payment the backend never saw is voided only when older than the grace: a second replica
  // starting up must not void one that another replica is about to send.
  await books.resolvePendingPayments({ voidUnseenOlderThanS: PAYMENT_RECOVERY_AFTER_S });
  await ledger.expirePending();
  await books.creditSettledTopups();

  addReplayStoreMetrics(metrics, replayStore);
  const jobs = new JobHeartbeats();
  jobs.register(metrics);
  const reconciler = new Reconciler(books, ledger, lightning, new ReconcileMetrics(metrics));
  const ledgerWatch = new LedgerWatch(() => verifyLedger(db), metrics);
  const app = createSettlementServer({
    books,
    pubkey,
    routers: new Set(config.SETTLEMENT_ROUTER_PUBKEYS),
    wallets: new Set(config.SETTLEMENT_WALLET_PUBKEYS),
    operators: new Set(config.SETTLEMENT_OPERATOR_PUBKEYS),
    verify: () => ledgerWatch.run(),
    replayStore,
    metrics,
    publicUrl: config.SETTLEMENT_PUBLIC_URL,
    offloadFeeBps: config.OFFLOAD_FEE_BPS,
    lightningNetwork: config.LIGHTNING_NETWORK,
    backend: () => backendStatus(lightning),
    reconcile: (options) => reconciler.run(options),
    payouts,
    disputes: new Disputes(db, ledger, secretKey, { windowS: config.DISPUTE_WINDOW_S }),
    overview: (limit) => readOverview(db, Math.floor(Date.now() / 1000), limit),
    channelKeys: new ChannelKeys(secretKey),
  });
  const url = await app.listen({ host: config.SETTLEMENT_HOST, port: config.SETTLEMENT_PORT });
  let sweeping = false;
  const sweepJob = jobs.job('settlement_sweeper', { intervalMs: config.SWEEP_INTERVAL_MS });
  const sweeper = setInterval(() => {
    if (sweeping) return;
    sweeping = true;
    sweepJob
      .run(() =>
        Promise.all([
          ledger.expirePending(),
          books.closeExpiredLeases(),
          books.creditSettledTopups(),
          books.resolvePendingPayments({ olderThanS: PAYMENT_RECOVERY_AFTER_S }),
        ]),
      )
      .catch((error: unknown) => logger.error({ err: error }, 'sweep failed'))
      .finally(() => {
        sweeping = false;
      });
  }, config.SWEEP_INTERVAL_MS);
  sweeper.unref();
  reconciler.schedule(
    config.RECONCILE_INTERVAL_S,
    (error) => logger.error({ err: error }, 'reconcile failed'),
    (report) => {
      if (report.mismatches.length > 0)
        logger.warn({ mismatches: report.mismatches.map((m) => m.kind) }, 'reconcile found differences');
    },
    jobs,
  );
  ledgerWatch.schedule(
    config.LEDGER_VERIFY_INTERVAL_S,
    (error) => logger.error({ err: error }, 'ledger verify failed to run'),
    (report) => logger.error({ problems: report.problems.slice(0, 10) }, 'ledger verify found problems'),
    jobs,
  );
  const payoutRuns = schedulePayouts(payouts, config.PAYOUT_INTERVAL_S, logger, jobs);
  if (config.PAYOUT_HOLD_BACK_S < config.DISPUTE_WINDOW_S)
    logger.warn(
      { holdBackS: config.PAYOUT_HOLD_BACK_S, disputeWindowS: config.DISPUTE_WINDOW_S },
      'payouts may pay charges still open to dispute: a refund granted after that is refused (PAYOUT_HOLD_BACK_S < DISPUTE_WINDOW_S)',
    );
  logger.info(
    { url, pubkey, backend: lightning.name, faucet: config.FAUCET, signatures },
    'settlement ready',
  );
  return {
    url,
    pubkey,
    books,
    ledger,
    async close() {
      clearInterval(sweeper);
      await payoutRuns.stop();
      await payoutAgent.close();
      await reconciler.stop();
      await ledgerWatch.stop();
      await app.close();
      await destroyBackend(lightning);
      replayStore.close();
      await db.close();
    },
  };
}
