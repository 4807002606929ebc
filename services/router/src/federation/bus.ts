// What the auction needs from the relays: publish a signed event, and subscribe with a filter
// (ready once every reachable relay has sent EOSE, so an ephemeral reply cannot be missed).
import type { SignedEvent } from '@fed-ai/protocol';

export interface BusFilter {
  kinds: number[];
  authors?: string[];
  since?: number;
  limit?: number;
  [tag: `#${string}`]: string[] | undefined;
}

export interface BusSubscription {
  /** Resolves when the relays acknowledged the subscription (EOSE), or after a short wait. */
  ready: Promise<void>;
  close(): void;
}

export interface RelayBus {
  publish(event: SignedEvent): Promise<void>;
  subscribe(filter: BusFilter, onEvent: (event: unknown) => void): BusSubscription;
}
