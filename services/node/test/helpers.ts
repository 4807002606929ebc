// Shared by node tests: a router identity that signs requests, and an SSE reader.
import {
  ChannelKeys,
  createEnvelope,
  createMacEnvelope,
  generateSecretKey,
  type InferenceRequest,
  KIND,
  publicKeyOf,
} from '@fed-ai/protocol';

export const routerKey = generateSecretKey();
export const routerPubkey = publicKeyOf(routerKey);

let counter = 0;
export function inferenceRequest(overrides: Partial<InferenceRequest> = {}): InferenceRequest {
  counter += 1;
  return {
    request_id: `test-req-${Date.now()}-${counter}`,
    model: 'double-model',
    messages: [{ role: 'user', content: 'Say hello' }],
    max_tokens: 16,
    temperature: 0,
    stream: true,
    ...overrides,
  };
}

/** The same request with the router's MAC instead of a signature (as a router sends to a node that takes MACs). */
export function macRequest(nodePubkey: string, payload: InferenceRequest, key = routerKey) {
  return createMacEnvelope(
    KIND.inferenceRequest,
    payload,
    { audience: nodePubkey, refs: [payload.request_id] },
    new ChannelKeys(key),
  );
}

export function signedRequest(nodePubkey: string, payload: InferenceRequest, key = routerKey, options = {}) {
  return createEnvelope(
    KIND.inferenceRequest,
    payload,
    { audience: nodePubkey, refs: [payload.request_id], ...options },
    key,
  );
}

export async function postInfer(url: string, body: unknown, signal?: AbortSignal): Promise<Response> {
  return fetch(`${url}/v1/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    ...(signal ? { signal } : {}),
  });
}

export async function readEvents(response: Response): Promise<Record<string, unknown>[]> {
  const text = await response.text();
  return text
    .split('\n\n')
    .filter((block) => block.startsWith('data: '))
    .map((block) => JSON.parse(block.slice(6)) as Record<string, unknown>);
}
