// The one SSE reader (used by services through @fed-ai/kit and by the SDK in browsers).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { readSseBatches, readSseData, SseError } from '../src/index';

const encoder = new TextEncoder();

async function* iterate(chunks: (Uint8Array | string)[]) {
  for (const chunk of chunks) yield chunk;
}

async function read(chunks: (Uint8Array | string)[], maxEventBytes?: number): Promise<string[]> {
  const out: string[] = [];
  const options = maxEventBytes === undefined ? {} : { maxEventBytes };
  for await (const data of readSseData(iterate(chunks), options)) out.push(data);
  return out;
}

test('events parse however the bytes are cut, with LF, CRLF or CR line ends', async () => {
  const events = ['{"delta":"é⚡😀"}', 'two\nlines', '', '[DONE]'];
  const write = (eol: string, space: boolean) =>
    events
      .map(
        (e) =>
          `${e
            .split('\n')
            .map((line) => `data:${space ? ' ' : ''}${line}`)
            .join(eol)}${eol}${eol}`,
      )
      .join(`: comment${eol}`);
  for (const eol of ['\n', '\r\n', '\r']) {
    for (const space of [true, false]) {
      const bytes = encoder.encode(write(eol, space));
      await fc.assert(
        fc.asyncProperty(
          fc.uniqueArray(fc.integer({ min: 1, max: bytes.length - 1 }), { maxLength: 8 }),
          async (cuts) => {
            const points = [0, ...cuts.sort((a, b) => a - b), bytes.length];
            const chunks = points.slice(1).map((end, i) => bytes.slice(points[i], end));
            assert.deepEqual(await read(chunks), events);
          },
        ),
        { numRuns: 150 },
      );
    }
  }
});

test('text chunks are read as they are; an unfinished event at the end is dropped', async () => {
  assert.deepEqual(await read(['data: a\n', '\ndata: b\n']), ['a']);
  assert.deepEqual(await read(['event: x\nid: 1\nretry: 5\nunknown: y\ndata: z\n\n']), ['z']);
  assert.deepEqual(await read([]), []);
});

test('an event over the bound ends the read with SseError', async () => {
  await assert.rejects(read([`data: ${'x'.repeat(200)}`], 100), (error: unknown) => {
    assert.ok(error instanceof SseError);
    assert.match(error.message, /too large/);
    return true;
  });
  // Many small events are fine under the same bound.
  const many = Array.from({ length: 50 }, (_, i) => `data: ${i}\n\n`);
  assert.equal((await read(many, 100)).length, 50);
});

test('batches: the events each chunk completed come together, an event split over chunks with the chunk that ends it', async () => {
  const batches: string[][] = [];
  const chunks = [
    'data: a\n\ndata: b\n\ndata: c',
    '1\n',
    '\n',
    ': only a comment\n',
    'data: d\n\ndata: e\n\n',
  ];
  for await (const batch of readSseBatches(iterate(chunks))) batches.push(batch);
  // The comment-only chunk completes no event: no empty batch for it.
  assert.deepEqual(batches, [['a', 'b'], ['c1'], ['d', 'e']]);
  // The one-by-one reader sees the same events in the same order.
  assert.deepEqual(await read(chunks), ['a', 'b', 'c1', 'd', 'e']);
});
