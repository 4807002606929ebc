// pnpm bench:federation — three routers in this one process over a real relay (the harness of the
// federation e2e test: each router its own settlement on the devnet Lightning service, nodes on an
// instant upstream test double). In one run:
//   1. RFB -> bids closed: `runAuction` over the relay with r1's key for a model only r3 serves
//      (the auction closes when the one expected bidder answered).
//   2. The same chat request (same prompt, same upstream, same prices) to r1 for a model its own
//      node serves and for one only r3 serves (auction + encrypted paid offload), interleaved;
//      the offload's added time is the difference of the medians.
// `--rounds N` (default 100).
import { parseArgs } from 'node:util';
import { createLogger } from '@fed-ai/kit';
import { DEFAULT_PROMPT_OVERHEAD, KIND, MemoryReplayStore } from '@fed-ai/protocol';
import { BidInbox, FederationRelays, rfbFor, runAuction } from '@fed-ai/router';
import { startFederationNetwork } from '../../federation/test/network';
import { fmt, summarize } from './stats';

process.env.LOG_LEVEL ??= 'warn';
const { values } = parseArgs({ options: { rounds: { type: 'string', default: '100' } } });
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds must be a positive integer');
const WARMUP = 5;

const net = await startFederationNetwork(
  [
    [{ model: 'm-local', inputMsatPer1k: 1000, outputMsatPer1k: 2000 }],
    [],
    [{ model: 'm-remote', inputMsatPer1k: 1000, outputMsatPer1k: 2000 }],
  ],
  { routerEnv: { PEER_TOPUP_MSAT: '2000000', PEER_MAX_TAB_MSAT: '50000000' } },
);
try {
  const [r1, , r3] = net.members;
  await net.fundFloat(r1!, 20_000_000);
  const { key } = await r1!.router.createApiKey({ name: 'bench' });
  const call = async (path: string, body?: unknown) => {
    const response = await fetch(`${r1!.router.url}${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await response.json()) as Record<string, unknown>;
    if (!response.ok) throw new Error(`${path}: ${JSON.stringify(json)}`);
    return json;
  };
  const invoice = await call('/v1/tabs/topup', { amount_msat: 50_000_000 });
  await call('/v1/tabs/faucet', { bolt11: invoice.bolt11 });
  for (let i = 0; i < 400; i++) {
    const peers = (await call('/v1/federation/peers')).peers as {
      pubkey: string;
      prices: { model: string }[];
    }[];
    if (peers.some((p) => p.pubkey === r3!.pubkey && p.prices.some((s) => s.model === 'm-remote'))) break;
    await new Promise((r) => setTimeout(r, 50));
  }

  // 1. RFB -> bids closed, with r1's identity (r3 bids only for its allowed peers).
  const relays = new FederationRelays({ urls: [net.relay.url], logger: createLogger('bench') });
  const inbox = new BidInbox(relays, r1!.pubkey);
  await new Promise((r) => setTimeout(r, 500));
  const auctionMs: number[] = [];
  for (let i = 0; i < rounds + WARMUP; i++) {
    const rfb = rfbFor(
      `bench-${i}-${Date.now()}`,
      { model: 'm-remote', messages: [{ role: 'user', content: 'hi' }], max_tokens: 16 },
      undefined,
      5_000,
    );
    const outcome = await runAuction(
      {
        bus: relays,
        inbox,
        secretKey: r1!.secretKey,
        pubkey: r1!.pubkey,
        replayStore: new MemoryReplayStore(),
        mayPeer: (p) => p === r3!.pubkey,
        announcedEndpoint: (p) => (p === r3!.pubkey ? `${r3!.router.url}/v1/federation/offload` : undefined),
        maxOverheadTokens: DEFAULT_PROMPT_OVERHEAD.fixed_tokens + 65_536,
      },
      rfb,
      { expectedBidders: 1 },
    );
    if (outcome.bids.length !== 1) throw new Error(`auction ${i}: ${outcome.bids.length} bids`);
    if (i >= WARMUP) auctionMs.push(outcome.elapsedMs);
  }
  inbox.close();
  await relays.close();

  // 2. The same request served locally and offloaded, interleaved.
  const once = async (model: string) => {
    const t0 = performance.now();
    const body = await call('/v1/chat/completions', {
      model,
      messages: [{ role: 'user', content: 'Say hello' }],
      max_tokens: 16,
    });
    const ms = performance.now() - t0;
    const content = (body.choices as { message: { content: string } }[])[0]?.message.content;
    if (content !== 'Hi there!') throw new Error(`unexpected answer from ${model}`);
    return { ms, fedai: body.fedai as { peer?: string } };
  };
  const localMs: number[] = [];
  const offloadMs: number[] = [];
  for (let i = 0; i < rounds + WARMUP; i++) {
    const local = await once('m-local');
    const remote = await once('m-remote');
    if (local.fedai.peer !== undefined || remote.fedai.peer !== r3!.pubkey) throw new Error('wrong path');
    if (i >= WARMUP) {
      localMs.push(local.ms);
      offloadMs.push(remote.ms);
    }
  }
  const a = summarize(auctionMs);
  const l = summarize(localMs);
  const o = summarize(offloadMs);
  console.log(
    `federation bench: ${rounds} rounds after ${WARMUP} warm-up, one process, relay on 127.0.0.1 (kind ${KIND.rfb} -> ${KIND.bid})`,
  );
  console.log(
    `  RFB -> bids closed (1 expected bidder)   median ${fmt(a.median, 2)} ms  p99 ${fmt(a.p99, 2)} ms`,
  );
  console.log(
    `  chat served locally at r1                median ${fmt(l.median, 2)} ms  p99 ${fmt(l.p99, 2)} ms`,
  );
  console.log(
    `  chat offloaded r1 -> r3 (auction + paid) median ${fmt(o.median, 2)} ms  p99 ${fmt(o.p99, 2)} ms`,
  );
  console.log(
    `  offload added (median difference)        ${fmt(o.median - l.median, 2)} ms  (${fmt(o.median / l.median, 2)}x local)`,
  );
} finally {
  await net.close();
}
