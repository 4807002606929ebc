// Test support for attack runs: HTTP requests whose path is sent exactly as written (fetch would
// normalize it), and the spellings of a path that a careless auth check might treat differently
// from the router that matches routes. Used by the router, settlement and wallet-fleet attack tests.
import { request as httpRequest } from 'node:http';

export function rawRequest(
  baseUrl: string,
  method: string,
  path: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; text: string }> {
  const url = new URL(baseUrl);
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: url.hostname,
        port: url.port,
        method,
        path,
        headers: { ...(body === undefined ? {} : { 'content-type': 'application/json' }), ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

export function pathVariants(path: string): string[] {
  const segments = path.split('/').filter(Boolean);
  const encodeFirst = (s: string) => `%${s.charCodeAt(0).toString(16)}${s.slice(1)}`;
  return [
    path,
    `/${segments.map(encodeFirst).join('/')}`,
    `/${encodeFirst(segments[0]!)}/${segments.slice(1).join('/')}`,
    `/${segments.join('%2F')}`,
    `/${path}`,
    `/${segments.join('//')}`,
    `/x/..${path}`,
    `/.${path}`,
    path.toUpperCase(),
    `${path}/`,
    `${path}?`,
    `${path}%20`,
  ];
}
