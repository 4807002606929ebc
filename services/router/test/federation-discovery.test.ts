// Federation presence over real relays (services/relay, in-process on 127.0.0.1): routers announce
// themselves and discover each other; the inbound gate and the peer policy hold on the wire; a relay
// restart is survived (announcements republished, discovery resumes, duplicates counted once);
// the presence's loops beat as background jobs (fedai_job_*).
import assert from 'node:assert/strict';
import { type AddressInfo, createServer, type Socket } from 'node:net';
import { after, before, test } from 'node:test';
import { JobHeartbeats, relaySocketClass } from '@fed-ai/kit';
import {
  createEnvelope,
  finalizeEvent,
  generateSecretKey,
  KIND,
  type PriceSheet,
  publicKeyOf,
  type RouterStatus,
  type SignedEvent,
} from '@fed-ai/protocol';
import { type RunningRelay, startRelay } from '@fed-ai/relay';
import type { Event } from 'nostr-tools';
import { SimplePool, useWebSocketImplementation } from 'nostr-tools/pool';
import pino from 'pino';
import { Registry as MetricsRegistry } from 'prom-client';
import type { AnnounceModel } from '../src/federation/announce';
import type { RelayBus } from '../src/federation/bus';
import {
  type FederationPresence,
  type FederationPresenceOptions,
  startFederationPresence,
} from '../src/federation/index';
import type { PeerPolicyOptions } from '../src/federation/peer-policy';

useWebSocketImplementation(relaySocketClass(1024 * 1024));

const logger = pino({ level: 'silent' });
const relayLogger = pino({ level: 'silent' }) as unknown as NonNullable<
  Parameters<typeof startRelay>[0]
>['logger'];
const FAST = { reconnectBackoffMs: [100, 200, 400], checkIntervalMs: 50, connectTimeoutMs: 1000 };

const relays: RunningRelay[] = [];
const presences: FederationPresence[] = [];
const pools: SimplePool[] = [];

async function relay(port = 0): Promise<RunningRelay> {
  const r = await startRelay({ port, logger: relayLogger });
  relays.push(r);
  return r;
}

function client(): SimplePool {
  const pool = new SimplePool();
  pools.push(pool);
  return pool;
}

/** A mutable announcement source. */
function source(models: AnnounceModel[]) {
  const state = {
    models,
    status: { nodes_online: 1, free_slots: 2, load: 0.5, accepting_offload: true } as RouterStatus,
  };
  return { state, models: () => state.models, status: () => state.status };
}

const model = (id: string, input = 100): AnnounceModel => ({
  id,
  price: { input_msat_per_1k: input, output_msat_per_1k: 2 * input },
  context_window: 4096,
  nodes: 1,
});

function presence(
  urls: string[],
  name: string,
  models: AnnounceModel[],
  extra: Partial<FederationPresenceOptions> & { policy?: Omit<PeerPolicyOptions, 'self'> } = {},
) {
  const src = source(models);
  const secretKey = generateSecretKey();
  const p = startFederationPresence({
    relays: urls,
    secretKey,
    publicUrl: `http://${name}.example`,
    name,
    source: src,
    policy: { mode: 'open' },
    logger,
    refreshS: 60,
    changeCheckMs: 50,
    relayOptions: FAST,
    ...extra,
  });
  presences.push(p);
  return { p, src, secretKey };
}

