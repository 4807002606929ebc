// What the payout tests share: the Payouts options they run with, and books on a fresh in-memory
// database where a node has earned 19,000 msat from four real node-signed captures.
import { randomBytes } from 'node:crypto';
import { type Db, migrate, openDb } from '@fed-ai/kit';
import { Ledger } from '@fed-ai/ledger';
import { InternalLightning } from '@fed-ai/lightning';
import { generateSecretKey, publicKeyOf } from '@fed-ai/protocol';
import { BOOKS_MIGRATIONS, Books } from '../src/books';
import type { PayoutsOptions } from '../src/payouts';
import { signedMetering } from './signed-metering';

export const PAYOUT_ROUTER_FEE_BPS = 500;

/**
 * Payouts whose clock runs `aheadS()` seconds (default 2) ahead of the database's: a charge made
 * this second is old enough for a hold-back of 0 (created_at has sub-second precision).
 */
export function testPayoutOptions(secretKey: Uint8Array, aheadS: () => number = () => 2): PayoutsOptions {
  return {
    secretKey,
    routerFeeBps: PAYOUT_ROUTER_FEE_BPS,
    thresholdMsat: 10_000,
    maxFeeBps: 100,
    minFeeMsat: 1000,
    holdBackS: 0,
    holdTimeoutS: 3600,
    allowHttp: true,
    nowS: () => Math.floor(Date.now() / 1000) + aheadS(),
  };
}

export interface EarningNode {
  db: Db;
  ledger: Ledger;
  internal: InternalLightning;
  /** Regtest books with the faucet on. */
  books: Books;
  routerKey: Uint8Array;
  node: string;
}

/** A node with 19,000 msat of earnings: four 5,000 msat captures, less the router's 5 %. */
export async function earningNode(tag: string): Promise<EarningNode> {
  const db = await openDb({});
  const ledger = await Ledger.open(db);
  const internal = await InternalLightning.open(db, randomBytes(32).toString('hex'));
  await migrate(db, 'settlement-books', BOOKS_MIGRATIONS);
  const books = new Books(db, ledger, internal, {
    routerFeeBps: PAYOUT_ROUTER_FEE_BPS,
    faucetEnabled: true,
  });
  await books.init();
  const routerKey = generateSecretKey();
  const nodeKey = generateSecretKey();
  const node = publicKeyOf(nodeKey);
  const payer = `payer-${tag}`;
  await books.faucetPay((await books.openTopup(payer, 20_000)).bolt11);
  for (let i = 0; i < 4; i++) {
    const opId = `req-${tag}-${i}`;
    await books.reserve(opId, payer, 5000, 600);
    const { metering } = signedMetering({
      opId,
      router: publicKeyOf(routerKey),
      nodeKey,
      tokensIn: 100,
      tokensOut: 200,
      price: { input_msat_per_1k: 10_000, output_msat_per_1k: 20_000 },
    });
    await books.capture(opId, node, metering, publicKeyOf(routerKey));
  }
  return { db, ledger, internal, books, routerKey, node };
}
