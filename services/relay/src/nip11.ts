// NIP-11 relay information document, served over HTTP on the relay's own port.

export const RELAY_SOFTWARE_VERSION = '0.1.0';
export const NIP11_CONTENT_TYPE = 'application/nostr+json';

/** NIPs this relay implements on the relay side. */
export const SUPPORTED_NIPS = [1, 9, 11, 40] as const;

export interface RelayLimitation {
  max_message_length: number;
  max_subscriptions: number;
  max_filters: number;
  max_limit: number;
  max_subid_length: number;
  max_event_tags: number;
  max_content_length: number;
  default_limit: number;
  auth_required: false;
  payment_required: false;
  restricted_writes: false;
}

export interface RelayInfo {
  name: string;
  description: string;
  supported_nips: number[];
  version: string;
  limitation: RelayLimitation;
  retention?: { count: number }[];
}

export function buildRelayInfo(input: {
  name: string;
  description: string;
  limitation: RelayLimitation;
  maxEvents: number;
}): RelayInfo {
  return {
    name: input.name,
    description: input.description,
    supported_nips: [...SUPPORTED_NIPS],
    version: RELAY_SOFTWARE_VERSION,
    limitation: input.limitation,
    retention: [{ count: input.maxEvents }],
  };
}

/** NIP-11: relays MUST accept CORS requests. */
export const CORS_HEADERS = {
  'access-control-allow-origin': '*',
  'access-control-allow-headers': '*',
  'access-control-allow-methods': 'GET, OPTIONS',
} as const;

/** Whether an Accept header asks for the NIP-11 document. */
export function wantsRelayInfo(accept: string | undefined): boolean {
  if (!accept) return false;
  return accept.split(',').some((part) => part.split(';')[0]?.trim().toLowerCase() === NIP11_CONTENT_TYPE);
}