/** Waits for a condition with a bounded poll (never a fixed sleep that asserts timing). */
async function until<T>(
  what: string,
  probe: () => T | undefined | false | Promise<T | undefined | false>,
  timeoutMs = 8000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

async function publishTo(urls: string[], event: SignedEvent): Promise<void> {
  await Promise.any(client().publish(urls, event as Event));
}

const sheet = (m: string, input = 100): PriceSheet => ({
  model: m,
  price: { input_msat_per_1k: input, output_msat_per_1k: input },
  context_window: 2048,
  nodes: 1,
});

function announce(
  sk: Uint8Array,
  models: string[],
  options: { nowS?: number; expiresInS?: number; input?: number } = {},
) {
  const common = {
    nowS: options.nowS ?? Math.floor(Date.now() / 1000),
    expiresInS: options.expiresInS ?? 600,
  };
  return [
    createEnvelope(
      KIND.routerCapabilities,
      { name: 'x', url: 'http://x.example', models, features: ['offload'] },
      { ...common, tags: [['d', 'capabilities']] },
      sk,
    ),
    ...models.map((m) =>
      createEnvelope(KIND.priceSheet, sheet(m, options.input), { ...common, tags: [['d', m]] }, sk),
    ),
  ];
}

let main: RunningRelay;

before(async () => {
  main = await relay();
});

after(async () => {
  await Promise.all(presences.map((p) => p.close()));
  for (const pool of pools) pool.destroy();
  await Promise.all(relays.map((r) => r.close().catch(() => undefined)));
});

test('two routers discover each other; plain Nostr clients find the handler and price sheets', async () => {
  const a = presence([main.url], 'alpha', [model('m-a', 100)]);
  const b = presence([main.url], 'beta', [model('m-b', 300), model('shared', 50)]);
  const seenB = await until('alpha sees beta', () => a.p.peers.peersFor('m-b', Date.now())[0]);
  assert.equal(seenB.pubkey, b.p.pubkey);
  assert.equal(seenB.url, 'http://beta.example');
  assert.deepEqual(seenB.price, { input_msat_per_1k: 300, output_msat_per_1k: 600 });
  assert.equal(seenB.context_window, 4096);
  await until('beta status at alpha', () => a.p.peers.peersFor('m-b', Date.now())[0]?.status);
  assert.deepEqual(a.p.peers.peersFor('m-b', Date.now())[0]?.status, b.src.state.status);
  await until('beta sees alpha', () => b.p.peers.peersFor('m-a', Date.now()).length === 1);
  assert.deepEqual(a.p.peers.peersFor('m-a', Date.now()), [], 'a router is not its own peer');
  const snap = a.p.peers.snapshot(Date.now());
  assert.deepEqual(
    snap.map((s) => [s.pubkey, s.prices.map((p) => p.model)]),
    [[b.p.pubkey, ['m-b', 'shared']]],
  );

  const pool = client();
  const handlers = await pool.querySync([main.url], { kinds: [KIND.handlerInfo], '#k': ['5050'] });
  const mine = handlers.filter((e) => e.pubkey === a.p.pubkey || e.pubkey === b.p.pubkey);
  assert.equal(mine.length, 2);
  for (const h of mine) {
    assert.deepEqual(
      h.tags.filter((t) => t[0] === 'k').map((t) => t[1]),
      ['5050', '28100'],
    );
    assert.ok(h.tags.some((t) => t[0] === 'expiration'));
    assert.match(JSON.parse(h.content).openai_base_url, /^http:\/\/(alpha|beta)\.example\/v1$/);
  }
  const rfbHandlers = await pool.querySync([main.url], {
    kinds: [KIND.handlerInfo],
    '#k': ['28100'],
    authors: [a.p.pubkey],
  });
  assert.equal(rfbHandlers.length, 1);
  const sheets = await pool.querySync([main.url], { kinds: [KIND.priceSheet], '#d': ['shared'] });
  assert.deepEqual(
    sheets.map((e) => e.pubkey),
    [b.p.pubkey],
  );
  assert.equal(JSON.parse(sheets[0]!.content).model, 'shared');

  // Refresh on change: a new model appears -> a new price sheet, seen by the peer.
  b.src.state.models = [...b.src.state.models, model('m-new', 70)];
  const fresh = await until('alpha sees the new model', () => a.p.peers.peersFor('m-new', Date.now())[0]);
  assert.equal(fresh.price.input_msat_per_1k, 70);
  const newSheets = await pool.querySync([main.url], {
    kinds: [KIND.priceSheet],
    '#d': ['m-new'],
    authors: [b.p.pubkey],
  });
  assert.equal(newSheets.length, 1);
  // A price change replaces the sheet (newest wins at the relay and at the peer).
  b.src.state.models = b.src.state.models.map((m) => (m.id === 'm-new' ? model('m-new', 90) : m));
  await until(
    'alpha sees the new price',
    () => a.p.peers.peersFor('m-new', Date.now())[0]?.price.input_msat_per_1k === 90,
  );
});

test('inbound gate and policy on the wire: oversized, expired, older, forged, muted, flood', async () => {
  const muted = generateSecretKey();
  const flooder = generateSecretKey();
  const honest = generateSecretKey();
  const big = generateSecretKey();
  const expiring = generateSecretKey();
  const observer = presence([main.url], 'observer', [], {
    policy: { mode: 'open', mute: [publicKeyOf(muted)] },
    inbound: { maxBytes: 8 * 1024, burst: 8, refillPerS: 0.001 },
  });
  const at = () => observer.p.peers;
  const now = () => Date.now();

  // Oversized: a valid capabilities event over the observer's 8 KiB bound (the relay takes it).
  const manyModels = Array.from({ length: 300 }, (_, i) => `model-number-${i}-with-a-long-name`);
  await publishTo([main.url], announce(big, manyModels.slice(0, 1))[1]!);
  await publishTo([main.url], announce(big, manyModels)[0]!);
  // Expiring in 30 s: taken now, no longer offered once its expiration passed.
  for (const e of announce(expiring, ['m-exp'], { expiresInS: 30 })) await publishTo([main.url], e);
  // Muted key.
  for (const e of announce(muted, ['m-muted'])) await publishTo([main.url], e);
  // Flood: 20 price sheets from one key (8 is its budget).
  const nowS = Math.floor(Date.now() / 1000);
  const flood = announce(
    flooder,
    Array.from({ length: 20 }, (_, i) => `f${i}`),
    { nowS },
  );
  for (const e of flood) await publishTo([main.url], e);
  // Honest key after the flood.
  for (const e of announce(honest, ['m-honest'])) await publishTo([main.url], e);

  await until('honest peer taken after the flood', () => at().peersFor('m-honest', now()).length === 1);
  await until('expiring peer taken', () => at().peersFor('m-exp', now()).length === 1);
  const stats = observer.p.discovery.stats;
  await until('oversized refused', () => (stats.refused.ENVELOPE_TOO_LARGE ?? 0) >= 1);
  assert.equal(
    at()
      .snapshot(now())
      .find((s) => s.pubkey === publicKeyOf(big))?.capabilities,
    undefined,
  );
  await until('flood rate-limited', () => (stats.refused.RATE_LIMITED ?? 0) >= 1);
  const floodSnap = at()
    .snapshot(now())
    .find((s) => s.pubkey === publicKeyOf(flooder));
  assert.ok(floodSnap && floodSnap.prices.length <= 8, `flooder kept ${floodSnap?.prices.length}`);
  assert.equal(at().has(publicKeyOf(muted)), false, 'muted key ignored');

  // Forged signature, fed straight to discovery (the relay refuses forgeries itself).
  const forged = { ...announce(honest, ['m-forged'])[1]!, sig: 'ab'.repeat(64) };
  await observer.p.discovery.handle(forged);
  assert.equal((stats.refused.BAD_SIGNATURE ?? 0) >= 1, true);
  // An older addressable event does not replace a newer one.
  const honestKey = publicKeyOf(honest);
  const older = announce(honest, ['m-honest'], { nowS: Math.floor(Date.now() / 1000) - 30, input: 1 })[1]!;
  await observer.p.discovery.handle(older);
  assert.equal(at().peersFor('m-honest', now())[0]?.price.input_msat_per_1k, 100);
  assert.equal(at().peersFor('m-honest', now())[0]?.pubkey, honestKey);
  // Expired: not offered past its expiration (the clock is an argument), and an event that is
  // already expired when it arrives is refused.
  assert.deepEqual(at().peersFor('m-exp', now() + 31_000), []);
  const expired = announce(expiring, ['m-exp2'], {
    nowS: Math.floor(Date.now() / 1000) - 20,
    expiresInS: 10,
  })[1]!;
  await observer.p.discovery.handle(expired);
  assert.ok((stats.refused.EXPIRED ?? 0) >= 1);
});

test('allowlist mode takes only the listed routers', async () => {
  const listed = generateSecretKey();
  const other = generateSecretKey();
  const watcher = presence([main.url], 'watcher', [], {
    policy: { mode: 'allowlist', allowlist: [publicKeyOf(listed)] },
  });
  for (const e of announce(other, ['m-allow'])) await publishTo([main.url], e);
  for (const e of announce(listed, ['m-allow'])) await publishTo([main.url], e);
  await until('listed peer', () => watcher.p.peers.peersFor('m-allow', Date.now()).length === 1);
  await until('other refused', () => (watcher.p.discovery.stats.refused.POLICY ?? 0) >= 2);
  assert.deepEqual(
    watcher.p.peers.peersFor('m-allow', Date.now()).map((p) => p.pubkey),
    [publicKeyOf(listed)],
  );
  assert.equal(watcher.p.peers.has(publicKeyOf(other)), false);
});

test('two relays, one restarted: announcements republished, discovery resumes, duplicates once', async () => {
  const r1 = await relay();
  const r2 = await relay();
  const urls = [r1.url, r2.url];
  const p = presence(urls, 'pub', [model('m-two')]);
  const q = presence(urls, 'sub', []);
  // The auction's relay interface is FederationRelays itself.
  const bus: RelayBus = q.p.relays;
  assert.ok(bus);
  await until('q sees p', () => q.p.peers.peersFor('m-two', Date.now()).length === 1);

  // One event on both relays reaches a subscriber once.
  const third = generateSecretKey();
  const [capsEvent] = announce(third, ['m-third']);
  let deliveries = 0;
  const counter = q.p.relays.subscribe([{ ids: [capsEvent!.id] }], () => {
    deliveries += 1;
  });
  const pool = client();
  await Promise.all(pool.publish(urls, capsEvent as Event));
  for (const url of urls)
    await until(
      `stored on ${url}`,
      async () => (await pool.querySync([url], { ids: [capsEvent!.id] })).length === 1,
    );
  await until('delivered', () => deliveries >= 1);
  const dupBefore = q.p.discovery.stats.refused.REPLAYED ?? 0;
  // Another event to both relays as a barrier: once it arrived, both copies of the first have too.
  const [barrier] = announce(generateSecretKey(), ['m-barrier']);
  let barrierSeen = 0;
  const barrierSub = q.p.relays.subscribe([{ ids: [barrier!.id] }], () => {
    barrierSeen += 1;
  });
  await Promise.all(pool.publish(urls, barrier as Event));
  await until('barrier', () => barrierSeen >= 1);
  assert.equal(deliveries, 1, 'seen on two relays, delivered once');
  assert.equal(barrierSeen, 1);
  assert.equal(q.p.discovery.stats.refused.REPLAYED ?? 0, dupBefore);
  counter.close();
  barrierSub.close();

  // Restart r2 on the same port with an empty store.
  const port = r2.port;
  await r2.close();
  relays.splice(relays.indexOf(r2), 1);
  await until('p notices the drop', () => !p.p.relays.connected().includes(r2.url.replace(/\/$/, '')));
  const r2b = await relay(port);
  // p republishes to the new relay (its store was empty).
  await until(
    'announcements republished to the restarted relay',
    async () =>
      (await client().querySync([r2b.url], { kinds: [KIND.routerCapabilities], authors: [p.p.pubkey] }))
        .length === 1,
  );
  // Discovery on the restarted relay resumes: an event published only there reaches q.
  const late = generateSecretKey();
  for (const e of announce(late, ['m-late'])) await publishTo([r2b.url], e);
  await until(
    'q discovers through the restarted relay',
    () => q.p.peers.peersFor('m-late', Date.now()).length === 1,
  );
});

test('a relay that is down when the router starts is connected once it is up', async () => {
  const probe = await relay();
  const port = probe.port;
  await probe.close();
  relays.splice(relays.indexOf(probe), 1);
  const early = presence([`ws://127.0.0.1:${port}`], 'early', [model('m-early')]);
  const later = await relay(port);
  await until(
    'announced on the relay that came up late',
    async () =>
      (await client().querySync([later.url], { kinds: [KIND.priceSheet], '#d': ['m-early'] })).length === 1,
  );
  assert.ok(early.p.relays.connected().length === 1);
});

test('a relay that takes the TCP connection but never answers the handshake: connects time out, closing while connecting is quiet, the other relay serves', async () => {
  // nostr-tools aborts such a socket on its connect timeout and on close; unguarded, ws raised that
  // abort as an uncaught exception and killed the router (CI, session 9).
  const sockets: Socket[] = [];
  const silent = createServer((socket) => sockets.push(socket));
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  const silentUrl = `ws://127.0.0.1:${(silent.address() as AddressInfo).port}`;
  try {
    const stuck = presence([silentUrl, main.url], 'stuck', [model('m-stuck')], {
      relayOptions: { ...FAST, connectTimeoutMs: 100 },
    });
    await until(
      'announced on the relay that answers',
      async () =>
        (await client().querySync([main.url], { kinds: [KIND.priceSheet], '#d': ['m-stuck'] })).length === 1,
    );
    await until('a second connect to the silent relay', () => sockets.length >= 2);
    assert.deepEqual(stuck.p.relays.connected(), [main.url]);
    await until('a connect in flight', () => sockets.some((socket) => !socket.destroyed));
    await stuck.p.close();
    presences.splice(presences.indexOf(stuck.p), 1);
  } finally {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => silent.close(resolve));
  }
});

