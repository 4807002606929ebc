// Issue #9 C (node side): POST /v1/challenge proves endpoint control to a known router. The answer
// is a registration envelope signed by the node key, addressed to the router, with the nonce.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { generateSecretKey, KIND, publicKeyOf, tagValue, verifyEnvelope } from '@fed-ai/protocol';
import { nodeConfigSchema } from '../src/config';
import { type RunningNode, startNode } from '../src/node';
import { routerPubkey } from './helpers';
import { ScriptedRunnerDouble } from './runner-double';

let node: RunningNode;
const dir = mkdtempSync(join(tmpdir(), 'fedai-node-challenge-'));

before(async () => {
  const config = nodeConfigSchema.parse({
    NODE_PORT: '0',
    DATA_DIR: dir,
    DEMO_MODEL: 'true',
    ROUTER_URLS: '',
  });
  node = await startNode(
    { ...config, ROUTER_URLS: ['http://127.0.0.1:9'], ROUTER_PUBKEYS: [routerPubkey] },
    { runner: new ScriptedRunnerDouble(['x'], 1) },
  );
});

after(async () => {
  await node.close();
  rmSync(dir, { recursive: true, force: true });
});

const challenge = (body: unknown) =>
  fetch(`${node.url}/v1/challenge`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });

test('a known router gets a signed answer carrying its nonce and the endpoint it asked about', async () => {
  const nonce = randomBytes(32).toString('hex');
  const response = await challenge({ nonce, router: routerPubkey, endpoint: node.url });
  assert.equal(response.status, 200);
  const verified = await verifyEnvelope(await response.text(), {
    me: routerPubkey,
    kinds: [KIND.nodeRegistration],
  });
  assert.equal(verified.ok, true);
  if (!verified.ok) return;
  assert.equal(verified.envelope.pubkey, node.pubkey);
  assert.equal(tagValue(verified.envelope, 'challenge'), nonce);
  assert.equal(verified.payload.endpoint, node.url);
});

test('unknown routers and malformed challenges are refused with reason codes', async () => {
  const nonce = randomBytes(32).toString('hex');
  const stranger = publicKeyOf(generateSecretKey());
  const cases: [unknown, string][] = [
    [{ nonce, router: stranger, endpoint: node.url }, 'ROUTER_NOT_ALLOWED'],
    [{ nonce: 'short', router: routerPubkey, endpoint: node.url }, 'INVALID_REQUEST'],
    [{ nonce, router: routerPubkey, endpoint: 'ftp://x' }, 'INVALID_REQUEST'],
    [{ nonce, router: routerPubkey }, 'INVALID_REQUEST'],
    ['[[[[', 'BAD_JSON'],
  ];
  for (const [body, code] of cases) {
    const response = await challenge(body);
    const json = (await response.json()) as { error?: { code: string } };
    assert.equal(json.error?.code, code, JSON.stringify(body));
  }
});
