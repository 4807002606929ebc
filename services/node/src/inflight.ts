// Generations in progress, by request id, so that the router that sent one can stop it early with a
// signed cancel (POST /v1/cancel). The stream then ends normally with a metering record, signed by
// this node, of what was generated up to the cancel: the node is paid for the work it did.
import { rawBody, sendError } from '@fed-ai/kit';
import {
  ENVELOPE_DEFAULTS,
  KIND,
  type ReplayStore,
  type VerifyOptions,
  verifyEnvelope,
} from '@fed-ai/protocol';
import type { FastifyInstance } from 'fastify';

interface Job {
  router: string;
  controller: AbortController;
}

export class InFlightJobs {
  private readonly jobs = new Map<string, Job>();

  constructor(private readonly maxJobs = 10_000) {}

  /** Tracks one generation; `end` must be called when it finishes. Null when the table is full. */
  start(requestId: string, router: string): { signal: AbortSignal; end(): void } | null {
    if (this.jobs.size >= this.maxJobs || this.jobs.has(requestId)) return null;
    const job = { router, controller: new AbortController() };
    this.jobs.set(requestId, job);
    return {
      signal: job.controller.signal,
      end: () => {
        if (this.jobs.get(requestId) === job) this.jobs.delete(requestId);
      },
    };
  }

  /** Stops the generation if `router` sent it. */
  cancel(requestId: string, router: string): boolean {
    const job = this.jobs.get(requestId);
    if (!job || job.router !== router) return false;
    job.controller.abort();
    return true;
  }

  get size(): number {
    return this.jobs.size;
  }
}

export function registerCancelRoute(
  app: FastifyInstance,
  deps: {
    pubkey: string;
    replayStore: ReplayStore;
    allowedRouters: Set<string>;
    jobs: InFlightJobs;
    channel: VerifyOptions<typeof KIND.inferenceCancel>['channel'];
  },
): void {
  app.post('/v1/cancel', async (request, reply) => {
    const verified = await verifyEnvelope(rawBody(request), {
      me: deps.pubkey,
      kinds: [KIND.inferenceCancel],
      maxBytes: 4096,
      channel: deps.channel,
    });
    if (!verified.ok) return sendError(reply, verified.code, verified.detail);
    const router = verified.envelope.pubkey;
    if (!deps.allowedRouters.has(router)) return sendError(reply, 'ROUTER_NOT_ALLOWED');
    // Replay ids are recorded only for allowed routers, after the signature (no rows for strangers).
    if (
      !(await deps.replayStore.checkAndRecord(
        verified.envelope.id,
        verified.envelope.created_at + ENVELOPE_DEFAULTS.windowS + 1,
        verified.envelope.created_at,
      ))
    )
      return sendError(reply, 'REPLAYED');
    return { ok: true, cancelled: deps.jobs.cancel(verified.payload.request_id, router) };
  });
}