test("follows mode: the operator's contact list makes peers, its NIP-51 mute list removes them", async () => {
  const operator = generateSecretKey();
  const friend = generateSecretKey();
  const stranger = generateSecretKey();
  const watcher = presence([main.url], 'follower', [], {
    policy: { mode: 'follows', operator: publicKeyOf(operator) },
  });
  for (const e of announce(friend, ['m-follow'])) await publishTo([main.url], e);
  for (const e of announce(stranger, ['m-follow'])) await publishTo([main.url], e);
  await until(
    'both kept, neither offered yet',
    () => watcher.p.peers.has(publicKeyOf(friend)) && watcher.p.peers.has(publicKeyOf(stranger)),
  );
  assert.deepEqual(watcher.p.peers.peersFor('m-follow', Date.now()), []);
  const nowS = Math.floor(Date.now() / 1000);
  const contacts = finalizeEvent(
    { kind: 3, created_at: nowS, tags: [['p', publicKeyOf(friend)]], content: '' },
    operator,
  );
  await publishTo([main.url], contacts);
  const offered = await until('friend offered', () => watcher.p.peers.peersFor('m-follow', Date.now())[0]);
  assert.equal(offered.pubkey, publicKeyOf(friend));
  assert.equal(offered.trust, 1);
  assert.equal(watcher.p.peers.peersFor('m-follow', Date.now()).length, 1, 'the stranger is not offered');
  const mutes = finalizeEvent(
    { kind: 10000, created_at: nowS, tags: [['p', publicKeyOf(friend)]], content: '' },
    operator,
  );
  await publishTo([main.url], mutes);
  await until('muted friend removed', () => !watcher.p.peers.has(publicKeyOf(friend)));
  assert.deepEqual(watcher.p.peers.peersFor('m-follow', Date.now()), []);
});

