// Node payouts: each node registers where it is paid (a Lightning address or an NWC connection,
// NIP-98-signed by its own key); settlement pays its earnings in batches once they pass a
// threshold, netted of the routing fee, with a settlement-signed statement per payout listing the
// charges (and their node-signed metering record ids) it covers.
//
// A payout is the refund machinery's payment: a pending hold on `earnings:<node>` (`rfd:<hash>`),
// `payInvoice`, then post (`rfp:`) or void (`rfv:`) — recovered after a crash by the same lookup.
// The payout row, its statement and which charges it covers change in the transaction that posts or
// voids the hold (Books.onPaymentOutcome), so a payout is paid once and its statement says so.
import { checkEndpoint, type Db, type Queryable } from '@fed-ai/kit';
import { availableMsat, type Ledger } from '@fed-ai/ledger';
import {
  decodeInvoice,
  invoiceFromLightningAddress,
  invoiceNetwork,
  LnurlError,
  type LnurlOptions,
  NwcBackend,
  NwcCallError,
  parseLightningAddress,
  parseNwcUrl,
} from '@fed-ai/lightning';
import {
  createEnvelope,
  type Envelope,
  FedAiError,
  KIND,
  MAX_STATEMENT_CHARGES,
  type PayoutStatement,
} from '@fed-ai/protocol';
import { z } from 'zod';
import { ACCOUNTS, type Books, type PaymentRow, REFUND_IDS } from './books';
import { planPayout } from './payout-plan';

export const payoutDestinationSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('lightning_address'), address: z.string().min(3).max(320) }),
  /** The node's NWC connection (a secret: stored, used to ask its wallet for invoices, never shown). */
  z.strictObject({ kind: z.literal('nwc'), uri: z.string().min(10).max(2048) }),
]);
export type PayoutDestination = z.infer<typeof payoutDestinationSchema>;

export interface PayoutsOptions {
  secretKey: Uint8Array;
  routerFeeBps: number;
  thresholdMsat: number;
  maxFeeBps: number;
  minFeeMsat: number;
  /** Charges younger than this are not paid out yet (disputes may still open on them). */
  holdBackS: number;
  /** How long a payout's hold lasts: longer than any Lightning payment can stay in flight. */
  holdTimeoutS: number;
  /** Dispatcher for Lightning-address requests (settlement's refuses private addresses). */
  dispatcher?: LnurlOptions['dispatcher'];
  /** Lightning addresses over http://, NWC relays on private addresses (a devnet on 127.0.0.1 only). */
  allowHttp?: boolean;
  nowS?: () => number;
}

export type PayoutOutcome =
  | { node: string; state: 'succeeded' | 'failed' | 'pending'; payout_id: string; amount_msat: number }
  | { node: string; state: 'skipped'; reason: string };

interface PayoutRow {
  payout_id: string;
  node: string;
  payment_hash: string;
  hold_msat: number;
  state: 'pending' | 'succeeded' | 'failed';
  draft: Omit<PayoutStatement, 'fee_msat' | 'returned_msat' | 'preimage' | 'paid_at'>;
  statement: Envelope | null;
  created_at_s: number;
}

interface ChargeRow {
  op_id: string;
  node_msat: string | number;
  metering: Envelope;
}

/** Nodes one scheduled run looks at, at most. */
const MAX_NODES_PER_RUN = 200;
const MAX_STATEMENTS_LISTED = 50;

export class Payouts {
  private readonly nowS: () => number;
  private disputesTable: boolean | undefined;

  constructor(
    private readonly db: Db,
    private readonly ledger: Ledger,
    private readonly books: Books,
    private readonly options: PayoutsOptions,
  ) {
    this.nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
    books.onPaymentOutcome((tx, payment, outcome) => this.recordOutcome(tx, payment, outcome));
  }

  /** Sets where `node` is paid. Only a node that has earned here may (no table of strangers). */
  async setDestination(node: string, destination: PayoutDestination): Promise<void> {
    if (destination.kind === 'lightning_address') {
      try {
        parseLightningAddress(destination.address);
      } catch (error) {
        throw new FedAiError('INVALID_REQUEST', (error as Error).message);
      }
    } else {
      try {
        parseNwcUrl(destination.uri);
      } catch {
        throw new FedAiError('INVALID_REQUEST', 'not a nostr+walletconnect:// URI (NIP-47)');
      }
      await this.checkRelays(destination.uri);
    }
    const [account] = await this.ledger.lookupAccounts([ACCOUNTS.earnings(node)]);
    if (!account)
      throw new FedAiError(
        'NOT_FOUND',
        'No earnings for this key here: only a node that has served requests has payouts.',
      );
    const value = destination.kind === 'nwc' ? destination.uri : destination.address.trim().toLowerCase();
    await this.db.query(
      `INSERT INTO payout_destinations (node, kind, value, updated_at_s) VALUES ($1, $2, $3, $4)
       ON CONFLICT (node) DO UPDATE SET kind = EXCLUDED.kind, value = EXCLUDED.value, updated_at_s = EXCLUDED.updated_at_s`,
      [node, destination.kind, value, this.nowS()],
    );
  }

