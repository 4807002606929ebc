// The money seam of the router. A request reserves its maximum cost before dispatch, captures the
// node-signed cost after the answer went out, and releases the reservation on failure. Captures
// (and releases whose reserve had an unknown outcome) go through a durable outbox, so an
// unreachable settlement service delays a charge but never drops it.
// FreePayments is the real mode of a free network (all prices 0, or no settlement service): it
// records nothing and charges nothing.
import { randomUUID } from 'node:crypto';
import { GroupCommit, type ItemOutcome, readErrorCode } from '@fed-ai/kit';
import {
  type ChannelKeys,
  createEnvelope,
  createMacEnvelope,
  type Envelope,
  FedAiError,
  isReasonCode,
  KIND,
  SETTLEMENT_BATCH_MAX,
  type SettlementRequest,
} from '@fed-ai/protocol';
import { request } from 'undici';
import { z } from 'zod';
import type { HeldReservations } from './held-reservations';
import type { OutboxRow, SendOutcome, SettlementOutbox } from './settlement-outbox';
import { type Draw, SpendingLeases } from './spending-leases';

export interface Reservation {
  opId: string;
  amountMsat: number;
  /** Written down in held-reservations.ts: its record goes once its fate is durable. */
  recorded?: boolean;
  /** Drawn from a spending lease instead of a reservation of its own. */
  lease?: Draw;
}

export interface Payments {
  readonly mode: 'free' | 'settlement';
  /**
   * Holds `amountMsat` of the payer's tab for the request. With `ahead`, the bound may be drawn
   * from the payer's spending lease instead (callers dispatch with `opId`).
   */
  reserve(input: {
    requestId: string;
    payer: string;
    amountMsat: number;
    ahead?: boolean;
  }): Promise<Reservation>;
  /** Closes the payer's spending leases (before its tab is shown or refunded). */
  releaseAhead(payer: string): Promise<void>;
  close(): Promise<void>;
  /** Durable once it returns or throws SETTLEMENT_UNAVAILABLE: the outbox retries until confirmed. */
  capture(
    reservation: Reservation,
    input: { amountMsat: number; node: string; metering: Envelope },
  ): Promise<void>;
  release(reservation: Reservation): Promise<void>;
  /** Charges a request a peer router served: its signed cost plus the offload fee (durable). */
  captureOffload(
    reservation: Reservation,
    input: { amountMsat: number; peer: string; result: Envelope },
  ): Promise<void>;
}

const opAnswerSchema = z.object({
  op_id: z.string().max(200),
  ok: z.boolean(),
  balance_msat: z.number().int().nonnegative().optional(),
  charged_msat: z.number().int().nonnegative().optional(),
});
type OpAnswer = z.infer<typeof opAnswerSchema>;
const errorMessageSchema = z.object({ error: z.object({ message: z.string().max(1_000) }) });
const batchItemSchema = z.union([
  opAnswerSchema.extend({ ok: z.literal(true) }),
  z.object({
    op_id: z.string().max(200),
    ok: z.literal(false),
    status: z.number().int(),
    code: z.string().max(100),
    message: z.string().max(1_000),
  }),
]);
const batchAnswerSchema = z.object({
  ok: z.literal(true),
  results: z.array(batchItemSchema).max(SETTLEMENT_BATCH_MAX),
});

/** The operations a lane batches (a federation offload capture always goes alone). */
type BatchableOp = Extract<
  SettlementRequest,
  { op: 'reserve' | 'capture' | 'release' | 'open_lease' | 'close_lease' }
>;
type CaptureOp = Extract<SettlementRequest, { op: 'capture' }>;

