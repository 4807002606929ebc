// Stable reason codes: every refusal in fed-ai names one. A code never changes meaning once
// published; add new ones instead. Each has a human message, a hint for what to do, and the HTTP
// status services answer it with.
export interface ReasonInfo {
  status: number;
  message: string;
  hint: string;
}

const define = <T extends Record<string, ReasonInfo>>(table: T) => table;

export const REASONS = define({
  // Envelope verification, in the order checks run.
  ENVELOPE_TOO_LARGE: {
    status: 413,
    message: 'The envelope is larger than allowed.',
    hint: 'Send a smaller payload.',
  },
  BAD_JSON: { status: 400, message: 'The body is not valid JSON.', hint: 'Send a JSON-encoded Nostr event.' },
  BAD_SHAPE: {
    status: 400,
    message: 'The envelope is not a well-formed Nostr event.',
    hint: 'Send id, pubkey, created_at, kind, tags, content and sig as NIP-01 defines them.',
  },
  UNKNOWN_KIND: {
    status: 400,
    message: 'The event kind is not one this endpoint accepts.',
    hint: 'See docs/protocol.md for kinds.',
  },
  STALE: {
    status: 401,
    message: 'created_at is outside the accepted time window.',
    hint: 'Check the clock of the sender (NTP) and sign the message just before sending.',
  },
  WRONG_AUDIENCE: {
    status: 401,
    message: 'The envelope is addressed to someone else.',
    hint: 'Put the receiver public key in the "p" tag.',
  },
  EXPIRED: {
    status: 401,
    message: 'The envelope expiration (NIP-40) has passed.',
    hint: 'Sign a fresh message.',
  },
  BAD_PAYLOAD: {
    status: 400,
    message: 'The content does not match the schema of its kind.',
    hint: 'See docs/protocol.md for the payload of each kind.',
  },
  BAD_ID: {
    status: 401,
    message: 'The event id is not the hash of its content.',
    hint: 'Recompute the id per NIP-01.',
  },
  BAD_SIGNATURE: {
    status: 401,
    message: 'The signature does not verify.',
    hint: 'Sign the id with the key in pubkey (BIP-340).',
  },
  REPLAYED: {
    status: 409,
    message: 'This envelope was already used.',
    hint: 'Sign a new message for every request.',
  },
  // Keys.
  BAD_KEY: {
    status: 400,
    message: 'The key is not a valid hex or NIP-19 key.',
    hint: 'Use 64 hex characters, nsec1... or npub1....',
  },
  // Generic HTTP.
  INVALID_REQUEST: {
    status: 400,
    message: 'The request is invalid.',
    hint: 'Fix the fields named in the error.',
  },
  BODY_TOO_LARGE: { status: 413, message: 'The request body is too large.', hint: 'Send a smaller body.' },
  UNSUPPORTED_MEDIA_TYPE: {
    status: 415,
    message: 'The body must be JSON.',
    hint: 'Send Content-Type: application/json.',
  },
  UNAUTHORIZED: {
    status: 401,
    message: 'Authentication is missing or invalid.',
    hint: 'Send a valid API key or signature.',
  },
  FORBIDDEN: { status: 403, message: 'This caller may not do that.', hint: 'Ask the operator for access.' },
  NOT_FOUND: { status: 404, message: 'Not found.', hint: 'Check the path and id.' },
  RATE_LIMITED: {
    status: 429,
    message: 'Too many requests.',
    hint: 'Wait for Retry-After seconds and try again.',
  },
  BUDGET_EXHAUSTED: {
    status: 429,
    message: "The API key's spend budget for this period is used up.",
    hint: 'Wait for the next period (Retry-After) or ask the operator to raise the budget (fedai apikey budget).',
  },
  OVERLOADED: {
    status: 429,
    message: 'The server is at capacity.',
    hint: 'Retry after the Retry-After header.',
  },
  INTERNAL: {
    status: 500,
    message: 'Internal error.',
    hint: 'Retry; if it persists, report the request id.',
  },
  NOT_READY: {
    status: 503,
    message: 'The service is not ready yet.',
    hint: 'Wait for /ready to answer 200.',
  },
  METHOD_NOT_ALLOWED: {
    status: 405,
    message: 'This path does not accept this method.',
    hint: 'See the Allow header, or docs/protocol.md for the routes.',
  },
  HEADERS_TOO_LARGE: {
    status: 431,
    message: 'The request headers are too large.',
    hint: 'Send fewer or shorter headers (cookies, authorization).',
  },
  REQUEST_TIMEOUT: {
    status: 408,
    message: 'The request was not received in time.',
    hint: 'Send the whole request (headers and body) without pauses; retry.',
  },
  BAD_HTTP: {
    status: 400,
    message: 'The request is not valid HTTP.',
    hint: 'Send a well-formed HTTP/1.1 request.',
  },
  // NIP-98 HTTP auth.
  AUTH_URL_MISMATCH: {
    status: 401,
    message: 'The signed URL does not match the request.',
    hint: 'Sign the exact absolute URL.',
  },
  AUTH_METHOD_MISMATCH: {
    status: 401,
    message: 'The signed method does not match the request.',
    hint: 'Sign the HTTP method used.',
  },
  AUTH_PAYLOAD_MISMATCH: {
    status: 401,
    message: 'The signed payload hash does not match the body.',
    hint: 'Put sha256(body) hex in the "payload" tag.',
  },
  // Inference.
  MODEL_NOT_FOUND: {
    status: 404,
    message: 'No node serves this model.',
    hint: 'List models with GET /v1/models.',
  },
  BID_MISMATCH: {
    status: 409,
    message: 'The offload job does not match a bid this router made to you.',
    hint: 'Offload only within an open, unused bid: same model and RFB, no larger than the RFB said.',
  },
  NO_PEER_BID: {
    status: 503,
    message: 'No node here can serve the request, and no peer router bid for it.',
    hint: 'Retry later, relax max_price, or ask the operator which models peers serve (fedai peers).',
  },
  PEER_FAILED: {
    status: 502,
    message: 'The peer router this request was offloaded to failed or sent a result that does not verify.',
    hint: 'Retry; the router tries the next bid before the first token and records the peer failure.',
  },
  NO_ELIGIBLE_NODE: {
    status: 503,
    message: 'No node meets the request constraints right now.',
    hint: 'Relax provider constraints (max_price, only, region) or retry later.',
  },
  CONTEXT_TOO_LONG: {
    status: 400,
    message: 'Prompt plus max_tokens exceed the context window.',
    hint: 'Shorten the prompt or lower max_tokens.',
  },
  NODE_FAILED: {
    status: 502,
    message: 'The node failed to answer.',
    hint: 'Retry; another node may be chosen.',
  },
  NODE_TIMEOUT: {
    status: 504,
    message: 'The node did not answer in time.',
    hint: 'Retry, or raise the timeout.',
  },
  BAD_NODE_SIGNATURE: {
    status: 502,
    message: 'The node answer failed verification.',
    hint: 'The router discarded it; retry.',
  },
  BAD_METERING: {
    status: 502,
    message: 'The node metering record is inconsistent with its output.',
    hint: 'Retry.',
  },
  CANCELLED: { status: 499, message: 'The request was cancelled.', hint: 'Nothing to do.' },
  RUNNER_UNAVAILABLE: {
    status: 503,
    message: 'The model runner is not available.',
    hint: 'Wait for the node to restart it.',
  },
  RUNNER_CRASHED: { status: 502, message: 'The model runner crashed during generation.', hint: 'Retry.' },
  RUNNER_TIMEOUT: { status: 504, message: 'The model backend did not answer in time.', hint: 'Retry later.' },
  RUNNER_UPSTREAM_ERROR: {
    status: 502,
    message: 'The model backend returned an error.',
    hint: 'Check the backend logs.',
  },
  // Registry.
  PRIVATE_ENDPOINT: {
    status: 400,
    message: 'The node endpoint is a private, loopback or reserved address.',
    hint: 'Use a public address, or the operator sets ALLOW_PRIVATE_ENDPOINTS=true for a local network.',
  },
  NODE_NOT_ALLOWED: {
    status: 403,
    message: 'This node is not admitted by the router.',
    hint: 'Ask the operator to allow your key.',
  },
  ENDPOINT_TAKEN: {
    status: 409,
    message: 'Another node already registered this endpoint.',
    hint: 'A node id is its public key: register your own endpoint with your own key.',
  },
  BAD_ENDPOINT: {
    status: 400,
    message: 'The node endpoint URL is not in the accepted form.',
    hint: 'Use http(s)://host[:port][/path] without query, fragment or credentials.',
  },
  ENDPOINT_UNVERIFIED: {
    status: 403,
    message: 'The node did not prove control of its endpoint.',
    hint: 'The endpoint must answer POST /v1/challenge with an envelope signed by the registering key.',
  },
  NODE_BANNED: {
    status: 403,
    message: 'This node is banned by the router operator.',
    hint: 'Contact the operator.',
  },
  NODE_NOT_REGISTERED: {
    status: 404,
    message: 'The node is not registered.',
    hint: 'Register before sending heartbeats.',
  },
  ROUTER_NOT_ALLOWED: {
    status: 403,
    message: 'This router is not allowed by the node.',
    hint: 'Add the router key to the node allowlist.',
  },
  // Money.
  INSUFFICIENT_BALANCE: {
    status: 402,
    message: 'The balance does not cover the maximum cost of this request.',
    hint: 'Top up with POST /v1/tabs/topup, or lower max_tokens.',
  },
  PAYMENT_REQUIRED: {
    status: 402,
    message: 'Payment is required.',
    hint: 'Pay the invoice and retry with the preimage.',
  },
  // L402 (docs/l402.md): pay per request with a macaroon and a Lightning preimage.
  L402_BAD_TOKEN: {
    status: 401,
    message: 'The L402 token is not valid.',
    hint: 'Send the token of a challenge this router issued, unchanged, or send no credentials for a new challenge.',
  },
  L402_BAD_PREIMAGE: {
    status: 401,
    message: "The preimage does not hash to the token's payment hash.",
    hint: "Send the preimage your wallet got for this token's invoice (64 hex).",
  },
  L402_EXPIRED: {
    status: 402,
    message: 'This L402 token has expired.',
    hint: 'Pay the new invoice in WWW-Authenticate and retry with its token.',
  },
  TOKEN_SPENT: {
    status: 402,
    message: "This L402 token's credit does not cover the request.",
    hint: 'Pay the new invoice in WWW-Authenticate and retry with its token, or lower max_tokens.',
  },
  L402_NOT_CREDITED: {
    status: 503,
    message: "The token's payment is not credited yet.",
    hint: 'Retry after Retry-After seconds with the same token and preimage; do not pay again.',
  },
  PRICE_TOO_HIGH: {
    status: 402,
    message: 'The price exceeds your max_price.',
    hint: 'Raise max_price or choose another model.',
  },
  INVOICE_NOT_FOUND: { status: 404, message: 'No such invoice.', hint: 'Check the payment hash.' },
  INVOICE_WRONG_NETWORK: {
    status: 400,
    message: 'The invoice is for another Bitcoin network than this settlement pays on.',
    hint: "Ask for an invoice on the network settlement's GET /v1/info names (lightning_network).",
  },
  LIGHTNING_NETWORK_MISMATCH: {
    status: 503,
    message: "The Lightning backend's invoices are not on the configured LIGHTNING_NETWORK.",
    hint: "The operator sets LIGHTNING_NETWORK to the backend's network (or points at the right backend).",
  },
  INVOICE_EXPIRED: { status: 410, message: 'The invoice has expired.', hint: 'Request a new invoice.' },
  BAD_PREIMAGE: {
    status: 400,
    message: 'The preimage does not hash to the payment hash.',
    hint: 'Send the preimage of this invoice.',
  },
  LEDGER_REJECTED: {
    status: 409,
    message: 'The ledger refused the transfer.',
    hint: 'See the transfer result code.',
  },
  DATABASE_UNAVAILABLE: {
    status: 503,
    message: "The service's database is unreachable.",
    hint: 'Retry shortly: it is restarting or the connection was cut.',
  },
  SETTLEMENT_UNAVAILABLE: {
    status: 503,
    message: 'The settlement service is unreachable.',
    hint: 'Paid requests are refused until it is back.',
  },
  ALREADY_PAID: {
    status: 409,
    message: 'This invoice was already paid; nothing more was credited.',
    hint: 'Check the tab balance; request a new invoice to add more.',
  },
  IDEMPOTENCY_CONFLICT: {
    status: 409,
    message: 'This id was already used with different content.',
    hint: 'Use a new id for a different operation.',
  },
  // Disputes (docs/disputes.md)
  DISPUTE_WINDOW_CLOSED: {
    status: 409,
    message: 'This charge can no longer be disputed.',
    hint: 'Disputes open within DISPUTE_WINDOW_S of the charge and before the node is paid for it.',
  },
  DISPUTE_LIMIT_REACHED: {
    status: 429,
    message: 'Too many disputes of this party are still open.',
    hint: 'Wait until the open cases are decided.',
  },
  // Payouts
  PAYOUT_DESTINATION_FAILED: {
    status: 502,
    message: "The node's payout destination gave no usable invoice.",
    hint: 'Check the Lightning address or NWC connection (`fedai node payout set`); earnings stay until the next run.',
  },
});

export type ReasonCode = keyof typeof REASONS;

export function isReasonCode(code: string): code is ReasonCode {
  return Object.hasOwn(REASONS, code);
}

export function reasonInfo(code: ReasonCode): ReasonInfo {
  return REASONS[code];
}

/** An error that carries a reason code; services turn it into their error shape at the edge. */
export class FedAiError extends Error {
  readonly code: ReasonCode;
  readonly status: number;
  readonly hint: string;
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ReasonCode, message?: string, details?: Record<string, unknown>) {
    const info = REASONS[code];
    super(message ?? info.message);
    this.name = 'FedAiError';
    this.code = code;
    this.status = info.status;
    this.hint = info.hint;
    this.details = details;
  }
}
