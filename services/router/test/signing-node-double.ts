// Test double of a node: a real HTTP server on 127.0.0.1 with its own key that verifies the
// router's signed request and answers per docs/protocol.md with a real signed metering record.
// Each test scripts its behaviour. Lives only under test/.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import {
  ChannelKeys,
  costMsat,
  createEnvelope,
  generateSecretKey,
  isMacEnvelope,
  KIND,
  MemoryReplayStore,
  outputSha256,
  promptSha256,
  publicKeyOf,
  verifyEnvelope,
} from '@fed-ai/protocol';

export type NodeDoubleMode =
  | 'ok'
  | 'fail-before'
  | 'fail-after'
  | 'hang'
  | 'bad-signature'
  /** Its own key's record with a broken signature, and a right channel MAC of it (to a MAC router). */
  | 'garbled-signature'
  /** A right signature, and a channel MAC that does not verify (to a MAC router). */
  | 'bad-metering-mac'
  | 'bad-hash'
  | 'overloaded'
  /** Refuses as a real node does when the prompt does not fit its context (client-caused). */
  | 'context-refused'
  /** Same, but inside the stream (a real node starts the stream before the runner fails). */
  | 'context-refused-in-stream'
  /** Reports 1,000,000 prompt tokens (and prices them honestly): an inflating node. */
  | 'inflate-tokens-in'
  /** Sends each event's bytes in two writes split inside a multi-byte character. */
  | 'split-utf8'
  /** Ends SSE lines with CRLF and writes `data:` without the space. */
  | 'crlf';

/** How the double answers the router's endpoint challenge (POST /v1/challenge). */
export type ChallengeMode = 'ok' | 'silent' | 'wrong-key' | 'wrong-nonce' | 'http-500';

export class SigningNodeDouble {
  readonly secretKey = generateSecretKey();
  readonly pubkey = publicKeyOf(this.secretKey);
  mode: NodeDoubleMode = 'ok';
  challengeMode: ChallengeMode = 'ok';
  challenges = 0;
  tokens = ['Hello', ' from', ' the', ' double'];
  /** Delay between tokens (ms); a signed cancel (POST /v1/cancel) stops the stream early. */
  tokenDelayMs = 5;
  /** Prompt tokens the double reports (default 9). */
  tokensInFor: ((messages: { content: string }[]) => number) | undefined;
  cancels = 0;
  private readonly cancelled = new Set<string>();
  price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
  requests = 0;
  /** The x-request-id of the last request: the caller's id follows the request to the node. */
  lastRequestId: string | undefined;
  /** MACs it takes from routers (as a real node registers `auth: ['mac-v1']`); off: signatures only. */
  takesMacFrom = new Set<string>();
  /** Registers `auth: ['mac-v1']` as a real node does (and takes that router's MACs). */
  registersMac = false;
  /** How each accepted request was authenticated, in order. */
  readonly auths: ('mac' | 'signature')[] = [];
  private readonly channelKeys = new ChannelKeys(this.secretKey);
  url = '';
  private server: Server | undefined;
  private readonly replay = new MemoryReplayStore();
  private lastHeartbeatS = 0;

