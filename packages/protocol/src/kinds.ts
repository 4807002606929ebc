// Event kinds used by fed-ai. Checked against the NIPs kind table: 38100-38102 (addressable) and
// 28100-28124 (ephemeral) are unassigned; 30020/30023/38421 are avoided. Standard kinds are reused
// where a NIP defines the message (NIP-47 wallet connect, NIP-98 HTTP auth, NIP-89 handler info).
export const KIND = {
  // Addressable, published on relays (`d` tag names the item).
  routerCapabilities: 38100,
  priceSheet: 38101,
  routerStatus: 38102,
  // Ephemeral, on relays: the request-for-bids auction.
  rfb: 28100,
  bid: 28101,
  award: 28102,
  cancel: 28103,
  // Ephemeral range for HTTP-only envelopes: one kind per message type.
  nodeRegistration: 28110,
  nodeHeartbeat: 28111,
  quoteRequest: 28112,
  quoteResponse: 28113,
  inferenceRequest: 28114,
  inferenceResponse: 28115,
  streamChunk: 28116,
  meteringRecord: 28117,
  paymentRequest: 28118,
  paymentReceipt: 28119,
  offloadJob: 28120,
  offloadResult: 28121,
  ownerAction: 28122,
  settlementRequest: 28123,
  settlementResult: 28124,
  /** Router -> node: stop generating this request and end the stream with a signed record. */
  inferenceCancel: 28125,
  /** Settlement -> node: what one payout covered (charges, metering record ids, totals, fee). */
  payoutStatement: 28126,
  /** Settlement -> claimant: the verdict on a disputed charge (docs/disputes.md). */
  disputeVerdict: 28127,
  // Standard kinds.
  nwcInfo: 13194,
  nwcRequest: 23194,
  nwcResponse: 23195,
  nwcNotification: 23197,
  httpAuth: 27235,
  handlerInfo: 31990,
} as const;

export type KindName = keyof typeof KIND;
export type Kind = (typeof KIND)[KindName];

const nameByKind = new Map<number, KindName>(
  Object.entries(KIND).map(([name, kind]) => [kind, name as KindName]),
);

export function kindName(kind: number): KindName | undefined {
  return nameByKind.get(kind);
}

export function isAddressable(kind: number): boolean {
  return kind >= 30000 && kind < 40000;
}

export function isEphemeral(kind: number): boolean {
  return kind >= 20000 && kind < 30000;
}
