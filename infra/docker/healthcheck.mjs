// The image's HEALTHCHECK: GET /health (node: /ready) on the port the service listens on. Exit 0
// when it answers 2xx within 3 s, else 1. FEDAI_SERVICE names the service (set in infra/Dockerfile).
const ports = {
  router: ['ROUTER_HOST', 'ROUTER_PORT', 7000, '/health'],
  node: ['NODE_HOST', 'NODE_PORT', 7100, '/ready'],
  settlement: ['SETTLEMENT_HOST', 'SETTLEMENT_PORT', 7200, '/health'],
  relay: ['RELAY_HOST', 'RELAY_PORT', 7447, '/health'],
  'wallet-fleet': ['WALLET_FLEET_HOST', 'WALLET_FLEET_PORT', 7300, '/health'],
  'lightning-devnet': ['LIGHTNING_DEVNET_HOST', 'LIGHTNING_DEVNET_PORT', 7400, '/health'],
};
const spec = ports[process.env.FEDAI_SERVICE ?? ''];
if (!spec) {
  console.error(`healthcheck: unknown FEDAI_SERVICE ${process.env.FEDAI_SERVICE}`);
  process.exit(1);
}
const [hostVar, portVar, defaultPort, path] = spec;
const bound = process.env[hostVar] ?? '127.0.0.1';
const host = bound === '0.0.0.0' || bound === '::' ? '127.0.0.1' : bound;
const port = process.env[portVar] ?? defaultPort;
try {
  const response = await fetch(`http://${host.includes(':') ? `[${host}]` : host}:${port}${path}`, {
    signal: AbortSignal.timeout(3000),
  });
  process.exit(response.ok ? 0 : 1);
} catch {
  process.exit(1);
}
