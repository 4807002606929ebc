// A scripted LNbits double for the adapter's defences: every request is answered by `answer`
// (status and raw body text), so a test can send lies, wrong types and oversized bodies.
import { createServer, type IncomingMessage } from 'node:http';

export interface HostileLnbits {
  url: string;
  close(): Promise<void>;
}

export async function startHostileLnbits(
  answer: (request: IncomingMessage) => { status: number; body: string },
): Promise<HostileLnbits> {
  const server = createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      const { status, body } = answer(request);
      response.writeHead(status, { 'content-type': 'application/json' });
      response.end(body);
    });
  });
  await new Promise<void>((done) => server.listen(0, '127.0.0.1', done));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    close: () =>
      new Promise<void>((done) => {
        server.closeAllConnections();
        server.close(() => done());
      }),
  };
}
