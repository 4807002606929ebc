// The local network's API key (./data/api-key): reused while the router accepts it, replaced by a
// newly minted one (admin API, NIP-98 signed by the operator key) once it refuses it — revoked, or
// from another network's database. The check is an authenticated call: GET /v1/models needs no
// key, so it cannot tell.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { createNip98Header } from '@fed-ai/protocol';
import { z } from 'zod';

export type SavedKeyVerdict = 'accepted' | 'refused';

const createdAnswer = z.looseObject({ id: z.string(), key: z.string().startsWith('fedai_sk_') });
const errorAnswer = z.looseObject({ error: z.looseObject({ code: z.string() }) });

/**
 * Asks the router whether it accepts `apiKey`: GET /v1/tabs/me (paid mode), or, on a router
 * without tabs (free mode, 404), POST /v1/chat/completions with an empty body, which checks the
 * key before the body (401 for a bad key, 400 for a good one). Throws on any other answer.
 */
export async function checkApiKey(routerUrl: string, apiKey: string): Promise<SavedKeyVerdict> {
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
  let response = await fetch(`${routerUrl}/v1/tabs/me`, { headers, signal: AbortSignal.timeout(10_000) });
  if (response.status === 404) {
    response = await fetch(`${routerUrl}/v1/chat/completions`, {
      method: 'POST',
      headers,
      body: '{}',
      signal: AbortSignal.timeout(10_000),
    });
    if (response.status === 400) return 'accepted';
  }
  const body: unknown = await response.json().catch(() => null);
  // 429: the key is known (and busy); it is the key's limit, not a refusal.
  if (response.ok || response.status === 429) return 'accepted';
  const code = errorAnswer.safeParse(body).data?.error.code;
  if (response.status === 401 && code === 'UNAUTHORIZED') return 'refused';
  throw new Error(
    `checking the saved API key: the router answered HTTP ${response.status} ${code ?? '(no reason code)'}`,
  );
}

/** The saved key when the router accepts it, else a new one (written to `dir`/api-key, mode 0600). */
export async function ensureApiKey(
  dir: string,
  routerUrl: string,
  operatorKey: Uint8Array,
): Promise<{ key: string; minted: boolean }> {
  const keyPath = resolve(dir, 'api-key');
  const saved = existsSync(keyPath) ? readFileSync(keyPath, 'utf8').trim() : '';
  if (saved && (await checkApiKey(routerUrl, saved)) === 'accepted') return { key: saved, minted: false };
  const url = `${routerUrl}/admin/apikeys`;
  const body = JSON.stringify({ name: 'devnet' });
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(url, 'POST', body, operatorKey),
    },
    body,
    signal: AbortSignal.timeout(10_000),
  });
  if (!response.ok)
    throw new Error(`creating the API key failed: HTTP ${response.status} ${await response.text()}`);
  const created = createdAnswer.safeParse(await response.json().catch(() => null));
  if (!created.success) throw new Error('the router did not return an API key');
  writeFileSync(keyPath, `${created.data.key}\n`, { mode: 0o600 });
  return { key: created.data.key, minted: true };
}