/** Refusals (4xx) are final; only an unreachable or failing service is worth another try. */
function refusalError(status: number, code: string | undefined, message: string | undefined): FedAiError {
  if (status >= 500) return new FedAiError('SETTLEMENT_UNAVAILABLE', `settlement answered ${status}`);
  return new FedAiError(code && isReasonCode(code) ? code : 'SETTLEMENT_UNAVAILABLE', message);
}
function refusal(status: number, body: unknown): FedAiError {
  const message = errorMessageSchema.safeParse(body);
  return refusalError(
    status,
    readErrorCode(body, 'SETTLEMENT_UNAVAILABLE'),
    message.success ? message.data.error.message : undefined,
  );
}
const unreadable = () =>
  new FedAiError('SETTLEMENT_UNAVAILABLE', 'The settlement service gave an unreadable answer.');

/** How long a capture or release waits to share a batch (nobody waits for them). */
const DEFAULT_BATCH_LINGER_MS = 50;
/**
 * How long a lease's opening waits: briefly, since a payer without a lease reserves on its
 * requests' critical path until the lease is open.
 */
const AHEAD_LINGER_MS = 5;

/** How long the undo of a reserve or lease opening with an unknown outcome keeps being re-sent. */
const UNKNOWN_RESERVE_WATCH_MS = 60_000;

export class FreePayments implements Payments {
  readonly mode = 'free' as const;
  async reserve(input: { requestId: string }): Promise<Reservation> {
    return { opId: input.requestId, amountMsat: 0 };
  }
  async capture(): Promise<void> {}
  async release(): Promise<void> {}
  async captureOffload(): Promise<void> {}
  async releaseAhead(): Promise<void> {}
  async close(): Promise<void> {}
}

/**
 * Payments through the settlement service: each operation is a settlement envelope (kind 28123)
 * signed by this router, idempotent by its op id, so retries after timeouts are safe.
 */
export class SettlementPayments implements Payments {
  readonly mode = 'settlement' as const;
  /** Spending leases for well-funded payers (spending-leases.ts); absent when turned off. */
  private readonly leases: SpendingLeases | null;
  private readonly spot: GroupCommit<BatchableOp, OpAnswer>;
  private readonly background: GroupCommit<BatchableOp, OpAnswer>;
  private readonly refills: GroupCommit<BatchableOp, OpAnswer>;

  constructor(
    private readonly options: {
      url: string;
      settlementPubkey: string;
      secretKey: Uint8Array;
      /** Set when settlement takes MAC envelopes (its /v1/info says `mac-v1`): then no signature per batch. */
      channelKeys?: ChannelKeys | undefined;
      reservationTimeoutS: number;
      requestTimeoutMs?: number;
      outbox: SettlementOutbox;
      /** Requests' bounds a new spending lease holds (0: no leases, reserve every request on the spot). */
      reserveAheadSlots?: number;
      /** Where lease and reservation ids are written down, so a crash does not leave them held (held-reservations.ts). */
      held?: HeldReservations;
      /** How long background operations wait to share a batch envelope (0: natural batching only). */
      batchLingerMs?: number;
      onError?: (error: unknown) => void;
    },
  ) {
    // Three lanes of batching: a reserve on a request's critical path never waits for a linger,
    // leases' openings wait a little, captures, releases and lease closes longest.
    this.spot = new GroupCommit((ops) => this.sendOps(ops), { maxBatch: SETTLEMENT_BATCH_MAX });
    this.background = new GroupCommit((ops) => this.sendOps(ops), {
      maxBatch: SETTLEMENT_BATCH_MAX,
      lingerMs: options.batchLingerMs ?? DEFAULT_BATCH_LINGER_MS,
    });
    this.refills = new GroupCommit((ops) => this.sendOps(ops), {
      maxBatch: SETTLEMENT_BATCH_MAX,
      lingerMs: Math.min(AHEAD_LINGER_MS, options.batchLingerMs ?? AHEAD_LINGER_MS),
    });
    const leaseRequests = options.reserveAheadSlots ?? 0;
    const held = options.held;
    this.leases =
      leaseRequests > 0
        ? new SpendingLeases({
            leaseRequests,
            // Half the lease's life at settlement: a request drawn late still captures in time.
            maxDrawAgeMs: (options.reservationTimeoutS * 1000) / 2,
            open: async (leaseId, payer, amountMsat) => ({
              balanceMsat: (await this.openLease(leaseId, payer, amountMsat)).balance_msat,
            }),
            close: (leaseId) => this.closeLease(leaseId),
            ...(held ? { record: (ids) => held.record(ids), forget: (id) => held.forget(id) } : {}),
            ...(options.onError ? { onError: options.onError } : {}),
          })
        : null;
    this.leases?.start();
  }