  /** The node's destination as it may be shown (an NWC connection by its wallet key only). */
  async shownDestination(node: string): Promise<{ kind: string; address: string } | null> {
    const row = await this.destinationRow(node);
    return row ? shown(row) : null;
  }

  /** One pass over nodes with a destination: pays each whose payable earnings pass the threshold. */
  async runOnce(): Promise<PayoutOutcome[]> {
    const rows = await this.db.query<{ node: string }>(
      'SELECT node FROM payout_destinations ORDER BY updated_at_s LIMIT $1',
      [MAX_NODES_PER_RUN],
    );
    const outcomes: PayoutOutcome[] = [];
    for (const { node } of rows.rows) {
      outcomes.push(
        await this.payOut(node).catch(
          (error: unknown): PayoutOutcome => ({
            node,
            state: 'skipped',
            reason: error instanceof FedAiError ? error.code : 'INTERNAL',
          }),
        ),
      );
    }
    return outcomes;
  }

  /** Pays `node` what is payable now, or says why not. At most one payout per node is open. */
  async payOut(node: string): Promise<PayoutOutcome> {
    const destination = await this.destinationRow(node);
    if (!destination) return { node, state: 'skipped', reason: 'NO_DESTINATION' };
    const open = await this.db.query<PayoutRow>(
      "SELECT * FROM payouts WHERE node = $1 AND state = 'pending'",
      [node],
    );
    if (open.rows[0]) return { node, state: 'skipped', reason: 'PAYOUT_IN_FLIGHT' };
    const covered = await this.coverableCharges(node);
    const uncovered = await this.db.query<{ total: string | null }>(
      'SELECT SUM(node_msat) AS total FROM charges WHERE node = $1 AND payout_id IS NULL',
      [node],
    );
    const plan = planPayout({
      availableMsat: await this.earningsMsat(node),
      uncoveredMsat: Number(uncovered.rows[0]?.total ?? 0),
      coveredMsat: covered.reduce((sum, c) => sum + Number(c.node_msat), 0),
      thresholdMsat: this.options.thresholdMsat,
      maxFeeBps: this.options.maxFeeBps,
      minFeeMsat: this.options.minFeeMsat,
    });
    if (!plan.pay) return { node, state: 'skipped', reason: plan.reason };
    const bolt11 = await this.invoiceFrom(destination, plan.amountMsat);
    const decoded = decodeInvoice(bolt11);
    if (invoiceNetwork(bolt11) !== this.books.network)
      throw new FedAiError(
        'PAYOUT_DESTINATION_FAILED',
        `The destination gave an invoice for another network than ${this.books.network}.`,
      );
    if (decoded.amountMsat !== plan.amountMsat)
      throw new FedAiError(
        'PAYOUT_DESTINATION_FAILED',
        'The destination gave an invoice for another amount.',
      );
    const hash = decoded.paymentHash;
    // An invoice of this system (the node's wallet banks here, as on a local network) settles
    // internally into its account, as a refund to one does; the internal backend pays only those.
    const topup = await this.books.topupRow(hash);
    if (!topup && this.books.backendName === 'internal')
      throw new FedAiError(
        'PAYOUT_DESTINATION_FAILED',
        "The internal Lightning backend pays only invoices of this system; the node's wallet gave another.",
      );
    if (topup?.settled_at_s != null)
      throw new FedAiError(
        'PAYOUT_DESTINATION_FAILED',
        'The destination gave an invoice that is already paid.',
      );
    const payoutId = `po:${hash.slice(0, 32)}`;
    const now = this.nowS();
    const draft: PayoutRow['draft'] = {
      payout_id: payoutId,
      node,
      charges: covered.map(statementCharge),
      router_fee_bps: this.options.routerFeeBps,
      gross_msat: plan.grossMsat,
      carried_in_msat: plan.carriedInMsat,
      hold_msat: plan.holdMsat,
      amount_msat: plan.amountMsat,
      destination: shown(destination),
      payment_hash: hash,
      covered_until: now - this.options.holdBackS,
    };
    const payment: PaymentRow = {
      payment_hash: hash,
      account: ACCOUNTS.earnings(node),
      destination: topup ? topup.account : ACCOUNTS.lightning,
      bolt11,
      amount_msat: plan.amountMsat,
      max_fee_msat: topup ? 0 : plan.maxFeeMsat,
      fee_msat: null,
      state: 'pending',
      preimage: null,
      failure_code: null,
      created_at_s: now,
      updated_at_s: now,
    };
    await this.hold(payment, draft, covered);
    const state = await this.books.payHeld(payment);
    return { node, state, payout_id: payoutId, amount_msat: plan.amountMsat };
  }

