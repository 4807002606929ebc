// Relay frames: random and mutated NIP-01 client frames sent over a real WebSocket to a relay on
// 127.0.0.1. After each frame a sentinel REQ is sent; its EOSE proves the frame was handled (one
// connection is handled in order). An "internal error" notice, a hang, silence (no reply to a frame
// other than a well-formed CLOSE, which NIP-01 answers with nothing) or a dropped connection counts
// as an uncaught exception — except the documented refusal of a frame over the relay's
// max_message_length (NIP-11): the connection is closed with 1009. Every subscription a frame opens
// is CLOSEd after it, so the relay's per-connection cap never refuses the next frame's REQ.
import { finalizeEvent, generateSecretKey, publicKeyOf } from '@fed-ai/protocol';
import { startRelay } from '@fed-ai/relay';
import fc from 'fast-check';
import WebSocket from 'ws';
import { mutate, type Target, type Verdict } from './targets';

const SENTINEL = 'zz-fuzz-sentinel-9f3';
// Generous: a verdict must never depend on how loaded the machine is.
const WAIT_MS = 30_000;

export async function relayTarget(): Promise<Target> {
  const relay = await startRelay({ port: 0 });
  const key = generateSecretKey();
  const testPubkey = publicKeyOf(key);
  const nowS = Math.floor(Date.now() / 1000);
  const event = finalizeEvent({ kind: 1, created_at: nowS, tags: [['t', 'fuzz']], content: 'héllo 👋' }, key);
  const valid = [
    JSON.stringify(['EVENT', event]),
    JSON.stringify(['REQ', 'sub1', { kinds: [1], authors: [testPubkey], limit: 5 }]),
    JSON.stringify(['REQ', 'sub2', { '#t': ['fuzz'], since: nowS - 10 }, { ids: [event.id] }]),
    JSON.stringify(['CLOSE', 'sub1']),
  ];
  const maxMessageBytes = relay.info.limitation.max_message_length;
  let ws: WebSocket;
  let lastCloseCode: number | null = null;
  let inbox: unknown[][] = [];
  let waiter: (() => void) | null = null;
  const connect = async () => {
    ws = new WebSocket(relay.url);
    inbox = [];
    lastCloseCode = null;
    ws.on('message', (data) => {
      try {
        inbox.push(JSON.parse(data.toString()) as unknown[]);
      } catch {
        inbox.push(['UNPARSEABLE']);
      }
      waiter?.();
    });
    ws.on('close', (code) => {
      lastCloseCode = code;
      waiter?.();
    });
    ws.on('error', () => {});
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
  };
  await connect();

  const nextBatch = async (): Promise<unknown[][] | 'timeout' | 'closed'> => {
    const deadline = Date.now() + WAIT_MS;
    for (;;) {
      const at = inbox.findIndex((m) => m[0] === 'EOSE' && m[1] === SENTINEL);
      if (at !== -1) return inbox.splice(0, at + 1).slice(0, -1);
      if (ws.readyState !== WebSocket.OPEN) return 'closed';
      if (Date.now() > deadline) return 'timeout';
      await new Promise<void>((resolve) => {
        waiter = resolve;
        setTimeout(resolve, 50).unref();
      });
      waiter = null;
    }
  };

  return {
    name: 'relay frames',
    async run(input): Promise<Verdict> {
      const frame = typeof input === 'string' ? input : (JSON.stringify(input) ?? 'null');
      if (ws.readyState !== WebSocket.OPEN) await connect();
      ws.send(frame);
      ws.send(JSON.stringify(['REQ', SENTINEL, { limit: 0 }]));
      const replies = await nextBatch();
      const parsedFrame = parseFrame(frame);
      const openedSubscription =
        Array.isArray(parsedFrame) && parsedFrame[0] === 'REQ' && typeof parsedFrame[1] === 'string'
          ? parsedFrame[1]
          : null;
      if (replies === 'closed' || replies === 'timeout') {
        const closeCode = lastCloseCode;
        await connect().catch(() => {});
        // The relay closes a connection only for a frame over its max_message_length (1009).
        return replies === 'closed' && closeCode === 1009 && Buffer.byteLength(frame) > maxMessageBytes
          ? { outcome: 'CLOSED_OVERSIZE' }
          : { outcome: 'UNCAUGHT' };
      }
      // An EOSE for it means the REQ opened a subscription (a refused one gets CLOSED instead).
      if (
        openedSubscription !== null &&
        openedSubscription !== SENTINEL &&
        replies.some((r) => r[0] === 'EOSE' && r[1] === openedSubscription)
      )
        ws.send(JSON.stringify(['CLOSE', openedSubscription]));
      for (const reply of replies) {
        if (reply[0] === 'NOTICE' && String(reply[1]).includes('internal error'))
          return { outcome: 'UNCAUGHT' };
        // NIP-01: an id the relay already holds is answered OK true "duplicate:" without storing anything.
        if (reply[0] === 'OK' && reply[2] === true && String(reply[3]).startsWith('duplicate:'))
          return { outcome: 'DUPLICATE' };
        if (reply[0] === 'OK' && reply[2] === true) {
          // Accepted events must carry our test key (only our signed event can verify).
          try {
            const parsed = JSON.parse(frame) as unknown[];
            const pubkey = (parsed[1] as { pubkey?: string }).pubkey;
            if (pubkey !== testPubkey)
              return { outcome: 'accepted', forgery: 'relay accepted an event not signed by the test key' };
          } catch {
            return { outcome: 'accepted', forgery: 'relay accepted an unparseable frame' };
          }
          return { outcome: 'accepted' };
        }
      }
      const first = replies[0];
      if (!first) {
        // NIP-01 answers a CLOSE with nothing; any other frame must get an answer.
        const isClose =
          Array.isArray(parsedFrame) && parsedFrame[0] === 'CLOSE' && typeof parsedFrame[1] === 'string';
        return isClose ? { outcome: 'CLOSE_NO_REPLY' } : { outcome: 'UNCAUGHT' };
      }
      if (first[0] === 'OK') return { outcome: `OK_FALSE:${String(first[3]).split(':')[0]}` };
      if (first[0] === 'NOTICE') return { outcome: `NOTICE:${String(first[1]).split(':')[0]}` };
      if (first[0] === 'CLOSED') return { outcome: `CLOSED:${String(first[2]).split(':')[0]}` };
      return { outcome: String(first[0]) };
    },
    *inputs(count, rng) {
      const arbitrary = fc.oneof(
        fc.json(),
        fc
          .tuple(fc.constantFrom('EVENT', 'REQ', 'CLOSE', 'AUTH', 'COUNT'), fc.jsonValue(), fc.jsonValue())
          .map((t) => JSON.stringify(t)),
      );
      const samples = fc.sample(arbitrary, {
        numRuns: Math.max(1, Math.ceil(count / 3)),
        seed: Math.floor(rng() * 2 ** 31),
      });
      for (let i = 0; i < count; i++) {
        const r = rng();
        yield r < 0.6
          ? mutate(valid[Math.floor(rng() * valid.length)]!, rng)
          : r < 0.65
            ? valid[0]
            : samples[i % samples.length];
      }
    },
    async close() {
      ws.terminate();
      await relay.close();
    },
  };
}

function parseFrame(frame: string): unknown {
  try {
    return JSON.parse(frame);
  } catch {
    return undefined;
  }
}
