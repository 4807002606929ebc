// Pure parts of the federation presence: peer policy, inbound gate (rate budget, size, signature,
// expiration, dedupe), the peer table (newest wins, expiry, eviction) and the announcement builder.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  createEnvelope,
  finalizeEvent,
  generateSecretKey,
  KIND,
  type PriceSheet,
  publicKeyOf,
  type SignedEvent,
  verifyEnvelope,
} from '@fed-ai/protocol';
import fc from 'fast-check';
import {
  type AnnounceSnapshot,
  announcementHash,
  buildAnnouncements,
  registrySource,
} from '../src/federation/announce';
import { InboundGate, TokenBuckets } from '../src/federation/inbound';
import { listedKeys, PeerPolicy } from '../src/federation/peer-policy';
import { type IngestMeta, PeerTable } from '../src/federation/peers';
import { LruSet } from '../src/federation/relays';
import type { Registry } from '../src/registry';

const key = (c: string) => c.repeat(64);
const [OP, A, B, C, D, M] = ['0', 'a', 'b', 'c', 'd', 'e'].map(key) as [
  string,
  string,
  string,
  string,
  string,
  string,
];
const SELF = key('f');

test('peer policy: table of modes, lists and trust', () => {
  const cases: {
    name: string;
    options: ConstructorParameters<typeof PeerPolicy>[0];
    follows?: [string, string[]][];
    muted?: string[];
    expect: Record<string, { may: boolean; trust: number }>;
  }[] = [
    {
      name: 'follows (default): direct follows only, fof has decayed trust',
      options: { operator: OP, self: SELF },
      follows: [
        [OP, [A, B]],
        [A, [C]],
      ],
      expect: {
        [A]: { may: true, trust: 1 },
        [B]: { may: true, trust: 1 },
        [C]: { may: false, trust: 0.5 },
        [D]: { may: false, trust: 0 },
        [SELF]: { may: false, trust: 0 },
      },
    },
    {
      name: 'follows with minTrust 0.5 takes follows of follows',
      options: { operator: OP, minTrust: 0.5 },
      follows: [
        [OP, [A]],
        [A, [C]],
      ],
      expect: { [C]: { may: true, trust: 0.5 }, [D]: { may: false, trust: 0 } },
    },
    {
      name: 'a contact list of a stranger is ignored',
      options: { operator: OP, minTrust: 0.5 },
      follows: [
        [OP, [A]],
        [D, [C]],
      ],
      expect: { [C]: { may: false, trust: 0 } },
    },
    {
      name: 'allowlist: only those, in any mode',
      options: { mode: 'open', allowlist: [A] },
      expect: { [A]: { may: true, trust: 1 }, [B]: { may: false, trust: 0 } },
    },
    {
      name: 'allowlist mode with an empty list: nobody',
      options: { mode: 'allowlist' },
      expect: { [A]: { may: false, trust: 0 } },
    },
    {
      name: 'open: anyone not muted, trust 0 for strangers',
      options: { mode: 'open', mute: [M], block: [B] },
      expect: { [A]: { may: true, trust: 0 }, [M]: { may: false, trust: 0 }, [B]: { may: false, trust: 0 } },
    },
    {
      name: 'the NIP-51 mute list beats a follow and the allowlist',
      options: { operator: OP, allowlist: [A, B] },
      follows: [[OP, [A, B]]],
      muted: [B],
      expect: { [A]: { may: true, trust: 1 }, [B]: { may: false, trust: 0 } },
    },
  ];
  for (const c of cases) {
    const policy = new PeerPolicy(c.options);
    for (const [owner, list] of c.follows ?? []) policy.setFollows(owner, list);
    if (c.muted) policy.setMuted(c.muted);
    for (const [pubkey, want] of Object.entries(c.expect)) {
      assert.equal(policy.mayPeer(pubkey), want.may, `${c.name}: mayPeer ${pubkey.slice(0, 1)}`);
      assert.equal(policy.trustOf(pubkey), want.trust, `${c.name}: trustOf ${pubkey.slice(0, 1)}`);
    }
  }
});

