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
