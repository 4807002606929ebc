// Payout routes. A node names where it is paid and reads its statements with requests NIP-98
// signed by its own key (the signer is the node: no route takes a node id); operators run
// payouts now (`POST /v1/admin/payouts/run`) besides the schedule.
import { rawBody, verifyNip98Request } from '@fed-ai/kit';
import type { ReplayStore } from '@fed-ai/protocol';
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { type Payouts, payoutDestinationSchema } from './payouts';

export interface PayoutRoutesDeps {
  payouts: Payouts;
  operators: ReadonlySet<string>;
  replayStore: ReplayStore;
  publicUrl?: string | undefined;
}

export function addPayoutRoutes(app: FastifyInstance, deps: PayoutRoutesDeps): void {
  const signer = (request: FastifyRequest, allowed?: ReadonlySet<string>) =>
    verifyNip98Request(request, { replayStore: deps.replayStore, allowed, publicUrl: deps.publicUrl });

  app.put('/v1/payouts/destination', async (request) => {
    const node = await signer(request);
    const destination = payoutDestinationSchema.parse(JSON.parse(rawBody(request)));
    await deps.payouts.setDestination(node, destination);
    return { node, destination: await deps.payouts.shownDestination(node) };
  });

  app.get('/v1/payouts', async (request) => {
    const node = await signer(request);
    return {
      node,
      destination: await deps.payouts.shownDestination(node),
      earnings_msat: await deps.payouts.earningsMsat(node),
      payouts: await deps.payouts.list(node),
    };
  });

  app.post('/v1/admin/payouts/run', async (request) => {
    await signer(request, deps.operators);
    return { outcomes: await deps.payouts.runOnce() };
  });
}
