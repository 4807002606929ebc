// A small round-robin HTTP load balancer on 127.0.0.1 for replica tests: each request goes to the
// next upstream; an upstream that refuses the connection (nothing was sent) is skipped, as a load
// balancer's health check would. Bodies are buffered (bounded); responses are streamed through.
import { createServer, request as httpRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';

const MAX_BODY_BYTES = 4 * 1024 * 1024;

export class RoundRobinProxy {
  url = '';
  /** Requests answered by each upstream (by index), for tests that check both replicas served. */
  readonly served: number[];
  private next = 0;
  private server: Server | undefined;

  constructor(private readonly upstreams: string[]) {
    this.served = upstreams.map(() => 0);
  }

  async start(): Promise<void> {
    this.server = createServer((req, res) => {
      void readBody(req).then(
        (body) => this.forward(req, body, res, this.next++ % this.upstreams.length, 0),
        () => res.writeHead(413).end(),
      );
    });
    await new Promise<void>((r) => this.server!.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  private forward(
    req: IncomingMessage,
    body: Buffer,
    res: import('node:http').ServerResponse,
    index: number,
    tried: number,
  ): void {
    const target = new URL(req.url ?? '/', this.upstreams[index]);
    const upstream = httpRequest(
      target,
      // No pooled connections: a dead upstream then refuses the connection (safe to skip) instead
      // of resetting a reused socket that may have carried the request.
      {
        method: req.method,
        headers: { ...req.headers, 'content-length': String(body.length) },
        agent: false,
      },
      (answer) => {
        this.served[index]! += 1;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        res.on('close', () => answer.destroy());
      },
    );
    upstream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'ECONNREFUSED' && tried + 1 < this.upstreams.length && !res.headersSent)
        return this.forward(req, body, res, (index + 1) % this.upstreams.length, tried + 1);
      if (!res.headersSent) res.writeHead(502).end();
      else res.destroy();
    });
    // A client that leaves aborts the upstream request too (the router sees the disconnect).
    res.on('close', () => {
      if (!res.writableFinished) upstream.destroy();
    });
    upstream.end(body);
  }

  async stop(): Promise<void> {
    this.server?.closeAllConnections();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
  }
}

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'));
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
