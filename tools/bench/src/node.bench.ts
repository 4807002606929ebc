// pnpm bench:node — tokens/s and time to first token of the embedded runner on the demo model, at
// 1, 2 and 4 parallel requests, measured through the node's real HTTP path (signed requests, SSE).
// Ratios against the 1-request row in the same run are what to compare across machines.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeConfigSchema, startNode } from '@fed-ai/node';
import { createEnvelope, generateSecretKey, KIND, publicKeyOf } from '@fed-ai/protocol';
import { fmt, summarize } from './stats';

const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 8);
const MAX_TOKENS = Number(process.env.BENCH_MAX_TOKENS ?? 128);
const dir = mkdtempSync(join(tmpdir(), 'fedai-bench-node-'));
const routerKey = generateSecretKey();
const node = await startNode({
  ...nodeConfigSchema.parse({
    NODE_PORT: '0',
    DATA_DIR: dir,
    DEMO_MODEL: 'true',
    MAX_CONCURRENCY: '4',
    QUEUE_MAX: '16',
  }),
  ROUTER_URLS: ['http://127.0.0.1:9'],
  ROUTER_PUBKEYS: [publicKeyOf(routerKey)],
});

let counter = 0;
async function one(): Promise<{ ttftMs: number; tokens: number; ms: number }> {
  counter += 1;
  const payload = {
    request_id: `bench-${counter}-${Date.now()}`,
    model: 'fedai-demo-noise-v1',
    messages: [{ role: 'user' as const, content: 'Write a long story about a federated network.' }],
    max_tokens: MAX_TOKENS,
    temperature: 0,
    stream: true,
  };
  const envelope = createEnvelope(KIND.inferenceRequest, payload, { audience: node.pubkey }, routerKey);
  const started = performance.now();
  const response = await fetch(`${node.url}/v1/infer`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(envelope),
  });
  const reader = response.body!.getReader();
  let ttftMs = 0;
  let text = '';
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    if (!ttftMs) ttftMs = performance.now() - started;
    text += new TextDecoder().decode(value);
  }
  const doneEvent = text.split('\n\n').find((b) => b.includes('"type":"done"'));
  const tokens = doneEvent
    ? (JSON.parse(doneEvent.slice(6)) as { usage: { completion_tokens: number } }).usage.completion_tokens
    : 0;
  return { ttftMs, tokens, ms: performance.now() - started };
}

await one(); // warm-up
console.log(
  `node bench: demo model, ${MAX_TOKENS} tokens per request, ${ROUNDS} rounds per level (node ${process.version})`,
);
console.log(
  '| parallel | aggregate tokens/s (median) | per-request tokens/s | TTFT ms median | TTFT ms p99 |',
);
console.log('|---|---|---|---|---|');
let base = 0;
for (const parallel of [1, 2, 4]) {
  const aggregate: number[] = [];
  const perRequest: number[] = [];
  const ttft: number[] = [];
  for (let r = 0; r < ROUNDS; r++) {
    const started = performance.now();
    const results = await Promise.all(Array.from({ length: parallel }, () => one()));
    const seconds = (performance.now() - started) / 1000;
    aggregate.push(results.reduce((s, x) => s + x.tokens, 0) / seconds);
    for (const x of results) {
      perRequest.push((x.tokens * 1000) / x.ms);
      ttft.push(x.ttftMs);
    }
  }
  const a = summarize(aggregate);
  const t = summarize(ttft);
  if (parallel === 1) base = a.median;
  console.log(
    `| ${parallel} | ${fmt(a.median)} (${fmt(a.median / base, 2)}x of 1) | ${fmt(summarize(perRequest).median)} | ${fmt(t.median, 1)} | ${fmt(t.p99, 1)} |`,
  );
}
await node.close();
rmSync(dir, { recursive: true, force: true });
