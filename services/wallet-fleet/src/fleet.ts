// The owner's side of the wallet fleet: wallets with their policy, NWC connections, the treasury and
// moves from it, invoices (incoming money), approvals, and the kill / pause switches. Every change
// is one database transaction that also appends its audit entry, so the log and the state never
// disagree. Payments are in payments.ts.
import { randomBytes, randomUUID } from 'node:crypto';
import type { Db, Queryable } from '@fed-ai/kit';
import { ACCOUNT_FLAGS, availableMsat, type Ledger } from '@fed-ai/ledger';
import type { LightningBackend } from '@fed-ai/lightning';
import { FedAiError, publicKeyOf } from '@fed-ai/protocol';
import { WF_ACCOUNTS, WF_TRANSFERS } from './accounts';
import type { AuditLog } from './audit';
import type { FleetMetrics } from './metrics';
import { type Policy, policyHash, policySchema } from './policy';

export type SwitchStatus = 'active' | 'paused' | 'killed';

export interface WalletRow {
  id: string;
  owner: string;
  group_id: string | null;
  name: string;
  policy: Policy;
  policy_hash: string;
  policy_version: number;
  status: SwitchStatus;
  created_at_s: number;
}

export interface FleetOptions {
  nowS?: () => number;
  /** How long a challenged payment waits for the owner. */
  approvalTtlS?: number;
  /** Most wallets one owner may hold (a bound on every list). */
  maxWalletsPerOwner?: number;
  metrics?: FleetMetrics;
}

/** Most funding requests a wallet may have waiting (an agent cannot flood the owner's inbox). */
const MAX_PENDING_FUNDING_REQUESTS = 16;

export const fleetScope = (owner: string) => `fleet:${owner}`;
export const groupScope = (owner: string, group: string) => `group:${owner}:${group}`;

const MAX_CONNECTIONS_PER_WALLET = 32;

export class Fleet {
  readonly nowS: () => number;
  private readonly approvalTtlS: number;
  private readonly maxWalletsPerOwner: number;
  readonly metrics: FleetMetrics | undefined;

  constructor(
    readonly db: Db,
    readonly ledger: Ledger,
    readonly audit: AuditLog,
    readonly backend: LightningBackend,
    options: FleetOptions = {},
  ) {
    this.nowS = options.nowS ?? (() => Math.floor(Date.now() / 1000));
    this.approvalTtlS = options.approvalTtlS ?? 3600;
    this.maxWalletsPerOwner = options.maxWalletsPerOwner ?? 10_000;
    this.metrics = options.metrics;
  }

  async init(): Promise<void> {
    await this.ledger.createAccounts([
      // The fleet cannot send more than it holds at its backend.
      { id: WF_ACCOUNTS.lightning, flags: ACCOUNT_FLAGS.creditsMustNotExceedDebits },
      { id: WF_ACCOUNTS.budgetSource },
      { id: WF_ACCOUNTS.budgetSpent },
    ]);
  }

  /** The owner's fleet switch and treasury exist from the owner's first action on. */
  private async ensureOwner(tx: Queryable, owner: string): Promise<void> {
    await tx.query('INSERT INTO wf_switches (scope, updated_at_s) VALUES ($1, $2) ON CONFLICT DO NOTHING', [
      fleetScope(owner),
      this.nowS(),
    ]);
    await tx.query('INSERT INTO ledger_accounts (id, flags) VALUES ($1, $2) ON CONFLICT (id) DO NOTHING', [
      WF_ACCOUNTS.treasury(owner),
      ACCOUNT_FLAGS.debitsMustNotExceedCredits,
    ]);
  }

