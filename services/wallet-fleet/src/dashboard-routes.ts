// The owner dashboard: the page (GET /dashboard, public: it holds no data) and the reads it needs
// beyond the owner API (who am I; switches, wallets with balance and effective status, recent
// payments in one answer). Each route is NIP-98-signed by a key in FLEET_OWNER_PUBKEYS; the signer
// is the owner and sees only their own fleet. Approvals and switches go through the owner API's
// existing routes. Bounded output; no invoice, preimage or description is shown.
import { addOperatorGuard, operatorOf, registerDashboard } from '@fed-ai/dashboard';
import type { ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import { WF_ACCOUNTS } from './accounts';
import { type Fleet, fleetScope, groupScope, type SwitchStatus } from './fleet';

export interface FleetDashboardDeps {
  fleet: Fleet;
  pubkey: string;
  owners: Set<string>;
  replayStore: ReplayStore;
  publicUrl?: string | undefined;
}

const MAX_WALLETS_SHOWN = 200;
export const overviewQuery = z.strictObject({
  payments: z.coerce.number().int().min(1).max(200).optional(),
});
const noQuery = z.strictObject({});

const rank: Record<SwitchStatus, number> = { active: 0, paused: 1, killed: 2 };

export function registerFleetDashboardRoutes(app: FastifyInstance, deps: FleetDashboardDeps): void {
  registerDashboard(app, { app: 'fleet' });
  const { fleet } = deps;
  app.register(async (scope) => {
    addOperatorGuard(scope, {
      allowed: deps.owners,
      replayStore: deps.replayStore,
      publicUrl: deps.publicUrl,
      signer: 'an owner key',
    });

    scope.get('/v1/dashboard/whoami', async (request) => {
      noQuery.parse(request.query);
      return { pubkey: operatorOf(request), role: 'owner', fleet_pubkey: deps.pubkey };
    });

    scope.get('/v1/dashboard/overview', async (request) => {
      const { payments: paymentLimit = 50 } = overviewQuery.parse(request.query);
      const owner = operatorOf(request);
      const switches = await fleet.db.query<{ scope: string; status: SwitchStatus; updated_at_s: string }>(
        `SELECT scope, status, updated_at_s FROM wf_switches WHERE scope = $1 OR scope LIKE $2
         ORDER BY scope LIMIT 200`,
        [fleetScope(owner), `${groupScope(owner, '').replace(/[%_\\]/g, '\\$&')}%`],
      );
      const status = new Map(switches.rows.map((s) => [s.scope, s.status]));
      const wallets = (await fleet.listWallets(owner)).slice(0, MAX_WALLETS_SHOWN);
      const shown = await Promise.all(
        wallets.map(async (w) => {
          // Killed beats paused beats active, as a payment start decides.
          const applying = [
            w.status,
            status.get(fleetScope(owner)) ?? 'active',
            ...(w.group_id ? [status.get(groupScope(owner, w.group_id)) ?? 'active'] : []),
          ].reduce((a, b) => (rank[b] > rank[a] ? b : a));
          return {
            id: w.id,
            name: w.name,
            group_id: w.group_id,
            status: w.status,
            effective_status: applying,
            balance_msat: await fleet.balanceMsat(WF_ACCOUNTS.wallet(w.id)),
            policy: w.policy,
            policy_version: w.policy_version,
          };
        }),
      );
      const payments = await fleet.db.query<{
        payment_hash: string;
        wallet_id: string;
        amount_msat: string;
        fee_msat: string | null;
        state: string;
        failure: string | null;
        created_at_s: string;
      }>(
        `SELECT p.payment_hash, p.wallet_id, p.amount_msat, p.fee_msat, p.state, p.failure, p.created_at_s
         FROM wf_payments p JOIN wf_wallets w ON w.id = p.wallet_id WHERE w.owner = $1
         ORDER BY p.created_at_s DESC, p.payment_hash LIMIT $2`,
        [owner, paymentLimit],
      );
      return {
        switches: switches.rows.map((s) => ({ ...s, updated_at_s: Number(s.updated_at_s) })),
        wallets: shown,
        payments: payments.rows.map((p) => ({
          ...p,
          amount_msat: Number(p.amount_msat),
          fee_msat: p.fee_msat === null ? null : Number(p.fee_msat),
          failure: p.failure?.slice(0, 80) ?? null,
          created_at_s: Number(p.created_at_s),
        })),
      };
    });
  });
}
