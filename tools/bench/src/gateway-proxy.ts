// A bare reverse proxy (node:http, keep-alive both ways, bodies piped, nothing parsed) for
// `pnpm bench:gateway`: the least a gateway process in Node can add to a request. Several upstreams
// (comma separated) are taken round-robin: the load balancer in front of router replicas.
// Run as its own process: `node --import tsx tools/bench/src/gateway-proxy.ts <port> <url>[,<url>...]`.
import { Agent, createServer, request } from 'node:http';

const port = Number(process.argv[2] ?? 0);
const upstreams = (process.argv[3] ?? 'http://127.0.0.1:1').split(',').map((u) => new URL(u));
let next = 0;
const agent = new Agent({ keepAlive: true, maxSockets: 256 });

const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
  const upstream = upstreams[next++ % upstreams.length]!;
  const forward = request(
    {
      host: upstream.hostname,
      port: upstream.port,
      method: req.method,
      path: req.url,
      headers: { ...req.headers, host: upstream.host },
      agent,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  forward.on('error', () => {
    if (!res.headersSent) res.writeHead(502);
    res.end();
  });
  req.pipe(forward);
});
server.listen(port, '127.0.0.1');
process.on('SIGTERM', () => server.close(() => process.exit(0)));