  async createWallet(
    owner: string,
    input: { name: string; group?: string | undefined; policy: unknown },
  ): Promise<WalletRow> {
    const policy = policySchema.parse(input.policy);
    const id = `w_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
    const now = this.nowS();
    return this.db.transaction(async (tx) => {
      await this.ensureOwner(tx, owner);
      const count = await tx.query<{ n: string }>('SELECT count(*) AS n FROM wf_wallets WHERE owner = $1', [
        owner,
      ]);
      if (Number(count.rows[0]?.n ?? 0) >= this.maxWalletsPerOwner)
        throw new FedAiError('INVALID_REQUEST', `at most ${this.maxWalletsPerOwner} wallets per owner`);
      if (input.group)
        await tx.query(
          'INSERT INTO wf_switches (scope, updated_at_s) VALUES ($1, $2) ON CONFLICT DO NOTHING',
          [groupScope(owner, input.group), now],
        );
      await tx.query('INSERT INTO ledger_accounts (id, flags) VALUES ($1, $2)', [
        WF_ACCOUNTS.wallet(id),
        ACCOUNT_FLAGS.debitsMustNotExceedCredits,
      ]);
      const hash = policyHash(policy);
      await tx.query(
        `INSERT INTO wf_wallets (id, owner, group_id, name, policy, policy_hash, created_at_s) VALUES ($1,$2,$3,$4,$5,$6,$7)`,
        [id, owner, input.group ?? null, input.name, JSON.stringify(policy), hash, now],
      );
      await this.audit.append(tx, {
        actor: owner,
        action: 'wallet.create',
        subject: id,
        data: { name: input.name, group: input.group ?? null, policy_hash: hash },
      });
      return this.walletIn(tx, id) as Promise<WalletRow>;
    });
  }

  async walletIn(tx: Queryable, id: string, lock = false): Promise<WalletRow | null> {
    const rows = await tx.query<WalletRow>(
      `SELECT * FROM wf_wallets WHERE id = $1${lock ? ' FOR UPDATE' : ''}`,
      [id],
    );
    const row = rows.rows[0];
    return row ? { ...row, created_at_s: Number(row.created_at_s) } : null;
  }

  /** The owner's wallet, or NOT_FOUND (another owner's wallet is never shown). */
  async wallet(owner: string, id: string): Promise<WalletRow> {
    const row = await this.walletIn(this.db, id);
    if (!row || row.owner !== owner) throw new FedAiError('NOT_FOUND', 'No wallet of yours has this id.');
    return row;
  }

  async listWallets(owner: string): Promise<WalletRow[]> {
    const rows = await this.db.query<WalletRow>(
      'SELECT * FROM wf_wallets WHERE owner = $1 ORDER BY created_at_s, id LIMIT $2',
      [owner, this.maxWalletsPerOwner],
    );
    return rows.rows;
  }

  async setPolicy(owner: string, id: string, input: unknown): Promise<WalletRow> {
    const policy = policySchema.parse(input);
    const hash = policyHash(policy);
    return this.db.transaction(async (tx) => {
      const wallet = await this.walletIn(tx, id, true);
      if (!wallet || wallet.owner !== owner)
        throw new FedAiError('NOT_FOUND', 'No wallet of yours has this id.');
      await tx.query(
        'UPDATE wf_wallets SET policy = $2, policy_hash = $3, policy_version = policy_version + 1 WHERE id = $1',
        [id, JSON.stringify(policy), hash],
      );
      await this.audit.append(tx, {
        actor: owner,
        action: 'policy.set',
        subject: id,
        data: { policy_hash: hash, previous_hash: wallet.policy_hash, version: wallet.policy_version + 1 },
      });
      return (await this.walletIn(tx, id)) as WalletRow;
    });
  }

  /** A new NWC connection: a fresh client key whose secret is returned once and never stored. */
  async connect(
    owner: string,
    walletId: string,
    input: { name: string; expiresAtS?: number | undefined },
  ): Promise<{ clientPubkey: string; secretHex: string }> {
    await this.wallet(owner, walletId);
    const secret = new Uint8Array(randomBytes(32));
    const clientPubkey = publicKeyOf(secret);
    await this.db.transaction(async (tx) => {
      const n = await tx.query<{ n: string }>(
        'SELECT count(*) AS n FROM wf_connections WHERE wallet_id = $1 AND revoked_at_s IS NULL',
        [walletId],
      );
      if (Number(n.rows[0]?.n ?? 0) >= MAX_CONNECTIONS_PER_WALLET)
        throw new FedAiError(
          'INVALID_REQUEST',
          `at most ${MAX_CONNECTIONS_PER_WALLET} live connections per wallet`,
        );
      await tx.query(
        'INSERT INTO wf_connections (client_pubkey, wallet_id, name, created_at_s, expires_at_s) VALUES ($1,$2,$3,$4,$5)',
        [clientPubkey, walletId, input.name, this.nowS(), input.expiresAtS ?? null],
      );
      await this.audit.append(tx, {
        actor: owner,
        action: 'connection.create',
        subject: walletId,
        data: { client_pubkey: clientPubkey, name: input.name, expires_at_s: input.expiresAtS ?? null },
      });
    });
    return { clientPubkey, secretHex: Buffer.from(secret).toString('hex') };
  }

  async revoke(owner: string, clientPubkey: string): Promise<boolean> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query<{ wallet_id: string }>(
        `UPDATE wf_connections c SET revoked_at_s = $3 FROM wf_wallets w
         WHERE c.client_pubkey = $1 AND c.wallet_id = w.id AND w.owner = $2 AND c.revoked_at_s IS NULL
         RETURNING c.wallet_id`,
        [clientPubkey, owner, this.nowS()],
      );
      const walletId = rows.rows[0]?.wallet_id;
      if (!walletId) return false;
      await this.audit.append(tx, {
        actor: owner,
        action: 'connection.revoke',
        subject: walletId,
        data: { client_pubkey: clientPubkey },
      });
      return true;
    });
  }

  /** The wallet a client key may use now, or null (unknown, revoked or expired). */
  async walletForClient(clientPubkey: string): Promise<WalletRow | null> {
    const rows = await this.db.query<{ wallet_id: string }>(
      `SELECT wallet_id FROM wf_connections WHERE client_pubkey = $1 AND revoked_at_s IS NULL
       AND (expires_at_s IS NULL OR expires_at_s > $2)`,
      [clientPubkey, this.nowS()],
    );
    const id = rows.rows[0]?.wallet_id;
    return id ? this.walletIn(this.db, id) : null;
  }

  /**
   * Kill, pause or revive a wallet, a group or the whole fleet of an owner. From this commit on no
   * payment of theirs starts: a payment start locks the wallet row and the switch rows, as this does.
   * Kill also cancels pending approvals. Reviving a killed scope is its own explicit action.
   */
  async setSwitch(
    owner: string,
    target: { wallet: string } | { group: string } | { fleet: true },
    status: SwitchStatus,
  ): Promise<{ scope: string; status: SwitchStatus; previous: SwitchStatus }> {
    return this.db.transaction(async (tx) => {
      let scope: string;
      let previous: SwitchStatus;
      if ('wallet' in target) {
        const wallet = await this.walletIn(tx, target.wallet, true);
        if (!wallet || wallet.owner !== owner)
          throw new FedAiError('NOT_FOUND', 'No wallet of yours has this id.');
        scope = `wallet:${wallet.id}`;
        previous = wallet.status;
        await tx.query('UPDATE wf_wallets SET status = $2 WHERE id = $1', [wallet.id, status]);
      } else {
        await this.ensureOwner(tx, owner);
        scope = 'group' in target ? groupScope(owner, target.group) : fleetScope(owner);
        const row = await tx.query<{ status: SwitchStatus }>(
          'SELECT status FROM wf_switches WHERE scope = $1 FOR UPDATE',
          [scope],
        );
        if (!row.rows[0]) throw new FedAiError('NOT_FOUND', 'No such group.');
        previous = row.rows[0].status;
        await tx.query('UPDATE wf_switches SET status = $2, updated_at_s = $3 WHERE scope = $1', [
          scope,
          status,
          this.nowS(),
        ]);
      }
      if (previous === 'killed' && status === 'paused')
        throw new FedAiError(
          'INVALID_REQUEST',
          'A killed scope is revived first (status active), then paused.',
        );
      if (status === 'killed') await this.cancelApprovals(tx, owner, target);
      await this.audit.append(tx, {
        actor: owner,
        action: status === 'killed' ? 'kill' : status === 'paused' ? 'pause' : 'revive',
        subject: scope,
        data: { previous, status },
      });
      this.metrics?.switches.inc({ status });
      return { scope, status, previous };
    });
  }

  private async cancelApprovals(
    tx: Queryable,
    owner: string,
    target: { wallet: string } | { group: string } | { fleet: true },
  ): Promise<void> {
    // Which wallets of the owner: one, a group, or all of them.
    const [condition, params] =
      'wallet' in target
        ? ['w.id = $2', [owner, target.wallet]]
        : 'group' in target
          ? ['w.group_id = $2', [owner, target.group]]
          : ['true', [owner]];
    await tx.query(
      `UPDATE wf_approvals a SET state = 'cancelled' FROM wf_wallets w
       WHERE a.wallet_id = w.id AND w.owner = $1 AND a.state IN ('pending', 'approved') AND ${condition}`,
      params,
    );
  }

  /** The switch status that applies to a wallet (killed beats paused beats active), read FOR SHARE. */
  async effectiveStatus(tx: Queryable, wallet: WalletRow): Promise<SwitchStatus> {
    const scopes = [
      fleetScope(wallet.owner),
      ...(wallet.group_id ? [groupScope(wallet.owner, wallet.group_id)] : []),
    ];
    const rows = await tx.query<{ status: SwitchStatus }>(
      'SELECT status FROM wf_switches WHERE scope = ANY($1) ORDER BY scope FOR SHARE',
      [scopes],
    );
    const all = [wallet.status, ...rows.rows.map((r) => r.status)];
    return all.includes('killed') ? 'killed' : all.includes('paused') ? 'paused' : 'active';
  }

  /** An invoice paid into a wallet (walletId) or the owner's treasury (null). */
  async makeInvoice(
    owner: string,
    walletId: string | null,
    input: { amountMsat: number; description: string; expirySeconds: number },
  ) {
    const invoice = await this.backend.createInvoice(input);
    await this.db.query(
      `INSERT INTO wf_invoices (payment_hash, wallet_id, owner, bolt11, amount_msat, description, created_at_s, expires_at_s)
       VALUES ($1,$2,$3,$4,$5,$6,$7,$8)`,
      [
        invoice.paymentHash,
        walletId,
        owner,
        invoice.bolt11,
        invoice.amountMsat,
        input.description,
        invoice.createdAtS,
        invoice.expiresAtS,
      ],
    );
    return invoice;
  }

  /**
   * Credits invoices the backend reports settled, each once (transfer id from its payment hash),
   * with the row marked settled in the same transaction. Returns what was credited (notifications).
   */
  async creditSettledInvoices(limit = 100): Promise<{ walletId: string | null; paymentHash: string }[]> {
    const open = await this.db.query<{
      payment_hash: string;
      wallet_id: string | null;
      owner: string;
      amount_msat: string;
    }>(
      `SELECT payment_hash, wallet_id, owner, amount_msat FROM wf_invoices
       WHERE settled_at_s IS NULL AND expires_at_s > $1 ORDER BY created_at_s LIMIT $2`,
      [this.nowS() - 60, Math.min(Math.max(limit, 1), 1000)],
    );
    const credited: { walletId: string | null; paymentHash: string }[] = [];
    for (const row of open.rows) {
      const invoice = await this.backend.lookupInvoice(row.payment_hash).catch(() => null);
      if (invoice?.state !== 'settled' || !invoice.preimage) continue;
      const account = row.wallet_id ? WF_ACCOUNTS.wallet(row.wallet_id) : WF_ACCOUNTS.treasury(row.owner);
      const done = await this.db.transaction(async (tx) => {
        const marked = await tx.query(
          'UPDATE wf_invoices SET settled_at_s = $2, preimage = $3 WHERE payment_hash = $1 AND settled_at_s IS NULL RETURNING payment_hash',
          [row.payment_hash, invoice.settledAtS ?? this.nowS(), invoice.preimage],
        );
        if (marked.rows.length === 0) return false;
        const [result] = await this.ledger.createTransfersIn(tx, [
          {
            id: WF_TRANSFERS.incoming(row.payment_hash),
            kind: 'single',
            debitAccountId: WF_ACCOUNTS.lightning,
            creditAccountId: account,
            amountMsat: Number(row.amount_msat),
            userData: row.payment_hash,
          },
        ]);
        if (result?.code !== 'OK' && result?.code !== 'EXISTS')
          throw new FedAiError('LEDGER_REJECTED', `crediting ${row.payment_hash}: ${result?.code}`);
        await this.audit.append(tx, {
          actor: 'system',
          action: 'funding.received',
          subject: row.wallet_id ?? `treasury:${row.owner}`,
          data: { payment_hash: row.payment_hash, amount_msat: Number(row.amount_msat) },
        });
        return true;
      });
      if (done) credited.push({ walletId: row.wallet_id, paymentHash: row.payment_hash });
    }
    return credited;
  }

  /** Treasury -> wallet, idempotent by the owner's operation id. */
  async moveFunds(owner: string, walletId: string, amountMsat: number, opId: string): Promise<void> {
    await this.wallet(owner, walletId);
    await this.db.transaction(async (tx) => {
      await this.ensureOwner(tx, owner);
      const [result] = await this.ledger.createTransfersIn(tx, [
        {
          id: WF_TRANSFERS.move(`${owner}:${opId}`),
          kind: 'single',
          debitAccountId: WF_ACCOUNTS.treasury(owner),
          creditAccountId: WF_ACCOUNTS.wallet(walletId),
          amountMsat,
          userData: opId,
        },
      ]);
      if (result?.code === 'EXISTS') return;
      if (result?.code === 'EXCEEDS_CREDITS')
        throw new FedAiError('INSUFFICIENT_BALANCE', `The treasury cannot cover ${amountMsat} msat.`);
      if (result?.code === 'EXISTS_WITH_DIFFERENT_FIELDS')
        throw new FedAiError('IDEMPOTENCY_CONFLICT', 'This operation id was used for another move.');
      if (result?.code !== 'OK') throw new FedAiError('LEDGER_REJECTED', `move: ${result?.code}`);
      await this.audit.append(tx, {
        actor: owner,
        action: 'funding.move',
        subject: walletId,
        data: { amount_msat: amountMsat, op_id: opId },
      });
    });
  }

  async balanceMsat(accountId: string): Promise<number> {
    const [account] = await this.ledger.lookupAccounts([accountId]);
    return account ? availableMsat(account) : 0;
  }

  /** Approve or deny a challenged payment; approving lets the same invoice through once. */
  async decideApproval(owner: string, approvalId: string, approve: boolean): Promise<{ state: string }> {
    return this.db.transaction(async (tx) => {
      const rows = await tx.query<{
        wallet_id: string;
        state: string;
        expires_at_s: string;
        payment_hash: string;
      }>(
        `SELECT a.wallet_id, a.state, a.expires_at_s, a.payment_hash FROM wf_approvals a JOIN wf_wallets w ON w.id = a.wallet_id
         WHERE a.id = $1 AND w.owner = $2 FOR UPDATE OF a`,
        [approvalId, owner],
      );
      const row = rows.rows[0];
      if (!row) throw new FedAiError('NOT_FOUND', 'No approval of yours has this id.');
      if (row.state !== 'pending' || Number(row.expires_at_s) <= this.nowS())
        throw new FedAiError(
          'INVALID_REQUEST',
          `The approval is ${row.state === 'pending' ? 'expired' : row.state}.`,
        );
      const state = approve ? 'approved' : 'denied';
      await tx.query('UPDATE wf_approvals SET state = $2 WHERE id = $1', [approvalId, state]);
      await this.audit.append(tx, {
        actor: owner,
        action: approve ? 'approval.approve' : 'approval.deny',
        subject: row.wallet_id,
        data: { approval_id: approvalId, payment_hash: row.payment_hash },
      });
      return { state };
    });
  }

  async pendingApprovals(owner: string) {
    const rows = await this.db.query(
      `SELECT a.id, a.wallet_id, a.payment_hash, a.amount_msat, a.created_at_s, a.expires_at_s FROM wf_approvals a
       JOIN wf_wallets w ON w.id = a.wallet_id WHERE w.owner = $1 AND a.state = 'pending' AND a.expires_at_s > $2
       ORDER BY a.created_at_s LIMIT 500`,
      [owner, this.nowS()],
    );
    return rows.rows;
  }

  /** An agent asks its owner for funds (authenticated by its connection key). */
  async requestFunding(clientPubkey: string, amountMsat: number, reason: string): Promise<{ id: string }> {
    const wallet = await this.walletForClient(clientPubkey);
    if (!wallet) throw new FedAiError('UNAUTHORIZED', 'No wallet is connected to this key.');
    const id = `fr_${randomUUID().replaceAll('-', '').slice(0, 16)}`;
    await this.db.transaction(async (tx) => {
      await this.walletIn(tx, wallet.id, true);
      const pending = await tx.query<{ n: string }>(
        "SELECT count(*) AS n FROM wf_funding_requests WHERE wallet_id = $1 AND state = 'pending'",
        [wallet.id],
      );
      if (Number(pending.rows[0]?.n ?? 0) >= MAX_PENDING_FUNDING_REQUESTS)
        throw new FedAiError(
          'RATE_LIMITED',
          `at most ${MAX_PENDING_FUNDING_REQUESTS} funding requests may wait`,
        );
      await tx.query(
        `INSERT INTO wf_funding_requests (id, wallet_id, client_pubkey, amount_msat, reason, state, created_at_s)
         VALUES ($1,$2,$3,$4,$5,'pending',$6)`,
        [id, wallet.id, clientPubkey, amountMsat, reason, this.nowS()],
      );
      await this.audit.append(tx, {
        actor: clientPubkey,
        action: 'funding.request',
        subject: wallet.id,
        data: { request_id: id, amount_msat: amountMsat, reason },
      });
    });
    this.metrics?.fundingRequests.inc({ state: 'requested' });
    return { id };
  }

  async fundingRequests(owner: string) {
    const rows = await this.db.query(
      `SELECT f.id, f.wallet_id, f.amount_msat, f.reason, f.created_at_s FROM wf_funding_requests f
       JOIN wf_wallets w ON w.id = f.wallet_id WHERE w.owner = $1 AND f.state = 'pending' ORDER BY f.created_at_s LIMIT 500`,
      [owner],
    );
    return rows.rows;
  }

  /** Approving moves the amount from the treasury (op id = the request id: approved twice, moved once). */
  async decideFunding(owner: string, requestId: string, approve: boolean): Promise<{ state: string }> {
    const rows = await this.db.query<{ wallet_id: string; amount_msat: string; state: string }>(
      `SELECT f.wallet_id, f.amount_msat, f.state FROM wf_funding_requests f JOIN wf_wallets w ON w.id = f.wallet_id
       WHERE f.id = $1 AND w.owner = $2`,
      [requestId, owner],
    );
    const row = rows.rows[0];
    if (!row) throw new FedAiError('NOT_FOUND', 'No funding request of yours has this id.');
    if (row.state !== 'pending')
      throw new FedAiError('INVALID_REQUEST', `The request is already ${row.state}.`);
    if (approve) await this.moveFunds(owner, row.wallet_id, Number(row.amount_msat), `fr-${requestId}`);
    const state = approve ? 'approved' : 'denied';
    await this.db.transaction(async (tx) => {
      await tx.query(
        "UPDATE wf_funding_requests SET state = $2, decided_at_s = $3 WHERE id = $1 AND state = 'pending'",
        [requestId, state, this.nowS()],
      );
      await this.audit.append(tx, {
        actor: owner,
        action: approve ? 'funding.approve' : 'funding.deny',
        subject: row.wallet_id,
        data: { request_id: requestId, amount_msat: Number(row.amount_msat) },
      });
    });
    this.metrics?.fundingRequests.inc({ state });
    return { state };
  }

  get approvalTtl(): number {
    return this.approvalTtlS;
  }
}
