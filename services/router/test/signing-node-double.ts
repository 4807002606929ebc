// Test double of a node: a real HTTP server on 127.0.0.1 with its own key that verifies the
// router's signed request and answers per docs/protocol.md with a real signed metering record.
// Each test scripts its behaviour. Lives only under test/.
import { createServer, type Server } from 'node:http';
import {
  costMsat,
  createEnvelope,
  generateSecretKey,
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
  | 'bad-hash'
  | 'overloaded';

export class SigningNodeDouble {
  readonly secretKey = generateSecretKey();
  readonly pubkey = publicKeyOf(this.secretKey);
  mode: NodeDoubleMode = 'ok';
  tokens = ['Hello', ' from', ' the', ' double'];
  price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
  requests = 0;
  /** The x-request-id of the last request: the caller's id follows the request to the node. */
  lastRequestId: string | undefined;
  url = '';
  private server: Server | undefined;
  private readonly replay = new MemoryReplayStore();

  async start(): Promise<void> {
    this.server = createServer(async (req, res) => {
      if (req.url === '/health') {
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"ok":true}');
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
      });
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
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const tokens = this.tokens.slice(0, job.max_tokens);
      for (const [index, delta] of tokens.entries()) {
        res.write(`data: ${JSON.stringify({ type: 'delta', index, delta })}\n\n`);
        await new Promise((r) => setTimeout(r, 5));
        if (this.mode === 'fail-after' && index === 1) {
          res.end(
            `data: ${JSON.stringify({ type: 'error', error: { code: 'RUNNER_CRASHED', message: 'died mid-stream' } })}\n\n`,
          );
          return;
        }
      }
      const text = tokens.join('');
      const record = {
        request_id: job.request_id,
        router,
        model: job.model,
        prompt_sha256: promptSha256(job.messages),
        output_sha256: this.mode === 'bad-hash' ? outputSha256(`${text}!`) : outputSha256(text),
        tokens_in: 9,
        tokens_out: tokens.length,
        ttft_ms: 5,
        wall_ms: 25,
        price: this.price,
        cost_msat: costMsat(9, tokens.length, this.price),
        finish_reason: 'stop' as const,
        count_source: 'tokenizer' as const,
      };
      const signer = this.mode === 'bad-signature' ? generateSecretKey() : this.secretKey;
      const metering = createEnvelope(
        KIND.meteringRecord,
        record,
        { audience: router, refs: [job.request_id], expiresInS: 0 },
        signer,
      );
      res.end(`data: ${JSON.stringify({ type: 'done', finish_reason: 'stop', usage: {}, metering })}\n\n`);
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }

  async register(routerUrl: string, routerPubkey: string, model = 'double-model'): Promise<Response> {
    const registration = createEnvelope(
      KIND.nodeRegistration,
      {
        endpoint: this.url,
        models: [{ id: model, context_window: 4096, max_output_tokens: 512, price: this.price }],
        capacity: { max_concurrency: 4, queue_max: 4 },
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
    const heartbeat = createEnvelope(
      KIND.nodeHeartbeat,
      { free_slots: 4, queue_depth: 0, models_loaded: [model], ready: true },
      { audience: routerPubkey },
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