  /** Reservations made so far: drawn from a lease, and made on the spot. */
  readonly reservations = { ahead: 0, spot: 0 };
  /** Money held in open spending leases right now. */
  get heldAhead(): number {
    return this.leases?.heldMsat ?? 0;
  }

  async releaseAhead(payer: string): Promise<void> {
    await this.leases?.releasePayer(payer);
  }

  async close(): Promise<void> {
    await this.leases?.close();
  }

  private async openLease(leaseId: string, payer: string, amountMsat: number): Promise<OpAnswer> {
    const open: BatchableOp = {
      op: 'open_lease',
      op_id: leaseId,
      account: payer,
      amount_msat: amountMsat,
      timeout_s: this.options.reservationTimeoutS,
    };
    return this.hold(open, this.refills, { op: 'close_lease', op_id: leaseId });
  }

  /**
   * Sends an operation that holds money (a reserve, a lease's opening). One that timed out here
   * may still commit at settlement: its undo is kept re-sent through the outbox for a while.
   */
  private async hold(
    payload: BatchableOp,
    lane: GroupCommit<BatchableOp, OpAnswer>,
    undo: Extract<BatchableOp, { op: 'release' | 'close_lease' }>,
  ): Promise<OpAnswer> {
    try {
      return await this.op(payload, lane);
    } catch (error) {
      if (error instanceof FedAiError && error.code === 'SETTLEMENT_UNAVAILABLE')
        await this.options.outbox
          .add(undo.op_id, 'release', undo, { repeatForMs: UNKNOWN_RESERVE_WATCH_MS })
          .catch(() => {});
      throw error;
    }
  }

  /** Closes a lease (idempotent at settlement); through the outbox when settlement is down. */
  async closeLease(leaseId: string): Promise<void> {
    const close: BatchableOp = { op: 'close_lease', op_id: leaseId };
    try {
      await this.op(close, this.background, 2);
    } catch (error) {
      if (!(error instanceof FedAiError && error.code === 'SETTLEMENT_UNAVAILABLE')) throw error;
      await this.options.outbox.add(leaseId, 'release', close);
    }
  }

  /** The outbox's sender: one attempt, and whether to retry. */
  async sendOutboxRow(row: OutboxRow): Promise<SendOutcome> {
    try {
      const payload = row.payload as SettlementRequest;
      // Outbox rows are captures, releases, lease closes and offload captures; only the last goes alone.
      if (payload.op === 'capture' || payload.op === 'release' || payload.op === 'close_lease')
        await this.background.submit(payload);
      else await this.sendAlone(payload);
      return 'done';
    } catch (error) {
      if (error instanceof FedAiError && error.code === 'SETTLEMENT_UNAVAILABLE') return 'retry';
      return 'refused';
    }
  }

