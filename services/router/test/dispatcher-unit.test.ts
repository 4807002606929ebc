// The Dispatcher on its own, over node doubles: attempt limits, skipped nodes, which error the client
// gets, and what the breaker is told. Kills mutants the end-to-end tests cannot reach.
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { createLogger, createSafeAgent } from '@fed-ai/kit';
import {
  ChannelKeys,
  FedAiError,
  generateSecretKey,
  publicKeyOf,
  verifyEventSignature,
} from '@fed-ai/protocol';
import { Dispatcher, type DispatchInput } from '../src/dispatch';
import { DEFAULT_HEALTH_CONFIG, NodeHealth } from '../src/health';
import type { NodeRecord } from '../src/registry';
import type { RankedCandidate } from '../src/scheduler-types';
import { SigningNodeDouble } from './signing-node-double';

const routerKey = generateSecretKey();
const agent = createSafeAgent({ allowPrivate: true });
const doubles: SigningNodeDouble[] = [];
after(async () => {
  for (const d of doubles) await d.stop();
  await agent.close();
});

/** Doubles that take the router's MACs (their records say `auth: ['mac-v1']`, as a real node's registration does). */
const macNodes = new Set<SigningNodeDouble>();

async function nodes(modes: SigningNodeDouble['mode'][], takesMac: boolean[] = []) {
  const records = new Map<string, NodeRecord>();
  const list: { double: SigningNodeDouble; record: NodeRecord; candidate: RankedCandidate }[] = [];
  for (const mode of modes) {
    const double = new SigningNodeDouble();
    double.mode = mode;
    if (takesMac[list.length]) {
      double.takesMacFrom.add(publicKeyOf(routerKey));
      macNodes.add(double);
    }
    await double.start();
    doubles.push(double);
    const offer = { id: 'double-model', context_window: 4096, max_output_tokens: 512, price: double.price };
    const record = {
      id: double.pubkey,
      endpoint: double.url,
      registration: { auth: macNodes.has(double) ? ['mac-v1'] : undefined },
      health: new NodeHealth({ ...DEFAULT_HEALTH_CONFIG, allowedFailures: 1, cooldownMs: 1000 }),
      inFlight: 0,
    } as unknown as NodeRecord;
    records.set(double.pubkey, record);
    const candidate = { node: { id: double.pubkey, offer } } as unknown as RankedCandidate;
    list.push({ double, record, candidate });
  }
  return { list, registry: { get: (id: string) => records.get(id) } };
}

function dispatcher(registry: { get(id: string): NodeRecord | undefined }, maxAttempts = 3) {
  return new Dispatcher({
    secretKey: routerKey,
    channelKeys: new ChannelKeys(routerKey),
    routerPubkey: publicKeyOf(routerKey),
    registry: registry as never,
    agent,
    timeouts: { firstTokenMs: 10_000, totalMs: 20_000 },
    maxAttempts,
    logger: createLogger('test'),
  });
}

const input = (candidates: RankedCandidate[], extra: Partial<DispatchInput> = {}): DispatchInput => ({
  dispatchId: `rq-${Math.random().toString(16).slice(2, 14)}`,
  params: { model: 'double-model', messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 },
  candidates,
  allowFallbacks: true,
  signal: new AbortController().signal,
  ...extra,
});

test('at most maxAttempts nodes are tried; the error says how many', async () => {
  const { list, registry } = await nodes(['fail-before', 'fail-before', 'fail-before']);
  await assert.rejects(dispatcher(registry, 2).run(input(list.map((n) => n.candidate))), (e: unknown) => {
    assert.ok(e instanceof FedAiError);
    assert.equal(e.code, 'NODE_FAILED');
    assert.equal(e.details?.attempts, 2);
    return true;
  });
  assert.deepEqual(
    list.map((n) => n.double.requests),
    [1, 1, 0],
  );
  for (const n of list) assert.equal(n.record.inFlight, 0, 'every lease ended');
});

test("a node whose registration takes MACs gets the request with the router's MAC, any other a signed one", async () => {
  const { list, registry } = await nodes(['ok', 'ok'], [true, false]);
  for (const n of list) {
    const outcome = await dispatcher(registry).run(input([n.candidate], { allowFallbacks: false }));
    assert.equal(outcome.text, 'Hello from the double');
  }
  assert.deepEqual(
    list.map((n) => n.double.auths),
    [['mac'], ['signature']],
  );
});

const refusedAs = (code: string) => (e: unknown) => {
  assert.ok(e instanceof FedAiError);
  assert.equal(e.code, code);
  return true;
};

