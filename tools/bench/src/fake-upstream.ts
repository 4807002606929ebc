// A fake OpenAI-compatible model server for `pnpm bench:gateway`: answers every
// POST /v1/chat/completions with exactly 16 tokens (JSON, or SSE when `stream: true`, with the
// usage block when `stream_options.include_usage` is set), and GET /v1/models with one model.
// Nothing is generated, so what a benchmark measures is the gateway in front of it. A stream is
// one write, or with a token interval (`--token-interval-ms`) the first token at once and one
// token per interval after it, as a model decodes (time to first token is then measurable).
// Run as its own process: `node --import tsx tools/bench/src/fake-upstream.ts <port> [intervalMs]`.
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { fileURLToPath } from 'node:url';

export const FAKE_MODEL = 'fake-16';
const FAKE_TOKENS = Array.from({ length: 16 }, (_, i) => `t${String(i).padStart(2, '0')} `);
export const FAKE_TEXT = FAKE_TOKENS.join('');
const MAX_BODY_BYTES = 1_000_000;

function readBody(req: IncomingMessage): Promise<string> {
  return new Promise((resolveBody, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('body too large'));
        req.destroy();
        return;
      }
      chunks.push(chunk);
    });
    req.on('end', () => resolveBody(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function promptTokens(body: { messages?: { content?: unknown }[] }): number {
  return (body.messages ?? []).reduce((sum, m) => sum + String(m.content ?? '').split(/\s+/).length + 4, 0);
}

/** The SSE events of one answer: [head + first token, ...one per later token, tail]. */
function sseParts(id: string, created: number, prompt: number, withUsage: boolean): string[] {
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: FAKE_MODEL, choices, ...extra })}\n\n`;
  const tokens = FAKE_TOKENS.map((token) =>
    chunk([{ index: 0, delta: { content: token }, finish_reason: null }]),
  );
  const head = chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]);
  const tail = [chunk([{ index: 0, delta: {}, finish_reason: 'stop' }])];
  if (withUsage)
    tail.push(
      chunk([], {
        usage: { prompt_tokens: prompt, completion_tokens: 16, total_tokens: prompt + 16 },
      }),
    );
  tail.push('data: [DONE]\n\n');
  return [head + tokens[0], ...tokens.slice(1), tail.join('')];
}

/** Milliseconds between streamed tokens (0: the whole stream in one write). */
const TOKEN_INTERVAL_MS = Math.max(0, Number(process.argv[3] ?? 0) || 0);

function writeStream(res: ServerResponse, parts: string[]): void {
  if (TOKEN_INTERVAL_MS === 0) {
    res.end(parts.join(''));
    return;
  }
  res.write(parts[0]);
  let next = 1;
  const timer = setInterval(() => {
    if (res.destroyed) return clearInterval(timer);
    if (next === parts.length - 1) {
      clearInterval(timer);
      res.end(parts[next]);
      return;
    }
    res.write(parts[next++]);
  }, TOKEN_INTERVAL_MS);
}

async function chat(req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = JSON.parse(await readBody(req)) as {
    stream?: boolean;
    stream_options?: { include_usage?: boolean };
    messages?: { content?: unknown }[];
  };
  const id = `chatcmpl-fake-${Date.now().toString(36)}`;
  const created = Math.floor(Date.now() / 1000);
  const prompt = promptTokens(body);
  if (body.stream) {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    writeStream(res, sseParts(id, created, prompt, body.stream_options?.include_usage === true));
    return;
  }
  const answer = JSON.stringify({
    id,
    object: 'chat.completion',
    created,
    model: FAKE_MODEL,
    choices: [{ index: 0, message: { role: 'assistant', content: FAKE_TEXT }, finish_reason: 'stop' }],
    usage: { prompt_tokens: prompt, completion_tokens: 16, total_tokens: prompt + 16 },
  });
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(answer);
}

function handle(req: IncomingMessage, res: ServerResponse): void {
  if (req.method === 'GET' && req.url === '/v1/models') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(
      JSON.stringify({ object: 'list', data: [{ id: FAKE_MODEL, object: 'model', context_length: 4096 }] }),
    );
    return;
  }
  if (req.method === 'POST' && req.url === '/v1/chat/completions') {
    chat(req, res).catch(() => {
      if (!res.headersSent) res.writeHead(400, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'bad request' } }));
    });
    return;
  }
  req.resume();
  res.writeHead(404, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message: 'not found' } }));
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const port = Number(process.argv[2] ?? 0);
  const server = createServer({ keepAliveTimeout: 60_000 }, handle);
  server.listen(port, '127.0.0.1', () => {
    process.stdout.write(`fake upstream on ${JSON.stringify(server.address())}\n`);
  });
  process.on('SIGTERM', () => server.close(() => process.exit(0)));
}