  /** What the node has earned here and not been paid yet (spendable: pending payouts excluded). */
  async earningsMsat(node: string): Promise<number> {
    const [account] = await this.ledger.lookupAccounts([ACCOUNTS.earnings(node)]);
    return account ? availableMsat(account) : 0;
  }

  /** The node's payouts, newest first, with their signed statements once paid. */
  async list(
    node: string,
  ): Promise<{ payout_id: string; state: string; hold_msat: number; statement: Envelope | null }[]> {
    const rows = await this.db.query<PayoutRow>(
      'SELECT * FROM payouts WHERE node = $1 ORDER BY created_at_s DESC, payout_id LIMIT $2',
      [node, MAX_STATEMENTS_LISTED],
    );
    return rows.rows.map((r) => ({
      payout_id: r.payout_id,
      state: r.state,
      hold_msat: Number(r.hold_msat),
      statement: r.statement,
    }));
  }

  /** The hold, the payment row, the payout row and the covered charges: one transaction. */
  private async hold(payment: PaymentRow, draft: PayoutRow['draft'], covered: ChargeRow[]): Promise<void> {
    const hash = payment.payment_hash;
    const results = await this.ledger.createTransfers(
      [
        {
          id: REFUND_IDS.hold(hash),
          kind: 'pending',
          debitAccountId: payment.account,
          creditAccountId: payment.destination,
          amountMsat: draft.hold_msat,
          timeoutS: this.options.holdTimeoutS,
          userData: hash,
        },
      ],
      async (tx, r) => {
        if (r[0]?.code !== 'OK') return;
        await tx.query(
          `INSERT INTO payments (payment_hash, account, destination, bolt11, amount_msat, max_fee_msat, state, created_at_s, updated_at_s)
           VALUES ($1,$2,$3,$4,$5,$6,'pending',$7,$7)`,
          [
            hash,
            payment.account,
            payment.destination,
            payment.bolt11,
            payment.amount_msat,
            payment.max_fee_msat,
            payment.created_at_s,
          ],
        );
        await tx.query(
          `INSERT INTO payouts (payout_id, node, payment_hash, hold_msat, state, draft, created_at_s, updated_at_s)
           VALUES ($1,$2,$3,$4,'pending',$5,$6,$6)`,
          [draft.payout_id, draft.node, hash, draft.hold_msat, JSON.stringify(draft), payment.created_at_s],
        );
        const marked = await tx.query(
          'UPDATE charges SET payout_id = $1 WHERE op_id = ANY($2) AND payout_id IS NULL',
          [draft.payout_id, covered.map((c) => c.op_id)],
        );
        // Another payout took one of these charges meanwhile: roll everything back.
        if (marked.rowCount !== covered.length)
          throw new FedAiError('IDEMPOTENCY_CONFLICT', 'Another payout covered these charges.');
      },
    );
    const code = results[0]?.code;
    if (code === 'OK') return;
    if (code === 'EXCEEDS_CREDITS')
      throw new FedAiError('INSUFFICIENT_BALANCE', 'The earnings changed while the payout was prepared.');
    throw new FedAiError('LEDGER_REJECTED', `payout hold: ${code}`);
  }

  /** Books' hook: a payout's payment was posted or voided (same transaction). */
  private async recordOutcome(
    tx: Queryable,
    payment: PaymentRow,
    outcome: { state: 'failed' } | { state: 'succeeded'; preimage: string; feeMsat: number },
  ): Promise<void> {
    if (!payment.account.startsWith('earnings:')) return;
    const rows = await tx.query<PayoutRow>(
      "SELECT * FROM payouts WHERE payment_hash = $1 AND state = 'pending' FOR UPDATE",
      [payment.payment_hash],
    );
    const payout = rows.rows[0];
    if (!payout) return;
    const now = this.nowS();
    if (outcome.state === 'failed') {
      await tx.query("UPDATE payouts SET state = 'failed', updated_at_s = $2 WHERE payout_id = $1", [
        payout.payout_id,
        now,
      ]);
      await tx.query('UPDATE charges SET payout_id = NULL WHERE payout_id = $1', [payout.payout_id]);
      return;
    }
    const statement: PayoutStatement = {
      ...payout.draft,
      fee_msat: outcome.feeMsat,
      returned_msat: Number(payout.hold_msat) - payout.draft.amount_msat - outcome.feeMsat,
      preimage: outcome.preimage,
      paid_at: now,
    };
    const envelope = createEnvelope(
      KIND.payoutStatement,
      statement,
      { audience: payout.node, expiresInS: 0, refs: [payout.payout_id], nowS: now },
      this.options.secretKey,
    );
    await tx.query(
      "UPDATE payouts SET state = 'succeeded', statement = $2, updated_at_s = $3 WHERE payout_id = $1",
      [payout.payout_id, JSON.stringify(envelope), now],
    );
  }

