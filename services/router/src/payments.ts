// The money seam of the router. A request reserves its maximum cost before dispatch, captures the
// node-signed cost after the answer went out, and releases the reservation on failure. Captures
// (and releases whose reserve had an unknown outcome) go through a durable outbox, so an
// unreachable settlement service delays a charge but never drops it.
// FreePayments is the real mode of a free network (all prices 0, or no settlement service): it
// records nothing and charges nothing.
import { randomUUID } from 'node:crypto';
import { readErrorCode } from '@fed-ai/kit';
import { createEnvelope, type Envelope, FedAiError, KIND, type SettlementRequest } from '@fed-ai/protocol';
import { request } from 'undici';
import { z } from 'zod';
import { ReserveAhead } from './reserve-ahead';
import type { OutboxRow, SendOutcome, SettlementOutbox } from './settlement-outbox';

export interface Reservation {
  opId: string;
  amountMsat: number;
}

export interface Payments {
  readonly mode: 'free' | 'settlement';
  /**
   * Holds at least `amountMsat` of the payer's tab. With `ahead`, a slot reserved ahead may be
   * used instead: its op id is then the reservation's (callers dispatch with `opId`).
   */
  reserve(input: {
    requestId: string;
    payer: string;
    amountMsat: number;
    ahead?: boolean;
  }): Promise<Reservation>;
  /** Releases the payer's reservations held ahead (before its tab is shown or refunded). */
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

/** How long releases after a reserve with an unknown outcome keep being re-sent. */
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
  /** Reservations held ahead for well-funded payers (reserve-ahead.ts); absent when turned off. */
  private readonly ahead: ReserveAhead | null;

  constructor(
    private readonly options: {
      url: string;
      settlementPubkey: string;
      secretKey: Uint8Array;
      reservationTimeoutS: number;
      requestTimeoutMs?: number;
      outbox: SettlementOutbox;
      /** Slots per payer and amount bucket (0: reserve every request on the spot). */
      reserveAheadSlots?: number;
      onError?: (error: unknown) => void;
    },
  ) {
    const slots = options.reserveAheadSlots ?? 0;
    this.ahead =
      slots > 0
        ? new ReserveAhead({
            slotsPerBucket: slots,
            reserve: async (opId, payer, amountMsat) => ({
              balanceMsat: (await this.reserveNow(opId, payer, amountMsat)).balance_msat,
            }),
            release: (opId) => this.release({ opId, amountMsat: 0 }),
            ...(options.onError ? { onError: options.onError } : {}),
          })
        : null;
    this.ahead?.start();
  }

  /** Reservations made so far: held ahead and handed out, made on the spot, and slots held now. */
  readonly reservations = { ahead: 0, spot: 0 };
  get heldAhead(): number {
    return this.ahead?.held ?? 0;
  }

  async releaseAhead(payer: string): Promise<void> {
    await this.ahead?.releaseIdle(payer);
  }

  async close(): Promise<void> {
    await this.ahead?.close();
  }

  /** The outbox's sender: one attempt, and whether to retry. */
  async sendOutboxRow(row: OutboxRow): Promise<SendOutcome> {
    try {
      await this.op(row.payload as SettlementRequest);
      return 'done';
    } catch (error) {
      if (error instanceof FedAiError && error.code === 'SETTLEMENT_UNAVAILABLE') return 'retry';
      return 'refused';
    }
  }

