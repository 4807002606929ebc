// The node's metering log: each line is in its file when append() returns (no buffer a killed
// process could lose), one file per UTC day, readable by `fedai node statement verify`'s reader,
// and a line that cannot be written is an error, not a silent gap (nor a path in the answer).
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { createEnvelope, generateSecretKey, KIND, publicKeyOf } from '@fed-ai/protocol';
import { nodeConfigSchema } from '../src/config';
import { buildMeteringRecord } from '../src/metering';
import { MeteringLog, readMeteringLog } from '../src/metering-log';
import { startNode } from '../src/node';
import { inferenceRequest, postInfer, routerPubkey, signedRequest } from './helpers';
import { ScriptedRunnerDouble } from './runner-double';

const nodeKey = generateSecretKey();
const node = publicKeyOf(nodeKey);

/** A metering envelope as the node signs one (its own record builder). */
function record(requestId: string) {
  const payload = buildMeteringRecord({
    request: inferenceRequest({ request_id: requestId }),
    routerPubkey,
    result: { finishReason: 'stop', promptTokens: 7, completionTokens: 4, text: 'Hello' },
    price: { input_msat_per_1k: 1000, output_msat_per_1k: 2000 },
    ttftMs: 1,
    wallMs: 2,
    runnerKind: 'openai-http',
  });
  return createEnvelope(
    KIND.meteringRecord,
    payload,
    { audience: routerPubkey, refs: [requestId], expiresInS: 0 },
    nodeKey,
  );
}

const DAY1 = Date.parse('2026-12-01T23:59:59Z');
const DAY2 = Date.parse('2026-12-02T00:00:01Z');

test('a line is in the file as soon as append returns, before close, and a new UTC day starts a new file', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-metering-'));
  try {
    const log = new MeteringLog(dir, { retentionDays: 30, nowMs: DAY1 });
    const first = record('request-1');
    log.append(first, DAY1);
    const day1 = join(dir, 'metering-2026-12-01.jsonl');
    assert.deepEqual(readFileSync(day1, 'utf8'), `${JSON.stringify(first)}\n`);
    const second = record('request-2');
    log.append(second, DAY2);
    assert.equal(readFileSync(join(dir, 'metering-2026-12-02.jsonl'), 'utf8'), `${JSON.stringify(second)}\n`);
    assert.equal(readFileSync(day1, 'utf8').split('\n').length, 2, 'the first day keeps only its line');
    // Still open: the reader finds both without a close.
    const found = await readMeteringLog(dir, node, new Set([first.id, second.id]));
    assert.deepEqual([...found.keys()].sort(), [first.id, second.id].sort());
    await log.close();
    // A closed log opens today's file again on the next line, appending.
    log.append(record('request-3'), DAY2);
    assert.equal(readFileSync(join(dir, 'metering-2026-12-02.jsonl'), 'utf8').trim().split('\n').length, 2);
    await log.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a line that cannot be written throws (the node answers an error instead of an unlogged record)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'fedai-metering-'));
  const log = new MeteringLog(dir, { retentionDays: 30, nowMs: DAY1 });
  log.append(record('request-1'), DAY1);
  rmSync(dir, { recursive: true, force: true });
  // The next day's file cannot be opened in a folder that is gone.
  assert.throws(() => log.append(record('request-2'), DAY2), /ENOENT/);
  await log.close();
});

test('a node that cannot log the record it signed answers an error that names no file', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'fedai-node-log-'));
  const config = nodeConfigSchema.parse({
    NODE_PORT: '0',
    DATA_DIR: dataDir,
    DEMO_MODEL: 'true',
    ROUTER_PUBKEYS: routerPubkey,
    ROUTER_URLS: '',
  });
  const running = await startNode(
    { ...config, ROUTER_URLS: ['http://127.0.0.1:9'], ROUTER_PUBKEYS: [routerPubkey] },
    { runner: new ScriptedRunnerDouble(['Hel', 'lo'], 0) },
  );
  try {
    // Gone before the first line: today's file cannot be opened.
    rmSync(join(dataDir, 'metering'), { recursive: true, force: true });
    for (const stream of [false, true]) {
      const response = await postInfer(
        running.url,
        signedRequest(running.pubkey, inferenceRequest({ stream })),
      );
      const body = await response.text();
      assert.doesNotMatch(body, /metering-|ENOENT|fedai-node-log-/, 'no file or path in the answer');
      assert.doesNotMatch(body, /"type":"done"/, 'no record leaves without its copy in the log');
      assert.match(body, /INTERNAL/);
    }
  } finally {
    await running.close();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
