// Starts Portkey's open-source AI gateway (`@portkey-ai/gateway`, its own build/start-server.js)
// for `pnpm bench:gateway`, with one shim: on Node 20 the gateway's streaming path appends headers to
// the Response that fetch returned, whose headers are immutable there, and fails with
// "TypeError: immutable" (Portkey-AI/gateway issues #1389 and #1550). The shim hands the gateway a
// copy of each upstream Response with mutable headers and the same body stream (nothing buffered).
// Run as its own process: `node --import tsx tools/bench/src/gateway-portkey.ts --port=<port> --headless`.
const upstreamFetch = globalThis.fetch;
globalThis.fetch = async (input, init) => {
  const response = await upstreamFetch(input, init);
  return new Response(response.body, {
    status: response.status,
    statusText: response.statusText,
    headers: new Headers(response.headers),
  });
};

// The package ships no types: this is its CLI entry (`npx @portkey-ai/gateway`), run for its effect.
// @ts-expect-error TS7016, no declaration file
await import('@portkey-ai/gateway/build/start-server.js');

export {};