  /** Charges old enough to pay (made before the end of the hold-back second), with no open dispute, oldest first, at most one statement's worth. */
  private async coverableCharges(node: string): Promise<ChargeRow[]> {
    if (this.disputesTable === undefined) {
      const found = await this.db.query<{ t: string | null }>("SELECT to_regclass('disputes')::text AS t");
      this.disputesTable = Boolean(found.rows[0]?.t);
    }
    const noOpenDispute = this.disputesTable
      ? "AND NOT EXISTS (SELECT 1 FROM disputes d WHERE d.charge_op_id = c.op_id AND d.state <> 'closed')"
      : '';
    const rows = await this.db.query<ChargeRow>(
      `SELECT c.op_id, c.node_msat, c.metering FROM charges c
       WHERE c.node = $1 AND c.payout_id IS NULL AND c.created_at < to_timestamp($2 + 1) ${noOpenDispute}
       ORDER BY c.created_at, c.op_id LIMIT $3`,
      [node, this.nowS() - this.options.holdBackS, MAX_STATEMENT_CHARGES],
    );
    return rows.rows;
  }

  /** Settlement connects to the wallet's relays: public addresses only, unless the operator allows. */
  private async checkRelays(uri: string): Promise<void> {
    if (this.options.allowHttp) return;
    for (const relay of parseNwcUrl(uri).relayUrls) {
      const url = new URL(relay);
      const checked = await checkEndpoint(`${url.protocol === 'wss:' ? 'https:' : 'http:'}//${url.host}`, {
        allowPrivate: false,
      });
      if (!checked.ok)
        throw new FedAiError(
          'PRIVATE_ENDPOINT',
          `the NWC relay ${url.host} is refused: ${checked.detail} (a local network sets PAYOUT_ALLOW_PRIVATE=true)`,
        );
    }
  }

  private async destinationRow(node: string): Promise<{ kind: string; value: string } | null> {
    const rows = await this.db.query<{ kind: string; value: string }>(
      'SELECT kind, value FROM payout_destinations WHERE node = $1',
      [node],
    );
    return rows.rows[0] ?? null;
  }

  /** An invoice for exactly `amountMsat` from the node's own wallet. */
  private async invoiceFrom(
    destination: { kind: string; value: string },
    amountMsat: number,
  ): Promise<string> {
    if (destination.kind === 'lightning_address') {
      try {
        return await invoiceFromLightningAddress(destination.value, amountMsat, {
          ...(this.options.dispatcher ? { dispatcher: this.options.dispatcher } : {}),
          ...(this.options.allowHttp ? { allowHttp: true } : {}),
          nowS: this.nowS,
        });
      } catch (error) {
        if (error instanceof LnurlError)
          throw new FedAiError('PAYOUT_DESTINATION_FAILED', `${error.code}: ${error.message}`);
        throw error;
      }
    }
    // Checked again before connecting: a name may resolve elsewhere since it was set.
    await this.checkRelays(destination.value);
    const wallet = new NwcBackend({ url: destination.value });
    try {
      const invoice = await wallet.createInvoice({
        amountMsat,
        description: 'fed-ai node payout',
        expirySeconds: 600,
      });
      return invoice.bolt11;
    } catch (error) {
      const why = error instanceof NwcCallError ? error.message.slice(0, 200) : 'no invoice';
      throw new FedAiError('PAYOUT_DESTINATION_FAILED', `the node's NWC wallet: ${why}`);
    } finally {
      await wallet.destroy().catch(() => undefined);
    }
  }
}

function statementCharge(row: ChargeRow): PayoutStatement['charges'][number] {
  const metering = typeof row.metering === 'string' ? (JSON.parse(row.metering) as Envelope) : row.metering;
  const record = JSON.parse(metering.content) as { request_id: string; cost_msat: number };
  return {
    op_id: row.op_id,
    request_id: record.request_id,
    metering_id: metering.id,
    cost_msat: record.cost_msat,
    node_msat: Number(row.node_msat),
  };
}

function shown(row: { kind: string; value: string }): PayoutStatement['destination'] {
  if (row.kind === 'lightning_address') return { kind: 'lightning_address', address: row.value };
  return { kind: 'nwc', address: `wallet ${parseNwcUrl(row.value).walletPubkey}` };
}