test('peer policy: unfollowing drops that key and its list; graph is bounded', () => {
  const policy = new PeerPolicy({ operator: OP, minTrust: 0.5, maxLists: 3, maxFollowsPerList: 3 });
  policy.setFollows(OP, [A, B, C]);
  assert.equal(policy.setFollows(A, [D]), true);
  assert.equal(policy.setFollows(B, [M]), true);
  assert.equal(policy.setFollows(C, [SELF]), false, 'a fourth list (the operator counts) is over maxLists');
  assert.equal(policy.trustOf(D), 0.5);
  policy.setFollows(OP, [B]);
  assert.equal(policy.trustOf(A), 0);
  assert.equal(policy.trustOf(D), 0, 'the list of an unfollowed key is forgotten');
  assert.equal(policy.trustOf(M), 0.5);
  const many = Array.from({ length: 10 }, (_, i) => i.toString(16).repeat(64).slice(0, 64));
  policy.setFollows(OP, many);
  assert.equal(policy.directFollows().size, 3);
});

test('peer policy property: trust is in 0..1 and muted keys never peer', () => {
  const hexKey = fc.constantFrom(OP, A, B, C, D, M, SELF);
  fc.assert(
    fc.property(
      fc.constantFrom('follows', 'allowlist', 'open' as const),
      fc.array(hexKey, { maxLength: 4 }),
      fc.array(hexKey, { maxLength: 4 }),
      fc.array(fc.tuple(hexKey, fc.array(hexKey, { maxLength: 5 })), { maxLength: 5 }),
      hexKey,
      (mode, allowlist, mute, lists, probe) => {
        const policy = new PeerPolicy({ mode, allowlist, mute, operator: OP, self: SELF, minTrust: 0.5 });
        policy.setFollows(OP, lists[0]?.[1] ?? []);
        for (const [owner, list] of lists) policy.setFollows(owner, list);
        const trust = policy.trustOf(probe);
        assert.ok(trust >= 0 && trust <= 1);
        if (mute.includes(probe) || probe === SELF) {
          assert.equal(policy.mayPeer(probe), false);
          assert.equal(policy.mayIngest(probe), false);
        }
        if (policy.mayPeer(probe)) assert.equal(policy.mayIngest(probe), true);
      },
    ),
  );
});

test('listedKeys takes valid p tags only, bounded', () => {
  assert.deepEqual(
    listedKeys(
      [
        ['p', A],
        ['p', 'nothex'],
        ['e', B],
        ['p', A],
        ['p', C],
        ['p', D],
      ],
      2,
    ),
    [A, C],
  );
});

test('token buckets: burst, refill, bounded keys; property: never more than burst + rate x time', () => {
  const buckets = new TokenBuckets(3, 1, 2);
  assert.deepEqual(
    [1, 2, 3, 4].map(() => buckets.take('x', 0)),
    [true, true, true, false],
  );
  assert.equal(buckets.peek('x', 500), false);
  assert.equal(buckets.take('x', 1000), true, 'one token back after a second');
  assert.equal(buckets.take('y', 1000), true, 'another key has its own budget');
  buckets.take('z', 1000);
  assert.equal(buckets.size, 2, 'bounded: the least recently used key is forgotten');
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 20 }),
      fc.integer({ min: 0, max: 5 }),
      fc.array(fc.integer({ min: 0, max: 2000 }), { minLength: 1, maxLength: 200 }),
      (burst, rate, gaps) => {
        const b = new TokenBuckets(burst, rate, 10);
        let now = 0;
        let taken = 0;
        for (const gap of gaps) {
          now += gap;
          if (b.take('k', now)) taken += 1;
        }
        assert.ok(taken <= burst + Math.floor((rate * now) / 1000));
      },
    ),
  );
});

