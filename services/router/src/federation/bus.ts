// What the auction needs from the relays (FederationRelays provides it): publish a signed event,
// and hold a subscription whose events arrive once each, signature-checked by the pool.
import type { Event, Filter } from 'nostr-tools';

export interface RelayBus {
  publish(event: Event): Promise<unknown>;
  subscribe(filters: Filter[], onEvent: (event: Event) => void): { close(): void };
}