  private async op(payload: SettlementRequest, attempts = 1): Promise<OpAnswer> {
    let last: unknown;
    for (let attempt = 1; attempt <= attempts; attempt++) {
      try {
        // A nonce makes each attempt a distinct envelope: a retry in the same second is not a replay.
        const envelope = createEnvelope(
          KIND.settlementRequest,
          payload,
          { audience: this.options.settlementPubkey, tags: [['nonce', randomUUID()]] },
          this.options.secretKey,
        );
        const response = await request(`${this.options.url}/v1/ops`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(envelope),
          signal: AbortSignal.timeout(this.options.requestTimeoutMs ?? 5_000),
        });
        const body: unknown = await response.body.json().catch(() => null);
        if (response.statusCode === 200) {
          // A peer's answer is validated, never cast: an unreadable 200 counts as unavailable.
          const answer = opAnswerSchema.safeParse(body);
          if (answer.success && answer.data.ok) return answer.data;
          throw new FedAiError('SETTLEMENT_UNAVAILABLE', 'The settlement service gave an unreadable answer.');
        }
        const code = readErrorCode(body, 'SETTLEMENT_UNAVAILABLE');
        const message = errorMessageSchema.safeParse(body);
        // Refusals are final; only an unreachable or failing service is worth another try.
        if (response.statusCode < 500)
          throw new FedAiError(code, message.success ? message.data.error.message : undefined);
        last = new FedAiError('SETTLEMENT_UNAVAILABLE', `settlement answered ${response.statusCode}`);
      } catch (error) {
        if (error instanceof FedAiError && error.code !== 'SETTLEMENT_UNAVAILABLE') throw error;
        last =
          error instanceof FedAiError
            ? error
            : new FedAiError('SETTLEMENT_UNAVAILABLE', 'The settlement service did not answer.');
      }
      if (attempt < attempts) await new Promise((r) => setTimeout(r, 100 * 2 ** attempt));
    }
    throw last;
  }

  async reserve(input: {
    requestId: string;
    payer: string;
    amountMsat: number;
    ahead?: boolean;
  }): Promise<Reservation> {
    const amountMsat = Math.max(1, input.amountMsat);
    const slot = input.ahead ? this.ahead?.take(input.payer, amountMsat) : null;
    if (slot) {
      this.reservations.ahead += 1;
      return { opId: slot.opId, amountMsat: slot.amountMsat };
    }
    this.reservations.spot += 1;
    const answer = await this.reserveNow(input.requestId, input.payer, amountMsat);
    if (input.ahead) this.ahead?.noteBalance(input.payer, amountMsat, answer.balance_msat);
    return { opId: input.requestId, amountMsat };
  }

  private async reserveNow(opId: string, payer: string, amountMsat: number): Promise<OpAnswer> {
    try {
      return await this.op({
        op: 'reserve',
        op_id: opId,
        account: payer,
        amount_msat: amountMsat,
        timeout_s: this.options.reservationTimeoutS,
      });
    } catch (error) {
      // A reserve that timed out here may still commit at settlement: keep releasing it for a while.
      if (error instanceof FedAiError && error.code === 'SETTLEMENT_UNAVAILABLE')
        await this.options.outbox
          .add(opId, 'release', { op: 'release', op_id: opId }, UNKNOWN_RESERVE_WATCH_MS)
          .catch(() => {});
      throw error;
    }
  }

  async capture(
    reservation: Reservation,
    input: { amountMsat: number; node: string; metering: Envelope },
  ): Promise<void> {
    const payload: SettlementRequest = {
      op: 'capture',
      op_id: reservation.opId,
      amount_msat: input.amountMsat,
      node: input.node,
      metering: JSON.stringify(input.metering),
    };
    // Written before the first try: from here on a crash or an outage only delays the charge.
    await this.options.outbox.add(reservation.opId, 'capture', payload);
    await this.op(payload);
    await this.options.outbox.remove(reservation.opId, 'capture');
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
    await this.options.outbox.add(reservation.opId, 'capture', payload);
    await this.op(payload);
    await this.options.outbox.remove(reservation.opId, 'capture');
  }

  async release(reservation: Reservation): Promise<void> {
    try {
      await this.op({ op: 'release', op_id: reservation.opId }, 2);
    } catch (error) {
      if (!(error instanceof FedAiError && error.code === 'SETTLEMENT_UNAVAILABLE')) throw error;
      await this.options.outbox.add(reservation.opId, 'release', { op: 'release', op_id: reservation.opId });
    }
  }
}
