// The client side of `pnpm bench:gateway`: one chat request over a keep-alive node:http agent,
// timed from the request's start to the last byte of the answer, then checked (after the clock
// stops): status 200, exactly the fake upstream's 16 tokens, the usage block, and for fed-ai the
// signed receipt (header for JSON; the `fedai` chunk and the `: x-fedai-receipt` trailer for SSE).
import { type Agent, request } from 'node:http';
import { readSseData } from '@fed-ai/protocol';
import { FAKE_TEXT } from './fake-upstream';

export interface Target {
  url: URL;
  headers: Record<string, string>;
  model: string;
  agent: Agent;
  /** A fed-ai router: the answer must carry a receipt and a cost. */
  fedai: boolean;
}

export interface Answer {
  ms: number;
  /** Streams: request start to the first chunk that carries generated text. */
  firstTokenMs?: number;
  /** Why the answer failed its check; undefined when it passed. */
  error?: string;
  costMsat: number;
}

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  ms: number;
  firstTokenMs?: number;
}

/** A chunk holding a delta with text (`"content":"x`); a token split across chunks counts late. */
const TEXT_DELTA = /"content":"[^"]/;

function send(target: Target, payload: string): Promise<Raw> {
  return new Promise((done, fail) => {
    const started = performance.now();
    const req = request(
      target.url,
      {
        method: 'POST',
        agent: target.agent,
        headers: {
          ...target.headers,
          'content-type': 'application/json',
          'content-length': Buffer.byteLength(payload),
        },
      },
      (res) => {
        const chunks: Buffer[] = [];
        let firstTokenMs: number | undefined;
        res.on('data', (chunk: Buffer) => {
          chunks.push(chunk);
          if (firstTokenMs === undefined && TEXT_DELTA.test(chunk.toString('latin1')))
            firstTokenMs = performance.now() - started;
        });
        res.on('end', () =>
          done({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).toString('utf8'),
            ms: performance.now() - started,
            ...(firstTokenMs === undefined ? {} : { firstTokenMs }),
          }),
        );
        res.on('error', fail);
      },
    );
    req.on('error', fail);
    req.end(payload);
  });
}

type Checked = { error?: string; costMsat: number };

interface ChatJson {
  choices?: { message?: { content?: string } }[];
  usage?: { completion_tokens?: number };
  fedai?: { receipt?: { sig?: unknown }; cost_msat?: number };
}

function checkJson(raw: Raw, fedai: boolean): Checked {
  const body = JSON.parse(raw.body) as ChatJson;
  if (body.choices?.[0]?.message?.content !== FAKE_TEXT) return { error: 'wrong text', costMsat: 0 };
  if (body.usage?.completion_tokens !== 16) return { error: 'usage is not 16 tokens', costMsat: 0 };
  if (!fedai) return { costMsat: 0 };
  if (!raw.headers['x-fedai-receipt']) return { error: 'no x-fedai-receipt header', costMsat: 0 };
  if (typeof body.fedai?.receipt?.sig !== 'string')
    return { error: 'no signed receipt in body', costMsat: 0 };
  return { costMsat: body.fedai.cost_msat ?? 0 };
}

interface Chunk {
  choices?: { delta?: { content?: string | null } }[];
  usage?: { completion_tokens?: number } | null;
  fedai?: { receipt?: { sig?: unknown }; cost_msat?: number };
}

async function* once(text: string): AsyncGenerator<string> {
  yield text;
}

async function checkStream(raw: Raw, fedai: boolean): Promise<Checked> {
  const events: string[] = [];
  for await (const data of readSseData(once(raw.body))) events.push(data);
  if (events.at(-1)?.trim() !== '[DONE]') return { error: 'stream does not end with [DONE]', costMsat: 0 };
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e) as Chunk);
  const text = chunks.map((c) => c.choices?.[0]?.delta?.content ?? '').join('');
  if (text !== FAKE_TEXT) return { error: 'wrong streamed text', costMsat: 0 };
  if (!chunks.some((c) => c.usage?.completion_tokens === 16))
    return { error: 'no usage of 16 tokens in stream', costMsat: 0 };
  if (!fedai) return { costMsat: 0 };
  const last = chunks.find((c) => c.fedai);
  if (typeof last?.fedai?.receipt?.sig !== 'string')
    return { error: 'no signed receipt in stream', costMsat: 0 };
  if (!raw.body.includes('\n: x-fedai-receipt ')) return { error: 'no x-fedai-receipt trailer', costMsat: 0 };
  return { costMsat: last.fedai.cost_msat ?? 0 };
}

/** "status 503 SETTLEMENT_UNAVAILABLE": the status and the reason code of an OpenAI-shaped error. */
function refusal(raw: Raw): string {
  let code: unknown;
  try {
    code = (JSON.parse(raw.body) as { error?: { code?: unknown } }).error?.code;
  } catch {
    code = undefined;
  }
  return `status ${raw.status}${typeof code === 'string' ? ` ${code}` : ''}`;
}

export function chatBody(model: string, stream: boolean): string {
  return JSON.stringify({
    model,
    messages: [{ role: 'user', content: 'Say sixteen tokens.' }],
    max_tokens: 16,
    temperature: 0,
    ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}),
  });
}

/** One request; never throws (a transport error or a failed check is the answer's `error`). */
export async function ask(target: Target, payload: string, stream: boolean): Promise<Answer> {
  const started = performance.now();
  try {
    const raw = await send(target, payload);
    if (raw.status !== 200) return { ms: raw.ms, error: refusal(raw), costMsat: 0 };
    const checked = stream ? await checkStream(raw, target.fedai) : checkJson(raw, target.fedai);
    return {
      ms: raw.ms,
      costMsat: checked.costMsat,
      ...(stream && raw.firstTokenMs !== undefined ? { firstTokenMs: raw.firstTokenMs } : {}),
      ...(checked.error ? { error: checked.error } : {}),
    };
  } catch (error) {
    return { ms: performance.now() - started, error: (error as Error).message, costMsat: 0 };
  }
}

/** `count` requests with `concurrency` in flight; the batch's wall time from first start to last end. */
export async function batch(
  count: number,
  concurrency: number,
  one: () => Promise<Answer>,
): Promise<{ answers: Answer[]; wallMs: number }> {
  const answers: Answer[] = [];
  let next = 0;
  const started = performance.now();
  const worker = async () => {
    while (next < count) {
      next += 1;
      answers.push(await one());
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, worker));
  return { answers, wallMs: performance.now() - started };
}
