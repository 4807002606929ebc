// pnpm bench:protocol — signing, signature verification and full envelope verification per
// second, on the nostr-wasm and pure-JS backends, in the same run (ratios are what compare).
import {
  createEnvelope,
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

const init = await initCrypto('wasm');
if (init.backend !== 'wasm') console.warn(`wasm backend did not load (${init.error}); wasm rows use pure JS`);

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
for (const backend of ['wasm', 'pure'] as const) {
  useCryptoBackend(backend === 'wasm' && init.backend === 'wasm' ? 'wasm' : 'pure');
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
const [wasm, pure] = rows;
if (wasm && pure) {
  console.log(
    `wasm/pure ratio: sign ${fmt(wasm.sign / pure.sign, 1)}x, verify ${fmt(wasm.verify / pure.verify, 1)}x, envelope ${fmt(wasm.envelope / pure.envelope, 1)}x`,
  );
}
