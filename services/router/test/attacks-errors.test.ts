// Attack run (issue #9), error shapes: what the framework refuses under /v1 answers in OpenAI's
// shape with a reason code; no zod dump, JSON-parser text or internal address reaches a client.
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { routerConfigSchema } from '../src/config';
import { FreePayments } from '../src/payments';
import { type RunningRouter, startRouter } from '../src/router';

const dir = mkdtempSync(join(tmpdir(), 'fedai-router-errors-'));
let router: RunningRouter;
let apiKey: string;

before(async () => {
  router = await startRouter(
    routerConfigSchema.parse({
      ROUTER_PORT: '0',
      DATA_DIR: dir,
      PROBE_INTERVAL_S: '0',
      MAX_BODY_BYTES: '4096',
      // Nothing listens here: tab calls find the settlement unreachable.
      SETTLEMENT_URL: 'http://127.0.0.1:9',
      SETTLEMENT_PUBKEY: 'b'.repeat(64),
    }),
    { payments: new FreePayments() },
  );
  apiKey = (await router.createApiKey({ name: 'errors' })).key;
});

after(async () => {
  await router.close();
  rmSync(dir, { recursive: true, force: true });
});

interface OpenAiErrorBody {
  error: { message: string; type: string; param: unknown; code: string };
}

async function openAiShaped(response: Response, status: number, code: string): Promise<OpenAiErrorBody> {
  assert.equal(response.status, status);
  const body = (await response.json()) as OpenAiErrorBody;
  assert.equal(body.error.code, code);
  assert.equal(typeof body.error.message, 'string');
  assert.equal(typeof body.error.type, 'string');
  assert.ok('param' in body.error, 'OpenAI shape has param');
  return body;
}

const auth = () => ({ authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' });

test('404 and 405 under /v1 in OpenAI shape', async () => {
  await openAiShaped(await fetch(`${router.url}/v1/nope`), 404, 'NOT_FOUND');
  const wrong = await fetch(`${router.url}/v1/chat/completions`, { headers: auth() });
  const body = await openAiShaped(wrong, 405, 'METHOD_NOT_ALLOWED');
  assert.equal(body.error.type, 'invalid_request_error');
  assert.match(String(wrong.headers.get('allow')), /POST/);
});

test('413 and 415 on OpenAI routes in OpenAI shape', async () => {
  const big = await fetch(`${router.url}/v1/chat/completions`, {
    method: 'POST',
    headers: auth(),
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'x'.repeat(10_000) }] }),
  });
  await openAiShaped(big, 413, 'BODY_TOO_LARGE');
  const xml = await fetch(`${router.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/xml' },
    body: '<x/>',
  });
  await openAiShaped(xml, 415, 'UNSUPPORTED_MEDIA_TYPE');
  const tabXml = await fetch(`${router.url}/v1/tabs/topup`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/xml' },
    body: '<x/>',
  });
  await openAiShaped(tabXml, 415, 'UNSUPPORTED_MEDIA_TYPE');
});

test('tab routes: short messages, no zod dump, no JSON-parser text, no settlement address', async () => {
  const broken = await fetch(`${router.url}/v1/tabs/topup`, {
    method: 'POST',
    headers: auth(),
    body: '{"amount_msat":',
  });
  const brokenBody = await openAiShaped(broken, 400, 'INVALID_REQUEST');
  assert.doesNotMatch(brokenBody.error.message, /position|Unexpected|JSON at/);
  const invalid = await fetch(`${router.url}/v1/tabs/topup`, {
    method: 'POST',
    headers: auth(),
    body: JSON.stringify({ amount_msat: 'lots' }),
  });
  const invalidBody = await openAiShaped(invalid, 400, 'INVALID_REQUEST');
  assert.match(invalidBody.error.message, /amount_msat/);
  assert.doesNotMatch(invalidBody.error.message, /[[{]|"code"|\n/);
  const down = await fetch(`${router.url}/v1/tabs/me`, { headers: auth() });
  const downBody = await openAiShaped(down, 503, 'SETTLEMENT_UNAVAILABLE');
  assert.doesNotMatch(downBody.error.message, /127\.0\.0\.1|:9\b|ECONNREFUSED/);
});