test('LruSet is bounded and forgets the oldest', () => {
  const set = new LruSet(2);
  assert.equal(set.add('a'), true);
  assert.equal(set.add('a'), false);
  set.add('b');
  set.add('c');
  assert.equal(set.has('a'), false);
  assert.equal(set.size, 2);
});

const sheet = (model: string, input = 100): PriceSheet => ({
  model,
  price: { input_msat_per_1k: input, output_msat_per_1k: 2 * input },
  context_window: 4096,
  nodes: 1,
});

function signedSheet(
  sk: Uint8Array,
  model: string,
  nowS: number,
  options: { expiresInS?: number; input?: number } = {},
) {
  return createEnvelope(
    KIND.priceSheet,
    sheet(model, options.input),
    { nowS, expiresInS: options.expiresInS ?? 600, tags: [['d', model]] },
    sk,
  );
}

test('inbound gate: size, shape, signature, kind, expiration, age, dedupe, rate budget', async () => {
  const sk = generateSecretKey();
  const other = generateSecretKey();
  const nowMs = 1_800_000_000_000;
  const nowS = nowMs / 1000;
  const gate = new InboundGate({ maxBytes: 4096, burst: 3, refillPerS: 0, maxAgeS: 900 });
  const good = signedSheet(sk, 'm1', nowS);
  const ok = await gate.check(JSON.stringify(good), nowMs);
  assert.equal(ok.ok, true);
  assert.equal(ok.ok && ok.kind, KIND.priceSheet);
  const cases: [string, unknown, string][] = [
    ['duplicate id', good, 'REPLAYED'],
    ['oversized raw text', `${JSON.stringify(good)}${' '.repeat(5000)}`, 'ENVELOPE_TOO_LARGE'],
    ['not JSON', '{"id":', 'BAD_JSON'],
    ['bad shape', { ...good, id: 'zz' }, 'BAD_SHAPE'],
    ['forged content', { ...signedSheet(sk, 'm2', nowS), content: JSON.stringify(sheet('m2', 1)) }, 'BAD_ID'],
    ['forged signature', { ...signedSheet(sk, 'm3', nowS), sig: 'ab'.repeat(64) }, 'BAD_SIGNATURE'],
    ['expired', signedSheet(sk, 'm4', nowS - 100, { expiresInS: 50 }), 'EXPIRED'],
    ['too old', signedSheet(sk, 'm5', nowS - 1000), 'STALE'],
    ['from the future', signedSheet(sk, 'm6', nowS + 600), 'STALE'],
    [
      'not a federation kind',
      createEnvelope(KIND.cancel, { id: 'abcdefgh', reason: 'x' }, { nowS }, sk),
      'UNKNOWN_KIND',
    ],
    [
      'payload of the wrong schema',
      finalizeEvent({ kind: KIND.priceSheet, created_at: nowS, tags: [], content: '{"model":1}' }, sk),
      'BAD_PAYLOAD',
    ],
  ];
  for (const [name, raw, code] of cases) {
    const result = await gate.check(raw, nowMs);
    assert.equal(result.ok ? 'ok' : result.code, code, name);
  }
  // Forged events did not spend the author's budget: two more real ones pass, then it is spent.
  assert.equal((await gate.check(signedSheet(sk, 'm7', nowS), nowMs)).ok, true);
  assert.equal((await gate.check(signedSheet(sk, 'm8', nowS), nowMs)).ok, true);
  const limited = await gate.check(signedSheet(sk, 'm9', nowS), nowMs);
  assert.equal(limited.ok ? 'ok' : limited.code, 'RATE_LIMITED');
  assert.equal(
    (await gate.check(signedSheet(other, 'm1', nowS), nowMs)).ok,
    true,
    'another key is still taken',
  );
  // Standard kinds: contact list verified by id and signature.
  const contacts = finalizeEvent({ kind: 3, created_at: nowS, tags: [['p', A]], content: '' }, other);
  assert.equal((await gate.check(contacts, nowMs)).ok, true);
  const oldContacts = finalizeEvent(
    { kind: 3, created_at: nowS - 365 * 86400, tags: [['p', B]], content: '' },
    generateSecretKey(),
  );
  const oldList = await gate.check(oldContacts, nowMs + 1_000_000);
  assert.equal(oldList.ok, true, 'a contact list a year old is still the operator list');
  const forgedContacts = {
    ...finalizeEvent({ kind: 3, created_at: nowS, tags: [['p', B]], content: '' }, other),
  };
  forgedContacts.tags = [['p', C]];
  const refused = await gate.check(forgedContacts, nowMs);
  assert.equal(refused.ok ? 'ok' : refused.code, 'BAD_ID');
});

