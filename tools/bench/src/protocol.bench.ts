// pnpm bench:protocol — signing, signature verification and full envelope verification per
// second, on the native (bcrypto), nostr-wasm and pure-JS backends, in the same run (ratios are
// what compare); then a router's inference request to a node made and checked with a signature and
// with a MAC (channel-mac.ts), on the fastest backend.
import { initServiceCrypto } from '@fed-ai/kit';
import {
  ChannelKeys,
  type CryptoBackendName,
  createEnvelope,
  createMacEnvelope,
  type Envelope,
  finalizeEvent,
  generateSecretKey,
  initCrypto,
  KIND,
  MemoryReplayStore,
  publicKeyOf,
  useCryptoBackend,
  verifyEnvelope,
  verifyEventSignature,
} from '@fed-ai/protocol';
import { fmt, opsPerSecond, opsPerSecondAsync, summarize } from './stats';

const COUNT = Number(process.env.BENCH_COUNT ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 5);

const fastest = await initServiceCrypto({ warn: (fields) => console.warn('native backend:', fields) });
const init = await initCrypto('wasm');
if (init.backend !== 'wasm') console.warn(`wasm backend did not load (${init.error})`);
const backends: CryptoBackendName[] = [
  ...(fastest === 'native' ? (['native'] as const) : []),
  ...(init.backend === 'wasm' ? (['wasm'] as const) : []),
  'pure',
];

const nodeKey = generateSecretKey();
const router = publicKeyOf(generateSecretKey());
const payload = {
  request_id: 'bench-0000-0000',
  router,
  model: 'fedai-demo-noise-v1',
  prompt_sha256: 'a'.repeat(64),
  output_sha256: 'b'.repeat(64),
  tokens_in: 120,
  tokens_out: 256,
  ttft_ms: 40,
  wall_ms: 900,
  price: { input_msat_per_1k: 1000, output_msat_per_1k: 3000 },
  cost_msat: 888,
  finish_reason: 'stop' as const,
  count_source: 'tokenizer' as const,
};

const rows: { backend: string; sign: number; verify: number; envelope: number }[] = [];
for (const backend of backends) {
  useCryptoBackend(backend);
  const events: Envelope[] = [];
  const sign = summarize(
    opsPerSecond(
      (i) => {
        const e = finalizeEvent(
          { kind: 1, created_at: 1_800_000_000, tags: [], content: `bench ${i}` },
          nodeKey,
        );
        if (events.length < COUNT) events.push(e);
      },
      COUNT,
      ROUNDS,
    ),
  );
  const verify = summarize(
    opsPerSecond((i) => verifyEventSignature(events[i % events.length]!), COUNT, ROUNDS),
  );
  const envelopes = Array.from({ length: COUNT }, (_, i) =>
    JSON.stringify(
      createEnvelope(
        KIND.meteringRecord,
        { ...payload, request_id: `bench-${i}-0000` },
        { audience: router },
        nodeKey,
      ),
    ),
  );
  // A fresh replay store per round: each round verifies every envelope once, as a router would.
  let replayStore = new MemoryReplayStore(COUNT * 2);
  const envelope = summarize(
    await opsPerSecondAsync(
      async (i) => {
        if (i === 0) replayStore = new MemoryReplayStore(COUNT * 2);
        const result = await verifyEnvelope(envelopes[i]!, {
          me: router,
          kinds: [KIND.meteringRecord],
          replayStore,
        });
        if (!result.ok) throw new Error(`bench envelope failed: ${result.code}`);
      },
      COUNT,
      ROUNDS,
    ),
  );
  rows.push({ backend, sign: sign.median, verify: verify.median, envelope: envelope.median });
}

console.log(`protocol bench: ${COUNT} ops x ${ROUNDS} rounds, median ops/s (node ${process.version})`);
console.log('| backend | sign/s | verify/s | envelope verify/s |');
console.log('|---|---|---|---|');
for (const r of rows)
  console.log(`| ${r.backend} | ${fmt(r.sign)} | ${fmt(r.verify)} | ${fmt(r.envelope)} |`);
for (const [faster, slower] of rows.slice(0, -1).map((row, i) => [row, rows[i + 1]!] as const))
  console.log(
    `${faster.backend}/${slower.backend} ratio: sign ${fmt(faster.sign / slower.sign, 1)}x, verify ${fmt(faster.verify / slower.verify, 1)}x, envelope ${fmt(faster.envelope / slower.envelope, 1)}x`,
  );

// A router -> node inference request, signed or MACed: made by the router, checked by the node
// (the whole verifyEnvelope path, replay store included), as each request does.
useCryptoBackend(backends[0]!);
const routerKey = generateSecretKey();
const routerPubkey = publicKeyOf(routerKey);
const nodePubkey = publicKeyOf(nodeKey);
const routerChannels = new ChannelKeys(routerKey);
const channel = { keys: new ChannelKeys(nodeKey), from: new Set([routerPubkey]) };
const job = (i: number) => ({
  request_id: `bench-${i}-0000`,
  model: 'fedai-demo-noise-v1',
  messages: [{ role: 'user' as const, content: 'Say hello to the bench, please.' }],
  max_tokens: 64,
  stream: true,
  price: payload.price,
});
const requestRows: { auth: string; make: number; check: number }[] = [];
for (const auth of ['signature', 'mac'] as const) {
  const made: string[] = [];
  const options = (i: number) => ({ audience: nodePubkey, refs: [`bench-${i}-0000`] });
  const make = summarize(
    opsPerSecond(
      (i) => {
        const e =
          auth === 'mac'
            ? createMacEnvelope(KIND.inferenceRequest, job(i), options(i), routerChannels)
            : createEnvelope(KIND.inferenceRequest, job(i), options(i), routerKey);
        if (made.length < COUNT) made.push(JSON.stringify(e));
      },
      COUNT,
      ROUNDS,
    ),
  );
  let replayStore = new MemoryReplayStore(COUNT * 2);
  const check = summarize(
    await opsPerSecondAsync(
      async (i) => {
        if (i === 0) replayStore = new MemoryReplayStore(COUNT * 2);
        const result = await verifyEnvelope(made[i]!, {
          me: nodePubkey,
          kinds: [KIND.inferenceRequest],
          replayStore,
          channel,
        });
        if (!result.ok) throw new Error(`bench request failed: ${result.code}`);
      },
      COUNT,
      ROUNDS,
    ),
  );
  requestRows.push({ auth, make: make.median, check: check.median });
}
console.log('\n| inference request | made/s (router) | checked/s (node) | µs made + checked |');
console.log('|---|---|---|---|');
for (const r of requestRows)
  console.log(`| ${r.auth} | ${fmt(r.make)} | ${fmt(r.check)} | ${fmt(1e6 / r.make + 1e6 / r.check, 1)} |`);
const [signed, maced] = requestRows;
if (signed && maced)
  console.log(
    `mac/signature: made ${fmt(maced.make / signed.make, 1)}x, checked ${fmt(maced.check / signed.check, 1)}x faster`,
  );
