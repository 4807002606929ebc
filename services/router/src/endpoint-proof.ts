// Proof of endpoint control: before the registry accepts a new node (or a changed endpoint) the
// router calls `POST {endpoint}/v1/challenge` with a fresh random nonce, and the node must answer
// with a registration envelope signed by the registering key, addressed to this router, carrying
// the nonce in a `challenge` tag and naming the same endpoint. Calls go through the router's safe
// agent (public addresses only unless allowed, checked at connect time), with a short timeout, a
// bounded answer size and a bound on challenges in flight.
import { randomBytes } from 'node:crypto';
import { normaliseEndpoint } from '@fed-ai/kit';
import { KIND, type ReasonCode, tagValue, verifyEnvelope } from '@fed-ai/protocol';
import { type Dispatcher, request } from 'undici';

type EndpointProof = { ok: true } | { ok: false; code: ReasonCode; detail: string };

/** Proves that whoever answers at `endpoint` holds the key of `nodePubkey`. */
export type EndpointProver = (endpoint: string, nodePubkey: string) => Promise<EndpointProof>;

export interface EndpointProverOptions {
  routerPubkey: string;
  /** The safe agent (createSafeAgent) the router dispatches with. */
  agent: Dispatcher;
  timeoutMs: number;
  maxConcurrent: number;
  maxAnswerBytes?: number;
}

const CHALLENGE_PATH = '/v1/challenge';

export function createEndpointProver(options: EndpointProverOptions): EndpointProver {
  const maxAnswerBytes = options.maxAnswerBytes ?? 64 * 1024;
  let inFlight = 0;
  return async (endpoint, nodePubkey) => {
    if (inFlight >= options.maxConcurrent)
      return { ok: false, code: 'OVERLOADED', detail: 'too many endpoint challenges in flight' };
    inFlight += 1;
    const unverified = (detail: string): EndpointProof => ({
      ok: false,
      code: 'ENDPOINT_UNVERIFIED',
      detail,
    });
    try {
      const nonce = randomBytes(32).toString('hex');
      const signal = AbortSignal.timeout(options.timeoutMs);
      const response = await request(`${endpoint}${CHALLENGE_PATH}`, {
        method: 'POST',
        dispatcher: options.agent,
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ nonce, router: options.routerPubkey, endpoint }),
        signal,
      });
      let text = '';
      let bytes = 0;
      for await (const chunk of response.body) {
        bytes += (chunk as Buffer).length;
        if (bytes > maxAnswerBytes) {
          response.body.destroy();
          return unverified('challenge answer too large');
        }
        text += (chunk as Buffer).toString('utf8');
      }
      if (response.statusCode !== 200) return unverified(`challenge answered HTTP ${response.statusCode}`);
      const verified = await verifyEnvelope(text, {
        me: options.routerPubkey,
        kinds: [KIND.nodeRegistration],
      });
      if (!verified.ok) return unverified(`challenge answer refused: ${verified.code}`);
      if (verified.envelope.pubkey !== nodePubkey) return unverified('challenge answered by another key');
      if (tagValue(verified.envelope, 'challenge') !== nonce) return unverified('challenge nonce mismatch');
      const claimed = normaliseEndpoint(verified.payload.endpoint);
      const asked = normaliseEndpoint(endpoint);
      if (!claimed.ok || !asked.ok || claimed.key !== asked.key)
        return unverified('challenge answer names another endpoint');
      return { ok: true };
    } catch (error) {
      return unverified(`endpoint did not answer the challenge (${(error as Error).message ?? 'error'})`);
    } finally {
      inFlight -= 1;
    }
  };
}