function meta(pubkey: string, id: string, createdAtS: number, expiresAtS?: number): IngestMeta {
  return { id: id.padEnd(64, '0'), pubkey, createdAtS, expiresAtS };
}

const caps = (models: string[]) => ({
  kind: KIND.routerCapabilities,
  payload: { name: 'r', url: 'https://r.example', models, features: ['openai' as const] },
});
const priceOf = (model: string, input: number) => ({ kind: KIND.priceSheet, payload: sheet(model, input) });

test('peer table: newest addressable wins, same second lower id, expiry, capabilities gate', () => {
  const policy = new PeerPolicy({ mode: 'open' });
  const table = new PeerTable({ policy });
  const t = 1_800_000_000;
  const ms = t * 1000;
  assert.equal(table.ingest(caps(['m']), meta(A, '1', t, t + 100), 'capabilities', ms), 'added');
  assert.equal(table.ingest(priceOf('m', 100), meta(A, '5', t, t + 100), 'm', ms), 'added');
  assert.equal(table.ingest(priceOf('m', 50), meta(A, '6', t - 10, t + 100), 'm', ms), 'older');
  assert.equal(
    table.ingest(priceOf('m', 70), meta(A, '7', t, t + 100), 'm', ms),
    'older',
    'same second, higher id',
  );
  assert.equal(
    table.ingest(priceOf('m', 60), meta(A, '4', t, t + 100), 'm', ms),
    'replaced',
    'same second, lower id',
  );
  assert.equal(table.ingest(priceOf('m', 200), meta(A, '8', t + 1, t + 100), 'm', ms), 'replaced');
  assert.equal(table.ingest(priceOf('m', 1), meta(A, '9', t + 2, t + 100), 'other', ms), 'bad_d');
  assert.equal(table.ingest(priceOf('m', 1), meta(A, '9', t - 200, t - 1), 'm', ms), 'expired');
  assert.equal(table.peersFor('m', ms)[0]?.price.input_msat_per_1k, 200);
  // A sheet for a model the capabilities do not list is not offered.
  table.ingest(priceOf('x', 1), meta(A, 'a', t, t + 100), 'x', ms);
  assert.deepEqual(table.peersFor('x', ms), []);
  // Expired items disappear from answers and from the table after prune.
  assert.deepEqual(table.peersFor('m', ms + 101_000), []);
  table.prune(ms + 101_000);
  assert.equal(table.size, 0);
});

test('peer table: reputation counters and the auction record', () => {
  const table = new PeerTable({ policy: new PeerPolicy({ mode: 'open' }), latencyAlpha: 0.5 });
  const t = 1_800_000_000;
  table.ingest(caps(['m']), meta(A, '1', t), 'capabilities', t * 1000);
  table.recordOutcome(A, { ok: true, latencyMs: 100 });
  table.recordOutcome(A, { ok: true, latencyMs: 200 });
  table.recordOutcome(A, { ok: false, disputed: true });
  table.recordOutcome(B, { ok: true });
  const [snap] = table.snapshot(t * 1000);
  assert.deepEqual(snap?.reputation, { answered: 2, failed: 1, latencyEwmaMs: 150, disputes: 1 });
  assert.deepEqual(table.peerRecord(A), { trust: 0, successRate: 3 / 5, latencyMs: 150 });
  assert.equal(table.has(B), false, 'outcomes of unknown peers are not stored');
});

