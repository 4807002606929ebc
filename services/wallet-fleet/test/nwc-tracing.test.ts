// Trace context over NWC (no HTTP between the agent and the fleet): a NIP-47 request event with a
// `traceparent` tag is handled in a span that continues that trace, and the fleet's call to
// settlement for the payment is its child (settlement's server span below it). Tracing is on for
// this whole process (relay, settlement and fleet run in it), exporting to a receiver here.
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { startTracing, type Tracing } from '@fed-ai/kit';
import { createNip98Header, generateSecretKey, publicKeyOf, secretKeyHex } from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import { type RunningSettlement, settlementConfigSchema, startSettlement } from '@fed-ai/settlement';
import { nip44 } from 'nostr-tools';
import { finalizeEvent } from 'nostr-tools/pure';
import { walletFleetConfigSchema } from '../src/config';
import { type RunningWalletFleet, startWalletFleet } from '../src/wallet-fleet';

interface Span {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
}

const dir = mkdtempSync(join(tmpdir(), 'fedai-wf-trace-'));
const ownerKey = generateSecretKey();
const fleetKey = generateSecretKey();
const spans: Span[] = [];
const bodies: string[] = [];
let receiver: Server;
let tracing: Tracing;
let relay: RunningRelay;
let settlement: RunningSettlement;
let fleet: RunningWalletFleet;

before(async () => {
  receiver = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => {
      body += c.toString();
    });
    req.on('end', () => {
      bodies.push(body);
      const doc = JSON.parse(body) as { resourceSpans: { scopeSpans: { spans: Span[] }[] }[] };
      for (const rs of doc.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });
  await new Promise<void>((done) => receiver.listen(0, '127.0.0.1', done));
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = `http://127.0.0.1:${(receiver.address() as { port: number }).port}`;
  tracing = await startTracing('wallet-fleet');
  relay = await startRelay({ port: 0 });
  settlement = await startSettlement(
    settlementConfigSchema.parse({
      SETTLEMENT_PORT: '0',
      DATA_DIR: join(dir, 'settlement'),
      FAUCET: 'true',
      SETTLEMENT_WALLET_PUBKEYS: publicKeyOf(fleetKey),
    }),
  );
  fleet = await startWalletFleet(
    walletFleetConfigSchema.parse({
      WALLET_FLEET_PORT: '0',
      WALLET_FLEET_KEY: secretKeyHex(fleetKey),
      FLEET_OWNER_PUBKEYS: publicKeyOf(ownerKey),
      RELAY_URLS: relay.url,
      SETTLEMENT_URL: settlement.url,
      DATA_DIR: join(dir, 'fleet'),
    }),
  );
});

after(async () => {
  await fleet?.close();
  await settlement?.close();
  await relay?.close();
  await tracing?.shutdown();
  await new Promise<void>((done) => (receiver ? receiver.close(() => done()) : done()));
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  rmSync(dir, { recursive: true, force: true });
});

async function ownerCall(method: 'GET' | 'POST', path: string, body?: unknown) {
  const url = `${fleet.url}${path}`;
  const text = body === undefined ? undefined : JSON.stringify(body);
  const response = await fetch(url, {
    method,
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(url, method, text, ownerKey),
    },
    ...(text === undefined ? {} : { body: text }),
  });
  const json = (await response.json()) as Record<string, unknown>;
  assert.equal(response.status, 200, JSON.stringify(json));
  return json;
}

test('a traceparent tag on the NIP-47 request: the fleet continues the trace down to settlement', async () => {
  const policy = {
    version: 1,
    mode: 'live',
    maxPaymentMsat: 60_000,
    budgets: [{ id: 'daily', limitMsat: 100_000, period: { kind: 'rolling', windowS: 86_400 } }],
    methods: ['pay_invoice', 'get_balance'],
  };
  const wallet = await ownerCall('POST', '/v1/wallets', { name: 'traced', policy });
  const invoice = await ownerCall('POST', '/v1/treasury/invoices', { amount_msat: 50_000 });
  await settlement.books.faucetPay(String(invoice.bolt11));
  for (let i = 0; i < 100; i++) {
    const treasury = await ownerCall('GET', '/v1/treasury');
    if (Number(treasury.balance_msat) >= 50_000) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  await ownerCall('POST', `/v1/wallets/${wallet.id}/fund`, { amount_msat: 50_000, op_id: 'fund-traced' });
  const connection = await ownerCall('POST', `/v1/wallets/${wallet.id}/connections`, { name: 'agent' });
  const clientKey = Uint8Array.from(
    Buffer.from(/secret=([0-9a-f]{64})/.exec(String(connection.uri))![1]!, 'hex'),
  );
  const topup = await settlement.books.openTopup('key_traced_app', 10_000);

  const traceId = randomBytes(16).toString('hex');
  const agentSpanId = randomBytes(8).toString('hex');
  const text = JSON.stringify({ method: 'pay_invoice', params: { invoice: topup.bolt11 } });
  const event = finalizeEvent(
    {
      kind: 23194,
      created_at: Math.floor(Date.now() / 1000),
      tags: [
        ['p', fleet.pubkey],
        ['encryption', 'nip44_v2'],
        ['traceparent', `00-${traceId}-${agentSpanId}-01`],
      ],
      content: nip44.v2.encrypt(text, nip44.v2.utils.getConversationKey(clientKey, fleet.pubkey)),
    },
    clientKey,
  );
  await fleet.nwc.handle(event);
  assert.equal((await settlement.books.tab('key_traced_app')).balance_msat, 10_000, 'paid');
  await tracing.shutdown(); // flushes

  const inTrace = spans.filter((s) => s.traceId === traceId);
  const request = inTrace.find((s) => s.name === 'nwc request');
  assert.ok(request, `an nwc request span in the trace; got ${inTrace.map((s) => s.name).join(', ')}`);
  assert.equal(request.parentSpanId, agentSpanId);
  assert.equal(request.kind, 2);
  assert.deepEqual(
    request.attributes.find((a) => a.key === 'nwc.method'),
    { key: 'nwc.method', value: { stringValue: 'pay_invoice' } },
  );
  const byId = new Map(inTrace.map((s) => [s.spanId, s]));
  const below = (span: Span): boolean =>
    span.parentSpanId === request.spanId ||
    (!!span.parentSpanId && !!byId.get(span.parentSpanId) && below(byId.get(span.parentSpanId)!));
  const clientSpans = inTrace.filter((s) => s.kind === 3);
  assert.ok(
    clientSpans.length > 0 && clientSpans.every(below),
    'the fleet -> settlement calls are under the request',
  );
  const settlementServer = inTrace.filter((s) => s.kind === 2 && s.name.includes('/v1/account'));
  assert.ok(settlementServer.length > 0, 'settlement server spans in the trace');
  for (const s of settlementServer) assert.equal(byId.get(s.parentSpanId ?? '')?.kind, 3);
  for (const body of bodies) {
    assert.ok(!body.includes(topup.bolt11), 'a bolt11 is in a span');
    assert.ok(!body.includes(String(connection.uri)), 'the NWC secret is in a span');
  }
});
