// A bounded ring of the last requests' metadata for the operator dashboard: when, which model and
// node, the outcome's reason code, cost, tokens, latency and the receipt's event id. Never a
// prompt, an output, a caller's id or a key: only what the router measured or the node signed.

import type { RecentRequest } from '@fed-ai/dashboard';

export type { RecentRequest };

const RECENT_REQUESTS_DEFAULT = 500;

export class RecentRequests {
  private readonly ring: (RecentRequest | undefined)[];
  private next = 0;
  private count = 0;

  constructor(readonly capacity = RECENT_REQUESTS_DEFAULT) {
    if (!Number.isSafeInteger(capacity) || capacity < 1 || capacity > 100_000)
      throw new Error('RecentRequests: capacity must be 1..100000');
    this.ring = new Array(capacity);
  }

  add(entry: RecentRequest): void {
    this.ring[this.next] = entry;
    this.next = (this.next + 1) % this.capacity;
    this.count = Math.min(this.capacity, this.count + 1);
  }

  /** Newest first, at most `limit`. */
  list(limit = this.capacity): RecentRequest[] {
    const out: RecentRequest[] = [];
    for (let i = 1; i <= Math.min(limit, this.count); i++) {
      const entry = this.ring[(this.next - i + this.capacity) % this.capacity];
      if (entry) out.push(entry);
    }
    return out;
  }

  /** Requests and earnings per node over what the ring holds. */
  perNode(): Map<string, { requests: number; earnedMsat: number }> {
    const totals = new Map<string, { requests: number; earnedMsat: number }>();
    for (const entry of this.list()) {
      if (!entry.node || entry.outcome !== 'OK') continue;
      const t = totals.get(entry.node) ?? { requests: 0, earnedMsat: 0 };
      t.requests += 1;
      t.earnedMsat += entry.cost_msat;
      totals.set(entry.node, t);
    }
    return totals;
  }
}

/** The entry for a request a node served (cost and tokens as the node signed them). */
export function servedEntry(
  model: string,
  startedMs: number,
  reservedMsat: number,
  result: {
    node: { id: string };
    record: { cost_msat: number; tokens_in: number; tokens_out: number };
    metering: { id: string };
    attempts: number;
  },
): RecentRequest {
  return {
    at_ms: startedMs,
    model,
    node: result.node.id,
    outcome: 'OK',
    cost_msat: result.record.cost_msat,
    reserved_msat: reservedMsat,
    tokens_in: result.record.tokens_in,
    tokens_out: result.record.tokens_out,
    latency_ms: Math.max(0, Date.now() - startedMs),
    attempts: result.attempts,
    receipt_id: result.metering.id,
  };
}

/** The entry for a request whose dispatch failed: its reason code only, never the message. */
export function failedEntry(
  model: string,
  startedMs: number,
  reservedMsat: number,
  error: unknown,
): RecentRequest {
  const code = (error as { code?: unknown } | null)?.code;
  return {
    at_ms: startedMs,
    model,
    node: null,
    outcome: typeof code === 'string' && /^[A-Z][A-Z0-9_]{0,63}$/.test(code) ? code : 'INTERNAL',
    cost_msat: 0,
    reserved_msat: reservedMsat,
    tokens_in: 0,
    tokens_out: 0,
    latency_ms: Math.max(0, Date.now() - startedMs),
    attempts: 0,
    receipt_id: null,
  };
}