test('peer table eviction: the least trusted goes first; a less useful newcomer is refused', () => {
  const policy = new PeerPolicy({ operator: OP, mode: 'follows' });
  policy.setFollows(OP, [A, B]);
  const table = new PeerTable({ policy, maxPeers: 2 });
  const t = 1_800_000_000;
  assert.equal(table.ingest(caps(['m']), meta(C, '1', t), 'capabilities', t * 1000), 'added');
  assert.equal(table.ingest(caps(['m']), meta(A, '2', t), 'capabilities', t * 1000), 'added');
  assert.equal(
    table.ingest(caps(['m']), meta(D, '3', t), 'capabilities', t * 1000),
    'refused',
    'stranger vs stranger',
  );
  assert.equal(
    table.ingest(caps(['m']), meta(B, '4', t), 'capabilities', t * 1000),
    'added',
    'followed evicts stranger',
  );
  assert.equal(table.has(C), false);
  assert.equal(table.size, 2);
});

test('peer table property: never over its bound, and followed peers are never evicted by strangers', () => {
  fc.assert(
    fc.property(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 30 }), fc.boolean()), { minLength: 1, maxLength: 120 }),
      (arrivals) => {
        const followed = new Set<string>();
        const keys = arrivals.map(([n, f]) => {
          const k = n.toString(16).padStart(2, '0').repeat(32);
          if (f) followed.add(k);
          return k;
        });
        const policy = new PeerPolicy({ operator: OP, mode: 'follows' });
        policy.setFollows(OP, [...followed]);
        const table = new PeerTable({ policy, maxPeers: 5 });
        const t = 1_800_000_000;
        const kept = new Set<string>();
        keys.forEach((k, i) => {
          if (
            table.ingest(caps(['m']), meta(k, String(i), t + i), 'capabilities', (t + i) * 1000) !== 'refused'
          )
            kept.add(k);
          assert.ok(table.size <= 5);
        });
        // A followed key, once in, stays unless the table is full of followed keys.
        const followedIn = [...kept].filter((k) => followed.has(k));
        const present = followedIn.filter((k) => table.has(k)).length;
        assert.ok(present >= Math.min(5, followedIn.length) || table.size === 5);
      },
    ),
  );
});

const snapshot = (models: AnnounceSnapshot['models']): AnnounceSnapshot => ({
  models,
  status: { nodes_online: 2, free_slots: 3, load: 0.4, accepting_offload: true },
});

test('announcements: kinds, d tags, expiration, NIP-89 handler; each verifies as a broadcast', async () => {
  const sk = generateSecretKey();
  const nowS = Math.floor(Date.now() / 1000);
  const events = buildAnnouncements(
    snapshot([
      { id: 'b', price: { input_msat_per_1k: 5, output_msat_per_1k: 6 }, context_window: 2048, nodes: 2 },
      { id: 'a', price: { input_msat_per_1k: 1, output_msat_per_1k: 2 }, context_window: 4096, nodes: 1 },
    ]),
    { secretKey: sk, name: 'r1', publicUrl: 'https://r1.example/' },
    { nowS, expiresInS: 900 },
  );
  assert.deepEqual(
    events.map((e) => [e.kind, e.tags.find((t) => t[0] === 'd')?.[1]]),
    [
      [KIND.routerCapabilities, 'capabilities'],
      [KIND.priceSheet, 'a'],
      [KIND.priceSheet, 'b'],
      [KIND.routerStatus, 'status'],
      [KIND.handlerInfo, 'fed-ai-router'],
    ],
  );
  for (const e of events) {
    assert.equal(e.pubkey, publicKeyOf(sk));
    assert.deepEqual(
      e.tags.find((t) => t[0] === 'expiration'),
      ['expiration', String(nowS + 900)],
    );
    assert.equal(
      e.tags.some((t) => t[0] === 'p'),
      false,
      'broadcasts have no audience',
    );
    if (e.kind === KIND.handlerInfo) continue;
    const verified = await verifyEnvelope(e, { me: null, kinds: [e.kind as 38100], nowS });
    assert.equal(verified.ok, true, `kind ${e.kind}`);
  }
  const handler = events.at(-1) as SignedEvent;
  assert.deepEqual(
    handler.tags.filter((t) => t[0] === 'k').map((t) => t[1]),
    ['5050', '28100'],
  );
  assert.deepEqual(JSON.parse(handler.content), {
    name: 'r1',
    about: 'fed-ai router: OpenAI-compatible, paid per token in Lightning msat.',
    website: 'https://r1.example/',
    openai_base_url: 'https://r1.example/v1',
  });
});

