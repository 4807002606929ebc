// writeSseData's batching: events written in one turn of the event loop (awaits and ticks between
// them included) reach the socket in one write, with the stream's end when it ends in that turn;
// an event written in a later turn is not held back for it (a streamed token leaves at once).
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { writeSseData } from '../src/sse';

/** A socket stand-in that records what each of its writes carried. */
function recordingStream(): { stream: Writable; writes: string[] } {
  const writes: string[] = [];
  const stream = new Writable({
    writev(chunks, done) {
      writes.push(chunks.map((c) => String(c.chunk)).join(''));
      done();
    },
    write(chunk, _encoding, done) {
      writes.push(String(chunk));
      done();
    },
  });
  return { stream, writes };
}

test('events written in one turn, across awaits and ticks, leave in one write', async () => {
  const { stream, writes } = recordingStream();
  await writeSseData(stream, 'a');
  await Promise.resolve();
  await new Promise<void>((resolve) => process.nextTick(resolve));
  await writeSseData(stream, 'b');
  await writeSseData(stream, 'c');
  assert.deepEqual(writes, [], 'nothing leaves before the turn ends');
  await nextTurn();
  assert.deepEqual(writes, ['data: a\n\ndata: b\n\ndata: c\n\n']);
});

test("the last events and the stream's end in one turn leave together, at the end", async () => {
  const { stream, writes } = recordingStream();
  await writeSseData(stream, 'delta');
  await writeSseData(stream, 'done');
  const finished = new Promise((resolve) => stream.end(resolve));
  await finished;
  assert.deepEqual(writes, ['data: delta\n\ndata: done\n\n']);
  // Writing after the end is ignored, not an error.
  await writeSseData(stream, 'late');
  assert.equal(writes.length, 1);
});

test('an event in a later turn is written in that turn, not held for more', async () => {
  const { stream, writes } = recordingStream();
  await writeSseData(stream, 'first');
  await nextTurn();
  await writeSseData(stream, 'second');
  await nextTurn();
  assert.deepEqual(writes, ['data: first\n\n', 'data: second\n\n']);
});