  async start(): Promise<void> {
    this.server = createServer(async (req, res) => {
      if (req.url === '/health') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
        return;
      }
      if (req.url === '/v1/challenge' && req.method === 'POST') {
        await this.answerChallenge(req, res);
        return;
      }
      if (req.url === '/v1/cancel' && req.method === 'POST') {
        let raw = '';
        for await (const chunk of req) raw += chunk;
        const verified = await verifyEnvelope(raw, { me: this.pubkey, kinds: [KIND.inferenceCancel] });
        if (verified.ok) {
          this.cancels += 1;
          this.cancelled.add(verified.payload.request_id);
        }
        res.writeHead(verified.ok ? 200 : 401, { 'content-type': 'application/json' }).end('{}');
        return;
      }
      if (req.url !== '/v1/infer' || req.method !== 'POST') {
        res.writeHead(404).end();
        return;
      }
      let raw = '';
      for await (const chunk of req) raw += chunk;
      const verified = await verifyEnvelope(raw, {
        me: this.pubkey,
        kinds: [KIND.inferenceRequest],
        replayStore: this.replay,
        channel: { keys: this.channelKeys, from: this.takesMacFrom },
      });
      if (verified.ok) this.auths.push(isMacEnvelope(verified.envelope) ? 'mac' : 'signature');
      if (!verified.ok) {
        res
          .writeHead(401, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: { code: verified.code } }));
        return;
      }
      this.requests += 1;
      this.lastRequestId = req.headers['x-request-id'] as string | undefined;
      const job = verified.payload;
      const router = verified.envelope.pubkey;
      if (this.mode === 'fail-before') {
        res
          .writeHead(500, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: { code: 'RUNNER_CRASHED', message: 'boom' } }));
        return;
      }
      if (this.mode === 'overloaded') {
        res
          .writeHead(429, { 'content-type': 'application/json', 'retry-after': '7' })
          .end(JSON.stringify({ error: { code: 'OVERLOADED' } }));
        return;
      }
      if (this.mode === 'hang') return;
      if (this.mode === 'context-refused') {
        res
          .writeHead(400, { 'content-type': 'application/json' })
          .end(JSON.stringify({ error: { code: 'CONTEXT_TOO_LONG', message: 'too long' } }));
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const send = (event: unknown) => this.writeEvent(res, event);
      if (this.mode === 'context-refused-in-stream') {
        res.end(`data: ${JSON.stringify({ type: 'error', error: { code: 'CONTEXT_TOO_LONG' } })}\n\n`);
        return;
      }
      const sent: string[] = [];
      let finish: 'stop' | 'cancelled' = 'stop';
      for (const [index, delta] of this.tokens.slice(0, job.max_tokens).entries()) {
        if (this.cancelled.has(job.request_id)) {
          finish = 'cancelled';
          break;
        }
        await send({ type: 'delta', index, delta });
        sent.push(delta);
        await new Promise((r) => setTimeout(r, this.tokenDelayMs));
        if (this.mode === 'fail-after' && index === 1) {
          res.end(
            `data: ${JSON.stringify({ type: 'error', error: { code: 'RUNNER_CRASHED', message: 'died mid-stream' } })}\n\n`,
          );
          return;
        }
      }
      const tokens = sent;
      const text = tokens.join('');
      const tokensIn =
        this.mode === 'inflate-tokens-in' ? 1_000_000 : (this.tokensInFor?.(job.messages) ?? 9);
      const record = {
        request_id: job.request_id,
        router,
        model: job.model,
        prompt_sha256: promptSha256(job.messages),
        output_sha256: this.mode === 'bad-hash' ? outputSha256(`${text}!`) : outputSha256(text),
        tokens_in: tokensIn,
        tokens_out: tokens.length,
        ttft_ms: 5,
        wall_ms: 25,
        price: this.price,
        cost_msat: costMsat(tokensIn, tokens.length, this.price),
        finish_reason: finish,
        count_source: 'tokenizer' as const,
      };
      const signer = this.mode === 'bad-signature' ? generateSecretKey() : this.secretKey;
      const signed = createEnvelope(
        KIND.meteringRecord,
        record,
        { audience: router, refs: [job.request_id], expiresInS: 0 },
        signer,
      );
      const metering =
        this.mode === 'garbled-signature' ? { ...signed, sig: flipLastHex(signed.sig) } : signed;
      // As a real node does: the record's MAC to a router that sent a MAC request.
      const mac = isMacEnvelope(verified.envelope) ? this.channelKeys.attest(signed.id, router) : undefined;
      const meteringMac = mac && this.mode === 'bad-metering-mac' ? flipLastHex(mac) : mac;
      await send({
        type: 'done',
        finish_reason: finish,
        usage: {},
        metering,
        ...(meteringMac ? { metering_mac: meteringMac } : {}),
      });
      res.end();
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  /** One SSE event, written as the mode says (split inside a UTF-8 character, or CRLF). */
  private async writeEvent(res: ServerResponse, event: unknown): Promise<void> {
    const json = JSON.stringify(event);
    if (this.mode === 'crlf') {
      res.write(`data:${json}\r\n\r\n`);
      return;
    }
    const bytes = Buffer.from(`data: ${json}\n\n`);
    if (this.mode !== 'split-utf8') {
      res.write(bytes);
      return;
    }
    // Cut after the first byte of the first multi-byte character (or in the middle).
    const lead = bytes.findIndex((b) => b >= 0xc0);
    const cut = lead >= 0 ? lead + 1 : Math.floor(bytes.length / 2);
    res.write(bytes.subarray(0, cut));
    await new Promise((r) => setTimeout(r, 2));
    res.write(bytes.subarray(cut));
  }

  /** Answers like the real node: a registration envelope signed by our key, for that router, with the nonce. */
  private async answerChallenge(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let raw = '';
    for await (const chunk of req) raw += chunk;
    this.challenges += 1;
    if (this.challengeMode === 'silent') return; // never answers; the router's timeout ends it
    if (this.challengeMode === 'http-500') {
      res.writeHead(500).end();
      return;
    }
    const { nonce, router, endpoint } = JSON.parse(raw) as {
      nonce: string;
      router: string;
      endpoint: string;
    };
    const answer = createEnvelope(
      KIND.nodeRegistration,
      {
        endpoint,
        models: [{ id: 'double-model', context_window: 4096, max_output_tokens: 512, price: this.price }],
        capacity: { max_concurrency: 4, queue_max: 4 },
      },
      {
        audience: router,
        tags: [
          [
            'challenge',
            this.challengeMode === 'wrong-nonce'
              ? nonce.replace(/^./, (c) => (c === '0' ? '1' : '0'))
              : nonce,
          ],
        ],
      },
      this.challengeMode === 'wrong-key' ? generateSecretKey() : this.secretKey,
    );
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answer));
  }

  async register(routerUrl: string, routerPubkey: string, model = 'double-model'): Promise<Response> {
    if (this.registersMac) this.takesMacFrom.add(routerPubkey);
    const registration = createEnvelope(
      KIND.nodeRegistration,
      {
        endpoint: this.url,
        models: [{ id: model, context_window: 4096, max_output_tokens: 512, price: this.price }],
        capacity: { max_concurrency: 4, queue_max: 4 },
        ...(this.registersMac ? { auth: ['mac-v1' as const] } : {}),
      },
      { audience: routerPubkey },
      this.secretKey,
    );
    const response = await fetch(`${routerUrl}/v1/nodes/register`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(registration),
    });
    if (response.ok) await this.heartbeat(routerUrl, routerPubkey, model);
    return response;
  }

  async heartbeat(routerUrl: string, routerPubkey: string, model = 'double-model'): Promise<Response> {
    // Each beat a second after the last: two alike in one second would be one event, a replay.
    this.lastHeartbeatS = Math.max(Math.floor(Date.now() / 1000), this.lastHeartbeatS + 1);
    const heartbeat = createEnvelope(
      KIND.nodeHeartbeat,
      { free_slots: 4, queue_depth: 0, models_loaded: [model], ready: true },
      { audience: routerPubkey, nowS: this.lastHeartbeatS },
      this.secretKey,
    );
    return fetch(`${routerUrl}/v1/nodes/heartbeat`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(heartbeat),
    });
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()));
  }
}

/** The same hex string with its last digit changed. */
function flipLastHex(hex: string): string {
  return hex.slice(0, -1) + (hex.endsWith('0') ? '1' : '0');
}
