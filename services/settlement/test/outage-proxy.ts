// A forwarding HTTP proxy on 127.0.0.1 in front of a real service, for outage tests: it can drop
// requests whose body matches (the service looks unreachable) or delay answers after forwarding
// (the request commits, the caller times out). Lives only under test/.
import { createServer, type Server } from 'node:http';

export class OutageProxy {
  url = '';
  /** Requests whose body matches are cut off without an answer (connection destroyed). */
  drop: RegExp | null = null;
  /** Requests whose body matches are forwarded, but the answer is held back this long. */
  delay: { match: RegExp; ms: number } | null = null;
  /** The first request whose body matches is cut off, then this is cleared. */
  dropOnce: RegExp | null = null;
  dropped = 0;
  private server: Server | undefined;

  /** Where requests go; may be set after start (the service may need the proxy's URL first). */
  constructor(public target = '') {}

  async start(): Promise<void> {
    this.server = createServer(async (req, res) => {
      const chunks: Buffer[] = [];
      for await (const chunk of req) chunks.push(chunk as Buffer);
      const body = Buffer.concat(chunks);
      const text = body.toString('utf8');
      const once = this.dropOnce?.test(text) ?? false;
      if (once) this.dropOnce = null;
      if (once || this.drop?.test(text)) {
        this.dropped += 1;
        req.socket.destroy();
        return;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (typeof v === 'string' && k !== 'host' && k !== 'content-length') headers[k] = v;
      const answer = await fetch(`${this.target}${req.url}`, {
        method: req.method ?? 'GET',
        headers,
        ...(body.length > 0 ? { body } : {}),
      }).catch(() => null);
      if (this.delay?.match.test(text)) await new Promise((r) => setTimeout(r, this.delay!.ms));
      if (!answer) {
        res.writeHead(502).end();
        return;
      }
      res.writeHead(answer.status, {
        'content-type': answer.headers.get('content-type') ?? 'application/json',
      });
      res.end(Buffer.from(await answer.arrayBuffer()));
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server!.address() as { port: number }).port}`;
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => this.server?.close(() => r()));
  }
}
