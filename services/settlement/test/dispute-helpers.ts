// Shared by the dispute tests: a settlement in-process (PGlite), charges made through the books'
// own reserve and capture on really node-signed records, and NIP-98 signed dispute calls.

import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { availableMsat, verifyLedger } from '@fed-ai/ledger';
import {
  createEnvelope,
  createNip98Header,
  type Envelope,
  generateSecretKey,
  type InferenceResponse,
  KIND,
  type MeteringRecord,
  publicKeyOf,
} from '@fed-ai/protocol';
import { settlementConfigSchema } from '../src/config';
import { type RunningSettlement, startSettlement } from '../src/settlement';
import { signedMetering } from './signed-metering';

const TEXT = 'the answer the node generated';
const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };

export interface DisputeRig {
  settlement: RunningSettlement;
  routerKey: Uint8Array;
  router: string;
  nodeKey: Uint8Array;
  node: string;
  close(): Promise<void>;
}

export async function startDisputeRig(): Promise<DisputeRig> {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-disputes-'));
  const routerKey = generateSecretKey();
  const nodeKey = generateSecretKey();
  const settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: dir,
      SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey),
      SETTLEMENT_OPERATOR_PUBKEYS: publicKeyOf(routerKey),
      FAUCET: 'true',
      ROUTER_FEE_BPS: '1000',
    }),
  );
  return {
    settlement,
    routerKey,
    router: publicKeyOf(routerKey),
    nodeKey,
    node: publicKeyOf(nodeKey),
    async close() {
      await settlement.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export interface MadeCharge {
  opId: string;
  payer: string;
  record: MeteringRecord;
  metering: Envelope;
}

let counter = 0;

/** A funded payer and one captured charge (100 in, 200 out: 500 msat) on a node-signed record. */
export async function makeCharge(rig: DisputeRig, payer = `payer-${++counter}`): Promise<MadeCharge> {
  const books = rig.settlement.books;
  const invoice = await books.openTopup(payer, 100_000);
  await books.faucetPay(invoice.bolt11);
  const opId = `req-dispute-${process.pid}-${++counter}`;
  await books.reserve(opId, payer, 10_000, 600);
  const { record, metering } = signedMetering({
    opId,
    router: rig.router,
    nodeKey: rig.nodeKey,
    tokensIn: 100,
    tokensOut: 200,
    price,
    output: TEXT,
  });
  const { chargedMsat } = await books.capture(opId, rig.node, metering, rig.router);
  assert.equal(chargedMsat, 500);
  return { opId, payer, record, metering };
}

/** The router-signed native-API answer for a charge (what the client received). */
export function responseFor(
  rig: DisputeRig,
  charge: MadeCharge,
  over: Partial<InferenceResponse> = {},
  key = rig.routerKey,
): Envelope {
  const r = charge.record;
  return createEnvelope(
    KIND.inferenceResponse,
    {
      request_id: r.request_id,
      model: r.model,
      node: rig.node,
      text: TEXT,
      finish_reason: r.finish_reason,
      usage: {
        prompt_tokens: r.tokens_in,
        completion_tokens: r.tokens_out,
        total_tokens: r.tokens_in + r.tokens_out,
      },
      cost_msat: r.cost_msat,
      receipt: JSON.stringify(charge.metering),
      ...over,
    },
    { audience: publicKeyOf(generateSecretKey()) },
    key,
  );
}

export interface Answer {
  status: number;
  body: Record<string, unknown> & { error?: { code: string; message: string } };
}

/** A NIP-98 signed call to settlement; `header` reuses a header (replays). */
export async function signedCall(
  rig: DisputeRig,
  method: 'GET' | 'POST',
  path: string,
  key: Uint8Array,
  body?: string,
  header?: string,
): Promise<Answer & { header: string }> {
  const url = `${rig.settlement.url}${path}`;
  const authorization = header ?? createNip98Header(url, method, body, key);
  const response = await fetch(url, {
    method,
    headers: { authorization, ...(body !== undefined ? { 'content-type': 'application/json' } : {}) },
    ...(body !== undefined ? { body } : {}),
  });
  return { status: response.status, body: (await response.json()) as Answer['body'], header: authorization };
}

export const openBody = (charge: MadeCharge, extra: { response?: Envelope; payer?: string } = {}) =>
  JSON.stringify({
    receipt: JSON.stringify(charge.metering),
    ...(extra.response ? { response: JSON.stringify(extra.response) } : {}),
    ...(extra.payer ? { payer: extra.payer } : {}),
  });

export async function balanceOf(rig: DisputeRig, account: string): Promise<number> {
  const [found] = await rig.settlement.ledger.lookupAccounts([account]);
  return found ? availableMsat(found) : 0;
}

export async function assertLedgerVerifies(rig: DisputeRig): Promise<void> {
  assert.deepEqual((await verifyLedger(rig.settlement.ledger.db)).problems, []);
}