test('announcement hash: changes with models and prices, not with small load moves', () => {
  const m = {
    id: 'a',
    price: { input_msat_per_1k: 1, output_msat_per_1k: 2 },
    context_window: 4096,
    nodes: 1,
  };
  const base = announcementHash(snapshot([m]));
  assert.equal(announcementHash({ ...snapshot([m]), status: { ...snapshot([m]).status, load: 0.41 } }), base);
  assert.notEqual(announcementHash(snapshot([m, { ...m, id: 'b' }])), base);
  assert.notEqual(
    announcementHash(snapshot([{ ...m, price: { input_msat_per_1k: 9, output_msat_per_1k: 2 } }])),
    base,
  );
});

test('registrySource: the price is the most expensive serving node; status from serving nodes', () => {
  const offer = (input: number) => ({
    offer: {
      id: 'm',
      context_window: 4096,
      max_output_tokens: 512,
      price: { input_msat_per_1k: input, output_msat_per_1k: 10 },
    },
  });
  const node = (free: number, serving: boolean) => ({
    serving,
    registration: { capacity: { max_concurrency: 4 } },
    heartbeat: { free_slots: free },
    inFlight: 1,
  });
  const nodes = [node(4, true), node(2, true), node(4, false)];
  const registry = {
    models: () => [
      {
        id: 'm',
        nodes: 2,
        context_window: 4096,
        price: { input_msat_per_1k: 1, output_msat_per_1k: 10 },
        demo: false,
      },
    ],
    views: () => [offer(1), offer(7)],
    all: () => nodes,
    isServing: (n: { serving: boolean }) => n.serving,
  } as unknown as Pick<Registry, 'all' | 'isServing' | 'models' | 'views'>;
  const source = registrySource(registry, { acceptingOffload: () => true });
  assert.deepEqual(source.models(), [
    { id: 'm', price: { input_msat_per_1k: 7, output_msat_per_1k: 10 }, context_window: 4096, nodes: 2 },
  ]);
  assert.deepEqual(source.status(), { nodes_online: 2, free_slots: 4, load: 0.5, accepting_offload: true });
});

test('inbound gate property: arbitrary input never throws and is never accepted', async () => {
  const gate = new InboundGate({ maxBytes: 2048 });
  const sk = generateSecretKey();
  const base = signedSheet(sk, 'fuzz', 1_800_000_000);
  // The real event is taken once; a mutation that happens to leave it unchanged is then a replay.
  assert.equal((await gate.check(base, 1_800_000_000_000)).ok, true);
  await fc.assert(
    fc.asyncProperty(
      fc.oneof(
        fc.string(),
        fc.json(),
        fc.jsonValue(),
        // A real event with one field replaced by anything.
        fc
          .tuple(
            fc.constantFrom('id', 'pubkey', 'sig', 'kind', 'created_at', 'tags', 'content'),
            fc.jsonValue(),
          )
          .map(([field, value]) => ({ ...base, [field]: value })),
      ),
      async (raw) => {
        const result = await gate.check(raw, 1_800_000_000_000);
        assert.equal(result.ok, false);
      },
    ),
    { numRuns: 300 },
  );
});