/** A fedai_job_* sample for one job (and outcome), or undefined when it is not exported. */
async function jobSample(
  metrics: MetricsRegistry,
  name: string,
  jobName: string,
  outcome?: string,
): Promise<number | undefined> {
  const metric = (await metrics.getMetricsAsJSON()).find((m) => m.name === name);
  return metric?.values.find(
    (v) => v.labels.job_name === jobName && (outcome === undefined || v.labels.outcome === outcome),
  )?.value;
}

test('the presence loops beat as jobs; a check without a relay and a round no relay took are errors', async () => {
  const jobs = new JobHeartbeats();
  const metrics = new MetricsRegistry();
  jobs.register(metrics);
  const r = await relay();
  const { p, src } = presence([r.url], 'beating', [model('m-beat')], { jobs, pruneIntervalMs: 50 });
  const runs = (job: string, outcome: string) => jobSample(metrics, 'fedai_job_runs_total', job, outcome);
  const loops = ['router_federation_relays', 'router_federation_announce', 'router_federation_peer_prune'];
  const first = new Map<string, number>();
  await until('every loop beat', async () => {
    for (const job of loops) {
      const n = (await runs(job, 'success')) ?? 0;
      if (n < 1) return false;
      first.set(job, n);
    }
    return true;
  });
  const beatAt = await jobSample(
    metrics,
    'fedai_job_last_success_timestamp_seconds',
    'router_federation_announce',
  );
  assert.ok(beatAt !== undefined && Math.abs(beatAt - Date.now() / 1000) < 60, `last success ${beatAt}`);
  // Advancing: more successes after the first ones, and none overdue.
  await until('every loop beat again', async () => {
    for (const job of loops) if (((await runs(job, 'success')) ?? 0) <= first.get(job)!) return false;
    return true;
  });
  for (const job of loops) assert.equal(await jobSample(metrics, 'fedai_job_overdue', job), 0, job);
  assert.equal((await runs('router_federation_announce', 'error')) ?? 0, 0, 'the relay took every round');

  // The only relay goes away: its checks fail, and a changed announcement reaches no relay.
  await r.close();
  relays.splice(relays.indexOf(r), 1);
  await until('the drop is noticed', () => p.relays.connected().length === 0);
  const relayErrors = (await runs('router_federation_relays', 'error')) ?? 0;
  await until(
    'relay checks fail',
    async () => ((await runs('router_federation_relays', 'error')) ?? 0) > relayErrors,
  );
  src.state.models = [model('m-beat', 999)];
  await until(
    'the unpublished round is an error',
    async () => ((await runs('router_federation_announce', 'error')) ?? 0) >= 1,
  );
  const pruned = (await runs('router_federation_peer_prune', 'success')) ?? 0;
  await until(
    'pruning goes on',
    async () => ((await runs('router_federation_peer_prune', 'success')) ?? 0) > pruned,
  );
});