  /** One operation, retried on an unreachable or failing service (refusals are final). */
  private async op(
    payload: BatchableOp,
    lane: GroupCommit<BatchableOp, OpAnswer>,
    attempts = 1,
  ): Promise<OpAnswer> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await lane.submit(payload);
      } catch (error) {
        const retry = error instanceof FedAiError && error.code === 'SETTLEMENT_UNAVAILABLE';
        if (!retry || attempt >= attempts) throw error;
      }
      await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
    }
  }

  /**
   * Sends operations that met in a lane: one alone as itself, several as one `batch` envelope
   * whose results settlement answers one by one, each item its own outcome.
   */
  private async sendOps(payloads: BatchableOp[]): Promise<ItemOutcome<OpAnswer>[]> {
    const [only] = payloads;
    if (only && payloads.length === 1) {
      try {
        return [{ ok: true, value: await this.sendAlone(only) }];
      } catch (error) {
        return [{ ok: false, error }];
      }
    }
    let answer: { status: number; body: unknown };
    try {
      answer = await this.post({ op: 'batch', ops: payloads });
    } catch (error) {
      return payloads.map(() => ({ ok: false, error }));
    }
    // A refused batch (too large, say) is tried again op by op: the group commit does that when
    // the write throws. An outage fails them all at once (no queue of timeouts).
    if (answer.status !== 200 && answer.status < 500) throw refusal(answer.status, answer.body);
    const batch = batchAnswerSchema.safeParse(answer.body);
    if (answer.status !== 200 || !batch.success || batch.data.results.length !== payloads.length) {
      const error = answer.status === 200 ? unreadable() : refusal(answer.status, answer.body);
      return payloads.map(() => ({ ok: false, error }));
    }
    return batch.data.results.map((item, i): ItemOutcome<OpAnswer> => {
      if (item.op_id !== payloads[i]?.op_id) return { ok: false, error: unreadable() };
      if (item.ok) return { ok: true, value: item };
      return { ok: false, error: refusalError(item.status, item.code, item.message) };
    });
  }

  /** One operation in its own envelope: its answer, or the refusal or outage as a FedAiError. */
  private async sendAlone(payload: SettlementRequest): Promise<OpAnswer> {
    const { status, body } = await this.post(payload);
    if (status !== 200) throw refusal(status, body);
    // A peer's answer is validated, never cast: an unreadable 200 counts as unavailable.
    const answer = opAnswerSchema.safeParse(body);
    if (answer.success && answer.data.ok) return answer.data;
    throw unreadable();
  }

  /** Signs (or MACs) and posts one envelope; an unreachable service is SETTLEMENT_UNAVAILABLE. */
  private async post(payload: SettlementRequest): Promise<{ status: number; body: unknown }> {
    // A nonce makes each attempt a distinct envelope: a retry in the same second is not a replay.
    const options = { audience: this.options.settlementPubkey, tags: [['nonce', randomUUID()]] };
    const envelope = this.options.channelKeys
      ? createMacEnvelope(KIND.settlementRequest, payload, options, this.options.channelKeys)
      : createEnvelope(KIND.settlementRequest, payload, options, this.options.secretKey);
    try {
      const response = await request(`${this.options.url}/v1/ops`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(envelope),
        signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 5_000),
      });
      const body: unknown = await response.body.json().catch(() => null);
      return { status: response.statusCode, body };
    } catch {
      throw new FedAiError('SETTLEMENT_UNAVAILABLE', 'The settlement service did not answer.');
    }
  }

  async reserve(input: {
    requestId: string;
    payer: string;
    amountMsat: number;
    ahead?: boolean;
  }): Promise<Reservation> {
    const amountMsat = Math.max(1, input.amountMsat);
    const draw = input.ahead ? this.leases?.take(input.payer, amountMsat) : null;
    if (draw) {
      this.reservations.ahead += 1;
      return { opId: input.requestId, amountMsat, lease: draw };
    }
    this.reservations.spot += 1;
    // Written down while the reserve travels: a crash after it is released at the next start.
    const held = this.options.held;
    const recording = held?.recordOne(input.requestId).then(
      () => true,
      (error: unknown) => {
        this.options.onError?.(error);
        return false;
      },
    );
    let answer: OpAnswer;
    try {
      answer = await this.reserveNow(input.requestId, input.payer, amountMsat, this.spot);
    } catch (error) {
      if (await recording) held?.forget(input.requestId); // refused, or released through the outbox
      throw error;
    }
    if (input.ahead) this.leases?.noteBalance(input.payer, amountMsat, answer.balance_msat);
    return { opId: input.requestId, amountMsat, recorded: (await recording) ?? false };
  }

  private async reserveNow(
    opId: string,
    payer: string,
    amountMsat: number,
    lane: GroupCommit<BatchableOp, OpAnswer>,
  ): Promise<OpAnswer> {
    const reserve: BatchableOp = {
      op: 'reserve',
      op_id: opId,
      account: payer,
      amount_msat: amountMsat,
      timeout_s: this.options.reservationTimeoutS,
    };
    return this.hold(reserve, lane, { op: 'release', op_id: opId });
  }

  async capture(
    reservation: Reservation,
    input: { amountMsat: number; node: string; metering: Envelope },
  ): Promise<void> {
    const payload: CaptureOp = {
      op: 'capture',
      op_id: reservation.opId,
      amount_msat: input.amountMsat,
      node: input.node,
      metering: JSON.stringify(input.metering),
      ...(reservation.lease ? { lease_id: reservation.lease.leaseId } : {}),
    };
    // No await here: the record's object is not kept while settlement confirms (~100 ms under
    // load), only its text, so it dies young (issue 15).
    return this.captureOp(reservation, payload);
  }

  private async captureOp(reservation: Reservation, payload: CaptureOp): Promise<void> {
    const { lease } = reservation;
    // Written before the first try: from here on a crash or an outage only delays the charge.
    try {
      await this.options.outbox.add(reservation.opId, 'capture', payload, { inFlight: true });
    } catch (error) {
      // Not durable: the lease keeps the bound as spent (it may still be charged from a retry).
      if (lease) this.leases?.settle(lease, lease.amountMsat, false);
      throw error;
    }
    this.forgetHeld(reservation);
    if (!lease) {
      try {
        return await this.sendOwed(reservation.opId, () => this.op(payload, this.background));
      } catch (error) {
        // Settlement found the record unsound (its signature, say) and charged nothing: the
        // reservation goes back now instead of at its timeout. A retry of the same bytes fails too.
        if (error instanceof FedAiError && error.code === 'BAD_METERING')
          await this.release(reservation).catch(() => {});
        throw error;
      }
    }
    this.leases?.settle(lease, payload.amount_msat, true);
    try {
      await this.sendOwed(reservation.opId, () => this.op(payload, this.background));
    } finally {
      this.leases?.confirmed(lease);
    }
  }

  async captureOffload(
    reservation: Reservation,
    input: { amountMsat: number; peer: string; result: Envelope },
  ): Promise<void> {
    const payload: SettlementRequest = {
      op: 'capture_offload',
      op_id: reservation.opId,
      amount_msat: input.amountMsat,
      peer: input.peer,
      result: JSON.stringify(input.result),
    };
    await this.options.outbox.add(reservation.opId, 'capture', payload, { inFlight: true });
    this.forgetHeld(reservation);
    await this.sendOwed(reservation.opId, () => this.sendAlone(payload));
  }

  /**
   * Sends a capture already in the outbox: once confirmed its row goes (deleted with others, not
   * waited for); if the send fails the row is due for the outbox loop at once.
   */
  private async sendOwed(opId: string, send: () => Promise<unknown>): Promise<void> {
    try {
      await send();
    } catch (error) {
      await this.options.outbox.markDue(opId, 'capture').catch(() => {});
      throw error;
    }
    this.options.outbox.remove(opId, 'capture').catch(() => {}); // a row left behind is re-sent: idempotent
  }

  async release(reservation: Reservation): Promise<void> {
    // A lease's draw holds nothing of its own at settlement: its bound goes back to the lease.
    if (reservation.lease) return this.leases?.settle(reservation.lease, 0, false);
    try {
      await this.op({ op: 'release', op_id: reservation.opId }, this.background, 2);
    } catch (error) {
      if (!(error instanceof FedAiError && error.code === 'SETTLEMENT_UNAVAILABLE')) throw error;
      await this.options.outbox.add(reservation.opId, 'release', { op: 'release', op_id: reservation.opId });
    }
    this.forgetHeld(reservation);
  }

  /** A slot's capture or release is durable now: its held record may go. */
  private forgetHeld(reservation: Reservation): void {
    if (reservation.recorded) this.options.held?.forget(reservation.opId);
  }
}
