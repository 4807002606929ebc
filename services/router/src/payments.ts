// The money seam of the router. A request reserves its maximum cost before dispatch, captures the
// metered cost after the node's signed metering verifies, and releases the reservation on failure.
// FreePayments is the real mode of a free network (all prices 0, or no settlement service): it
// records nothing and charges nothing.
import type { Envelope } from '@fed-ai/protocol';

export interface Reservation {
  opId: string;
  amountMsat: number;
}

export interface Payments {
  readonly mode: 'free' | 'settlement';
  reserve(input: { requestId: string; payer: string; amountMsat: number }): Promise<Reservation>;
  capture(
    reservation: Reservation,
    input: { amountMsat: number; node: string; metering: Envelope },
  ): Promise<void>;
  release(reservation: Reservation): Promise<void>;
}

export class FreePayments implements Payments {
  readonly mode = 'free' as const;
  async reserve(input: { requestId: string }): Promise<Reservation> {
    return { opId: input.requestId, amountMsat: 0 };
  }
  async capture(): Promise<void> {}
  async release(): Promise<void> {}
}
