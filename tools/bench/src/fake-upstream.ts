// A fake OpenAI-compatible model server for `pnpm bench:gateway`: answers every
// POST /v1/chat/completions at once with exactly 16 tokens (JSON, or SSE when `stream: true`, with
// the usage block when `stream_options.include_usage` is set), and GET /v1/models with one model.
// Nothing is generated, so what a benchmark measures is the gateway in front of it.
// Run as its own process: `node --import tsx tools/bench/src/fake-upstream.ts <port>`.
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

function sseBody(id: string, created: number, prompt: number, withUsage: boolean): string {
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model: FAKE_MODEL, choices, ...extra })}\n\n`;
  const parts = [chunk([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }])];
  for (const token of FAKE_TOKENS)
    parts.push(chunk([{ index: 0, delta: { content: token }, finish_reason: null }]));
  parts.push(chunk([{ index: 0, delta: {}, finish_reason: 'stop' }]));
  if (withUsage)
    parts.push(
      chunk([], {
        usage: { prompt_tokens: prompt, completion_tokens: 16, total_tokens: prompt + 16 },
      }),
    );
  parts.push('data: [DONE]\n\n');
  return parts.join('');
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
    res.end(sseBody(id, created, prompt, body.stream_options?.include_usage === true));
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
