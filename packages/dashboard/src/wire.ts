// The JSON rows the dashboard's pages read, shared by the services that answer them and the page.

/** One entry of the router's ring of recent requests (metadata only: never a prompt or an output). */
export interface RecentRequest {
  at_ms: number;
  model: string;
  /** The node that served (null when none did). */
  node: string | null;
  /** 'OK' or the reason code the caller got. */
  outcome: string;
  cost_msat: number;
  reserved_msat: number;
  tokens_in: number;
  tokens_out: number;
  latency_ms: number;
  attempts: number;
  /** The node-signed metering record's event id (the receipt the caller got). */
  receipt_id: string | null;
}

interface Sums {
  count: number;
  balance_msat: number;
  reserved_msat: number;
}

/** `GET /admin/dashboard/money`: settlement's overview (services/settlement/src/overview.ts), null in free mode. */
export interface MoneyAnswer {
  payments: string;
  overview: null | {
    fees: {
      router_fees_msat: number;
      last_24h: { requests: number; charged_msat: number; node_msat: number; router_msat: number };
    };
    tabs: Sums & { largest: { payer: string; balance_msat: number; reserved_msat: number }[] };
    payouts: {
      owed: Sums;
      recent: {
        payout_id: string;
        node: string;
        state: string;
        amount_msat: number;
        fee_msat: number | null;
        created_at_s: number;
      }[];
    };
  };
}

/** `GET /admin/dashboard/federation`: the relays and the peer table (empty with federation off). */
export interface FederationAnswer {
  enabled: boolean;
  relays: { url: string; connected: boolean }[];
  total: number;
  peers: {
    pubkey: string;
    name: string | null;
    url: string | null;
    allowed: boolean;
    trust: number;
    models: { id: string; input_msat_per_1k: number; output_msat_per_1k: number }[];
    status: { nodes_online: number; free_slots: number; load: number; accepting_offload: boolean } | null;
    answered: number;
    failed: number;
    disputes: number;
    latency_ms: number | null;
    last_seen_ms_ago: number;
  }[];
}