// Each check uses its own node: a failure opens the node's breaker (allowedFailures: 1).
test("paid: a MAC node's record is checked by its channel MAC (settlement checks the signature); free or signed: by its signature", async () => {
  const { list, registry } = await nodes(Array(4).fill('garbled-signature'), [true, true, true, false]);
  const [macPaid, macReservedOnly, macFree, signing] = list.map((n) => [n.candidate]) as RankedCandidate[][];
  const paid = { allowFallbacks: false, reservedMsat: 1_000_000, signatureCheckedAtCapture: true };
  const outcome = await dispatcher(registry).run(input(macPaid!, paid));
  // The record is handed on as the node sent it: settlement's verification refuses it.
  assert.equal(outcome.metering.pubkey, list[0]!.double.pubkey);
  assert.equal(verifyEventSignature({ ...outcome.metering }), false);
  await assert.rejects(
    dispatcher(registry).run(input(macReservedOnly!, { allowFallbacks: false, reservedMsat: 1_000_000 })),
    refusedAs('BAD_NODE_SIGNATURE'),
  );
  await assert.rejects(
    dispatcher(registry).run(input(macFree!, { allowFallbacks: false })),
    refusedAs('BAD_NODE_SIGNATURE'),
  );
  // A node that sent no MAC (it got a signed request) is checked by its signature even when paid.
  await assert.rejects(dispatcher(registry).run(input(signing!, paid)), refusedAs('BAD_NODE_SIGNATURE'));
});

test('paid: a channel MAC that does not verify fails the attempt as a bad signature does, and fails over', async () => {
  const modes: SigningNodeDouble['mode'][] = [
    'bad-metering-mac',
    'bad-metering-mac',
    'ok',
    'bad-metering-mac',
  ];
  const { list, registry } = await nodes(modes, [true, true, true, true]);
  const paid = { reservedMsat: 1_000_000, signatureCheckedAtCapture: true };
  await assert.rejects(
    dispatcher(registry).run(input([list[0]!.candidate], { ...paid, allowFallbacks: false })),
    refusedAs('BAD_NODE_SIGNATURE'),
  );
  const outcome = await dispatcher(registry).run(input([list[1]!.candidate, list[2]!.candidate], paid));
  assert.equal(outcome.node.id, list[2]!.double.pubkey);
  assert.equal(outcome.attempts, 2);
  // Free mode checks the (good) signature and ignores the MAC.
  const free = await dispatcher(registry).run(input([list[3]!.candidate], { allowFallbacks: false }));
  assert.equal(free.node.id, list[3]!.double.pubkey);
});

test('without fallbacks only the first candidate is tried', async () => {
  const { list, registry } = await nodes(['fail-before', 'ok']);
  await assert.rejects(
    dispatcher(registry).run(
      input(
        list.map((n) => n.candidate),
        { allowFallbacks: false },
      ),
    ),
  );
  assert.deepEqual(
    list.map((n) => n.double.requests),
    [1, 0],
  );
});

test('a candidate whose breaker refuses a lease is skipped, not counted, not called', async () => {
  const { list, registry } = await nodes(['ok', 'ok']);
  list[0]!.record.health.recordFailure(Date.now()); // open (allowedFailures 1)
  const result = await dispatcher(registry, 1).run(input(list.map((n) => n.candidate)));
  assert.equal(result.node.id, list[1]!.double.pubkey);
  assert.equal(result.attempts, 1);
  assert.equal(list[0]!.double.requests, 0);
  // The success is recorded with its timings, and the wait covers the node's time.
  const snap = list[1]!.record.health.snapshot();
  assert.ok(snap.ttftMs !== undefined && snap.latencyMs !== undefined);
  assert.ok(result.nodeMs >= 0 && result.nodeMs >= (result as unknown as { waitMs: number }).waitMs);
});

test("a client-caused refusal does not hide an earlier node failure; a node's Retry-After reaches its breaker", async () => {
  const { list, registry } = await nodes(['overloaded', 'context-refused']);
  await assert.rejects(dispatcher(registry).run(input(list.map((n) => n.candidate))), (e: unknown) => {
    assert.ok(e instanceof FedAiError);
    assert.equal(e.code, 'OVERLOADED');
    return true;
  });
  const open = list[0]!.record.health.snapshot();
  assert.equal(open.state, 'open');
  assert.ok((open.openUntilMs ?? 0) >= Date.now() + 6_000, 'kept out for the 7 s the node asked');
  assert.equal(
    list[1]!.record.health.snapshot().consecutiveFailures,
    0,
    'the context refusal is not held against it',
  );
});

test('a failure after output is reported as such and never fails over', async () => {
  const { list, registry } = await nodes(['fail-after', 'ok']);
  const deltas: string[] = [];
  await assert.rejects(
    dispatcher(registry).run(
      input(
        list.map((n) => n.candidate),
        { onDelta: (d) => void deltas.push(d) },
      ),
    ),
    (e: unknown) => {
      assert.ok(e instanceof FedAiError);
      assert.equal(e.details?.after_output, true);
      assert.match(e.message, /after output was sent/);
      return true;
    },
  );
  assert.ok(deltas.length > 0);
  assert.equal(list[1]!.double.requests, 0);
});
