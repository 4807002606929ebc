// `onSettled` for the adapters whose backend has no push we use (LNbits, LND, Core Lightning,
// NWC): the invoices an adapter created are remembered (bounded, oldest forgotten first) and polled
// with the adapter's own lookup while a listener is registered. A hint: settlement polls
// `lookupInvoice` itself, since a listener misses what settled while the process was down.
import type { Invoice } from './backend';

const MAX_LISTENERS = 64;
/** A watched invoice is dropped this long after it expired unpaid. */
const EXPIRED_GRACE_S = 60;

export interface InvoiceWatcherOptions {
  lookup: (paymentHash: string) => Promise<Invoice | null>;
  pollIntervalMs: number;
  maxWatched: number;
  nowS: () => number;
}

export class InvoiceWatcher {
  private readonly listeners = new Set<(invoice: Invoice) => void>();
  private readonly watched = new Map<string, { paymentHash: string; expiresAtS: number }>();
  private timer: NodeJS.Timeout | null = null;
  private polling = false;

  constructor(private readonly o: InvoiceWatcherOptions) {}

  watch(paymentHash: string, expiresAtS: number): void {
    this.watched.set(paymentHash, { paymentHash, expiresAtS });
    while (this.watched.size > this.o.maxWatched) {
      const oldest = this.watched.keys().next().value;
      if (oldest === undefined) break;
      this.watched.delete(oldest);
    }
  }

  onSettled(listener: (invoice: Invoice) => void): () => void {
    if (this.listeners.size >= MAX_LISTENERS) throw new RangeError(`more than ${MAX_LISTENERS} listeners`);
    this.listeners.add(listener);
    if (!this.timer) {
      this.timer = setInterval(() => void this.poll(), this.o.pollIntervalMs);
      this.timer.unref();
    }
    return () => {
      this.listeners.delete(listener);
      if (this.listeners.size === 0) this.stop();
    };
  }

  /** Stops polling (listeners stay registered but hear nothing more). */
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** One pass over the watched invoices (never two at once); returns how many settled. */
  async poll(): Promise<number> {
    if (this.polling) return 0;
    this.polling = true;
    let settled = 0;
    try {
      for (const entry of [...this.watched.values()]) {
        if (this.o.nowS() >= entry.expiresAtS + EXPIRED_GRACE_S) {
          this.watched.delete(entry.paymentHash);
          continue;
        }
        const invoice = await this.o.lookup(entry.paymentHash).catch(() => undefined);
        if (invoice === undefined) continue;
        if (invoice === null || invoice.state !== 'open') this.watched.delete(entry.paymentHash);
        if (invoice?.state !== 'settled') continue;
        settled += 1;
        for (const listener of this.listeners) {
          try {
            listener(invoice);
          } catch {
            // A listener's failure is its own.
          }
        }
      }
    } finally {
      this.polling = false;
    }
    return settled;
  }
}
