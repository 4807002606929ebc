// Test double of an OpenAI-compatible upstream (llama.cpp server / vLLM / Ollama /v1): a real HTTP
// server on 127.0.0.1 whose behaviour each test scripts. Lives only under test/.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';

/**
 * `split-utf8`: each event's bytes go out in two writes cut inside a multi-byte character.
 * `one-write`: every event, the usage and `[DONE]` go out in one write (a fast server's burst).
 * `not-an-object`: a first token, then an event whose data is JSON but not an object (`null`).
 */
export type UpstreamMode =
  | 'stream'
  | 'error500'
  | 'hang'
  | 'no-usage'
  | 'split-utf8'
  | 'one-write'
  | 'not-an-object';

export class OpenAiUpstreamDouble {
  mode: UpstreamMode = 'stream';
  tokens = ['Hi', ' there', '!'];
  delayMs = 5;
  closedConnections = 0;
  lastBody: Record<string, unknown> | undefined;
  private server: Server | undefined;
  url = '';

  async start(): Promise<void> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    const address = this.server.address() as { port: number };
    this.url = `http://127.0.0.1:${address.port}/v1`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()));
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    req.on('close', () => {
      if (!res.writableFinished) this.closedConnections += 1;
    });
    if (req.method === 'GET' && req.url === '/v1/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ object: 'list', data: [{ id: 'upstream-model', object: 'model' }] }));
      return;
    }
    if (req.method === 'POST' && req.url === '/tokenize') {
      res.writeHead(404).end();
      return;
    }
    let raw = '';
    for await (const chunk of req) raw += chunk;
    this.lastBody = JSON.parse(raw);
    if (this.mode === 'error500') {
      res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'model crashed' } }));
      return;
    }
    if (this.mode === 'hang') return; // never answers
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    if (this.mode === 'one-write') {
      res.end(this.events().join(''));
      return;
    }
    if (this.mode === 'not-an-object') {
      res.end(`${this.deltaEvent(this.tokens[0]!, 0)}data: null\n\n`);
      return;
    }
    for (const [i, token] of this.tokens.entries()) {
      await new Promise((r) => setTimeout(r, this.delayMs));
      if (res.destroyed) return;
      const event = Buffer.from(this.deltaEvent(token, i));
      const lead = this.mode === 'split-utf8' ? event.findIndex((b) => b >= 0xc0) : -1;
      if (lead < 0) res.write(event);
      else {
        res.write(event.subarray(0, lead + 1));
        await new Promise((r) => setTimeout(r, 2));
        res.write(event.subarray(lead + 1));
      }
    }
    if (this.mode !== 'no-usage') {
      res.write(this.usageEvent());
    }
    res.end('data: [DONE]\n\n');
  }

  private deltaEvent(token: string, i: number): string {
    const finish = i === this.tokens.length - 1 ? 'stop' : null;
    const chunk = { id: 'x', choices: [{ index: 0, delta: { content: token }, finish_reason: finish }] };
    return `data: ${JSON.stringify(chunk)}\n\n`;
  }

  private usageEvent(): string {
    const usage = { prompt_tokens: 11, completion_tokens: this.tokens.length };
    return `data: ${JSON.stringify({ id: 'x', choices: [], usage })}\n\n`;
  }

  /** The whole stream's events, as `stream` mode writes them one by one. */
  private events(): string[] {
    return [
      ...this.tokens.map((token, i) => this.deltaEvent(token, i)),
      this.usageEvent(),
      'data: [DONE]\n\n',
    ];
  }
}
