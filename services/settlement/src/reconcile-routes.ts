// `POST /v1/admin/reconcile` (NIP-98 by a `SETTLEMENT_OPERATOR_PUBKEYS` key, as the other operator
// routes): runs reconciliation now and answers its report (reconcile.ts). The body may narrow
// the run; it can never make a payment younger than a minute count as never sent.
import { receivedBody, verifyNip98Request } from '@fed-ai/kit';
import { FedAiError, type ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance } from 'fastify';
import { z } from 'zod';
import type { ReconcileOptions, ReconcileReport } from './reconcile';

const reconcileBodySchema = z
  .object({
    /** Most top-ups (and pending payments) this run looks at. */
    limit: z.number().int().min(1).max(1000).optional(),
    /** Pending payments younger than this are left to the call making them (≥ 60 s). */
    payment_grace_s: z
      .number()
      .int()
      .min(60)
      .max(30 * 86400)
      .optional(),
    /** A payment pending longer than this is reported stuck. */
    stuck_after_s: z
      .number()
      .int()
      .min(60)
      .max(365 * 86400)
      .optional(),
  })
  .strict();

export interface ReconcileRouteDeps {
  operators: Set<string>;
  replayStore: ReplayStore;
  publicUrl?: string | undefined;
  /** Absent: the route answers NOT_FOUND (a settlement built without a reconciler). */
  reconcile?: ((options: ReconcileOptions) => Promise<ReconcileReport>) | undefined;
}

export function addReconcileRoutes(app: FastifyInstance, deps: ReconcileRouteDeps): void {
  app.post('/v1/admin/reconcile', async (request) => {
    // Signature and signer first: a stranger's body is never parsed.
    await verifyNip98Request(request, {
      replayStore: deps.replayStore,
      allowed: deps.operators,
      publicUrl: deps.publicUrl,
    });
    const text = receivedBody(request);
    const input = reconcileBodySchema.parse(text.trim() === '' ? {} : JSON.parse(text));
    if (!deps.reconcile) throw new FedAiError('NOT_FOUND', 'no reconciler here');
    return deps.reconcile({
      ...(input.limit === undefined ? {} : { topupLimit: input.limit, paymentLimit: input.limit }),
      ...(input.payment_grace_s === undefined ? {} : { paymentGraceS: input.payment_grace_s }),
      ...(input.stuck_after_s === undefined ? {} : { stuckAfterS: input.stuck_after_s }),
    });
  });
}
