// @fed-ai/protocol and @fed-ai/sdk must run in a browser (the operator dashboard imports them).
// 1. esbuild bundles both for `platform: 'browser'` with no error, no warning, no external import
//    and no `node:` import left in the output (a fixture with one proves the check can fail).
// 2. The sources use no Node global (Buffer, process, require), even on paths the run below skips.
// 3. The bundle runs in a fresh node:vm context holding only browser globals: keys, envelopes,
//    NIP-44, NIP-98, receipts through the SDK's checker, and a streamed chat over a fetch stub.
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import vm from 'node:vm';
import * as host from '@fed-ai/protocol';
import { build, type Message, transform } from 'esbuild';

const testDir = fileURLToPath(new URL('.', import.meta.url));
const repoRoot = join(testDir, '..', '..', '..');
const ENTRY = "export * as protocol from '@fed-ai/protocol';\nexport * as sdk from '@fed-ai/sdk';\n";
const NODE_IMPORT = /(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)["']node:/;

interface BundleResult {
  errors: Message[];
  warnings: Message[];
  text: string;
  externalImports: string[];
}

async function bundle(contents: string): Promise<BundleResult> {
  try {
    const result = await build({
      stdin: { contents, resolveDir: testDir, loader: 'ts', sourcefile: 'browser-entry.ts' },
      absWorkingDir: repoRoot,
      bundle: true,
      platform: 'browser',
      format: 'esm',
      target: 'es2022',
      write: false,
      metafile: true,
      logLevel: 'silent',
    });
    const text = result.outputFiles[0]?.text ?? '';
    const externalImports = Object.values(result.metafile.outputs).flatMap((o) =>
      o.imports.map((i) => i.path),
    );
    return { errors: result.errors, warnings: result.warnings, text, externalImports };
  } catch (error) {
    const failure = error as { errors?: Message[]; warnings?: Message[] };
    return { errors: failure.errors ?? [], warnings: failure.warnings ?? [], text: '', externalImports: [] };
  }
}

/** What a browser refuses: the build failing, warning, leaving an import outside the bundle, or a node: one. */
function nodeProblems(result: BundleResult): string[] {
  return [
    ...result.errors.map((m) => `error: ${m.text}`),
    ...result.warnings.map((m) => `warning: ${m.text}`),
    ...result.externalImports.map((path) => `external import: ${path}`),
    ...(NODE_IMPORT.test(result.text) ? ['a node: import is left in the output'] : []),
  ];
}

let built: Promise<BundleResult> | undefined;
const browserBundle = () => {
  built ??= bundle(ENTRY);
  return built;
};

test('protocol and sdk bundle for the browser: no errors, no warnings, no Node built-in', async () => {
  const result = await browserBundle();
  assert.deepEqual(nodeProblems(result), []);
  assert.ok(result.text.length > 10_000, 'the bundle holds the code');
  assert.doesNotMatch(result.text, /require\("node:/);
  assert.doesNotMatch(result.text, /from "node:/);
  // The check is not blind: a module that needs a Node built-in is refused.
  const leaky = await bundle("import { randomBytes } from 'node:crypto';\nexport const r = randomBytes;\n");
  assert.ok(
    nodeProblems(leaky).some((p) => p.includes('node:crypto')),
    `a node:crypto import must fail the check, got ${JSON.stringify(nodeProblems(leaky))}`,
  );
});

test('the sources of protocol and sdk use no Node global (Buffer, process, require) or node: import', () => {
  const forbidden = /\bBuffer\b|\bprocess\s*\.|\brequire\s*\(|from\s*['"]node:|import\s*\(\s*['"]node:/;
  const offenders: string[] = [];
  for (const pkg of ['protocol', 'sdk']) {
    const dir = join(repoRoot, 'packages', pkg, 'src');
    for (const name of readdirSync(dir, { recursive: true }) as string[]) {
      if (!name.endsWith('.ts')) continue;
      // Comments may name Buffer (to say what replaced it); code may not.
      const code = readFileSync(join(dir, name), 'utf8')
        .replace(/\/\*[\s\S]*?\*\//g, '')
        .replace(/(^|[^:'"`\\])\/\/.*$/gm, '$1');
      code.split('\n').forEach((line, i) => {
        if (forbidden.test(line)) offenders.push(`${pkg}/src/${name}:${i + 1}: ${line.trim()}`);
      });
    }
  }
  assert.deepEqual(offenders, []);
  assert.equal(forbidden.test("const b = Buffer.from('x');"), true, 'the pattern catches Buffer');
});

interface FetchCall {
  url: string;
  method: string;
}

/** A context with only what a browser has: no Buffer, process, require, module or global. */
function browserContext(fetchStub: (url: string, init: RequestInit) => Promise<Response>) {
  const sandbox: Record<string, unknown> = {
    TextEncoder,
    TextDecoder,
    crypto: globalThis.crypto,
    fetch: fetchStub,
    console,
    setTimeout,
    clearTimeout,
    atob,
    btoa,
    URL,
    AbortController,
    AbortSignal,
    Event,
    EventTarget,
    ReadableStream,
    Response,
    Headers,
  };
  const context = vm.createContext(sandbox);
  return context;
}

async function loadBundle(context: vm.Context) {
  const esm = (await browserBundle()).text;
  // The same bundle, its `export {...}` turned into a global so a classic script can load it.
  const script = await transform(esm, { format: 'iife', globalName: '__fedai', loader: 'js' });
  vm.runInContext(`${script.code}\n;globalThis.__fedai = __fedai;`, context, {
    filename: 'fedai.browser.js',
  });
  return (
    context as {
      __fedai: { protocol: typeof import('@fed-ai/protocol'); sdk: typeof import('../src/index') };
    }
  ).__fedai;
}

/** SSE bytes of an OpenAI-shaped stream, cut into chunks at the given byte offsets. */
function chunked(text: string, cuts: number[]): Uint8Array[] {
  const bytes = new TextEncoder().encode(text);
  const points = [0, ...cuts, bytes.length];
  return points.slice(1).map((end, i) => bytes.slice(points[i], end));
}

test('the bundle runs with browser globals only: keys, envelopes, NIP-44, NIP-98, receipts, a streamed chat', async () => {
  const calls: FetchCall[] = [];
  let streamBody: Uint8Array[] = [];
  const fetchStub = async (url: string, init: RequestInit): Promise<Response> => {
    calls.push({ url, method: init.method ?? 'GET' });
    const parts = streamBody;
    return new Response(
      new ReadableStream<Uint8Array>({
        start(controller) {
          for (const part of parts) controller.enqueue(part);
          controller.close();
        },
      }),
      { status: 200, headers: { 'content-type': 'text/event-stream' } },
    );
  };
  const context = browserContext(fetchStub);
  assert.equal(
    vm.runInContext(
      '[typeof Buffer, typeof process, typeof require, typeof module, typeof global].join()',
      context,
    ),
    'undefined,undefined,undefined,undefined,undefined',
  );
  const { protocol, sdk } = await loadBundle(context);

  // Keys.
  const key = protocol.generateSecretKey();
  const me = protocol.publicKeyOf(key);
  assert.match(me, /^[0-9a-f]{64}$/);
  assert.equal(me, host.publicKeyOf(Uint8Array.from(key)), 'the same key as in Node');
  const peerKey = protocol.generateSecretKey();
  const peer = protocol.publicKeyOf(peerKey);

  // An envelope, verified; tampering and the wrong audience are refused.
  const quote = { model: 'm', max_tokens: 16, prompt_tokens: 4 };
  const envelope = protocol.createEnvelope(protocol.KIND.quoteRequest, quote, { audience: peer }, key);
  const verified = await protocol.verifyEnvelope(JSON.stringify(envelope), {
    me: peer,
    kinds: [protocol.KIND.quoteRequest],
  });
  assert.equal(verified.ok, true);
  const tampered = { ...envelope, content: envelope.content.replace('16', '17') };
  const refused = await protocol.verifyEnvelope(tampered, { me: peer, kinds: [protocol.KIND.quoteRequest] });
  assert.equal(refused.ok === false && refused.code, 'BAD_ID');
  const wrongAudience = await protocol.verifyEnvelope(envelope, { me, kinds: [protocol.KIND.quoteRequest] });
  assert.equal(wrongAudience.ok === false && wrongAudience.code, 'WRONG_AUDIENCE');
  // What the browser signed verifies in Node, and the header encoding round-trips in both.
  const inNode = await host.verifyEnvelope(JSON.stringify(envelope), {
    me: peer,
    kinds: [host.KIND.quoteRequest],
  });
  assert.equal(inNode.ok, true);
  const header = protocol.encodeEnvelopeHeader(envelope);
  assert.equal(header, host.encodeEnvelopeHeader(envelope));
  assert.equal(protocol.decodeEnvelopeHeader(header), JSON.stringify(envelope));

  // NIP-44 round trip (multi-byte text), readable in Node too.
  const plaintext = 'offload: héllo ⚡ 你好';
  const sealed = protocol.nip44Encrypt(plaintext, protocol.conversationKey(key, peer));
  assert.equal(protocol.nip44Decrypt(sealed, protocol.conversationKey(peerKey, me)), plaintext);
  assert.equal(host.nip44Decrypt(sealed, host.conversationKey(Uint8Array.from(peerKey), me)), plaintext);

  // NIP-98 (base64 and random nonce without Buffer or node:crypto).
  const url = 'https://router.example/v1/tabs/me';
  const auth = protocol.createNip98Header(url, 'GET', undefined, key);
  const nip98 = await protocol.verifyNip98(auth, {
    url,
    method: 'GET',
    replayStore: new protocol.MemoryReplayStore(),
  });
  assert.deepEqual({ ...nip98 }, { ok: true, pubkey: me });

  // A node-signed receipt, checked by the SDK through the protocol's checker.
  const messages = [{ role: 'user' as const, content: 'hi ⚡' }];
  const price = { input_msat_per_1k: 1000, output_msat_per_1k: 2000 };
  const text = 'héllo';
  const record = {
    request_id: 'rq-browser-1',
    router: peer,
    model: 'm',
    prompt_sha256: protocol.promptSha256(messages),
    output_sha256: protocol.outputSha256(text),
    tokens_in: 10,
    tokens_out: 5,
    ttft_ms: 1,
    wall_ms: 2,
    price,
    cost_msat: protocol.costMsat(10, 5, price),
    finish_reason: 'stop' as const,
    count_source: 'tokenizer' as const,
  };
  const receipt = protocol.createEnvelope(protocol.KIND.meteringRecord, record, { audience: peer }, key);
  const good = await sdk.verifyReceipt(receipt, {
    node: me,
    router: peer,
    text,
    messages,
    requestId: 'rq-browser-1',
  });
  assert.equal(good.ok, true);
  const bad = await sdk.verifyReceipt(receipt, { text: 'hello' });
  assert.equal(bad.ok === false && bad.reason, 'METERING_OUTPUT_HASH');

  // A streamed chat through the SDK over fetch: the multi-byte characters are cut across chunks,
  // lines end in CRLF and one `data:` has no space.
  const final = JSON.stringify({
    id: 'c1',
    model: 'm',
    choices: [{ delta: {}, finish_reason: 'stop' }],
    fedai: { node: me, cost_msat: record.cost_msat, receipt },
  });
  const sse = `data: {"id":"c1","model":"m","choices":[{"delta":{"content":"hé"}}]}\r\n\r\ndata:{"id":"c1","model":"m","choices":[{"delta":{"content":"llo"}}]}\r\n\r\ndata: ${final}\r\n\r\ndata: [DONE]\r\n\r\n`;
  const e = new TextEncoder().encode(sse).indexOf(0xa9); // second byte of "é"
  streamBody = chunked(sse, [5, e, e + 1, e + 40]);
  const client = new sdk.FedAiClient({ routerUrl: 'https://router.example/', apiKey: 'k' });
  const deltas: string[] = [];
  let result: import('../src/index').ChatResult | undefined;
  for await (const event of client.chatStream({ model: 'm', messages })) {
    if (event.type === 'delta') deltas.push(event.text);
    else result = event.result;
  }
  assert.deepEqual(deltas, ['hé', 'llo']);
  assert.equal(result?.text, text);
  assert.equal(result?.node, me);
  assert.equal(result?.dispatchId, 'rq-browser-1');
  assert.deepEqual(calls, [{ url: 'https://router.example/v1/chat/completions', method: 'POST' }]);
  const verdict = await sdk.verifyReceipt(result!.receipt, {
    text: result!.text,
    messages,
    node: result!.node,
  });
  assert.equal(verdict.ok, true);

  // The WASM signer loads from the bundle too (atob + WebAssembly), and agrees with the pure one.
  assert.deepEqual({ ...(await protocol.initCrypto('wasm')) }, { backend: 'wasm' });
  const wasmSigned = protocol.createEnvelope(protocol.KIND.quoteRequest, quote, { audience: peer }, key);
  assert.equal(wasmSigned.pubkey, me);
  const wasmVerified = await host.verifyEnvelope(wasmSigned, { me: peer, kinds: [host.KIND.quoteRequest] });
  assert.equal(wasmVerified.ok, true);
  protocol.useCryptoBackend('pure');
});
