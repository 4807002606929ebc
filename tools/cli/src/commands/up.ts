// `fedai up`: a real local network on 127.0.0.1 — relay, router, two nodes (and settlement when
// present) as separate processes on embedded PGlite under ./data — then one real request.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import { loadOrCreateKeyFile } from '@fed-ai/kit';
import { createNip98Header, publicKeyOf } from '@fed-ai/protocol';
import { FedAiClient } from '@fed-ai/sdk';
import { type Devnet, dataDir, devnetPath, readDevnet } from '../devnet-file';
import { bold, cyan, dim, EXIT, fail, green, yellow } from '../output';
import { REPO_ROOT, type SpawnedService, spawnService, tsxImport } from '../services';

export interface UpOptions {
  detach?: boolean;
  model?: string;
  firstRequest?: boolean;
  readyTimeoutS?: number;
}

const PREFERRED_PORTS = { relay: 7447, router: 7000, node1: 7101, node2: 7102, settlement: 7200 };
const DEMO_NOTICE =
  'No model configured and no local Ollama or llama.cpp server found: serving the generated DEMO model.\n' +
  '  Its answers are random noise; it exists to show the network working end to end.\n' +
  '  Serve a real model:  FEDAI_MODEL=/path/to/model.gguf pnpm fedai up\n' +
  '                  or:  FEDAI_MODEL=http://127.0.0.1:11434/v1 pnpm fedai up   (Ollama, llama.cpp, vLLM, LM Studio)';

export async function up(options: UpOptions): Promise<void> {
  const dir = dataDir();
  mkdirSync(dir, { recursive: true });
  const existing = readDevnet(dir);
  if (existing && isAlive(existing.pid)) {
    fail(`a network is already running (pid ${existing.pid}); stop it with: pnpm fedai down`, EXIT.usage);
  }
  if (options.detach) return detach(dir);

  const started = Date.now();
  const logsDir = resolve(dir, 'logs');
  mkdirSync(logsDir, { recursive: true });
  const children: SpawnedService[] = [];
  let stopping = false;
  const stopAll = async (code: number) => {
    if (stopping) return;
    stopping = true;
    process.stdout.write(`\n${dim('stopping the network...')}\n`);
    for (const s of [...children].reverse()) s.child.kill('SIGTERM');
    const deadline = setTimeout(() => {
      for (const s of children) s.child.kill('SIGKILL');
    }, 10_000);
    await Promise.all(children.map((s) => s.exited));
    clearTimeout(deadline);
    const current = readDevnet(dir);
    if (current?.pid === process.pid) rmSync(devnetPath(dir), { force: true });
    process.stdout.write(`${green('stopped')}: every process exited.\n`);
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(EXIT.ok));
  process.on('SIGTERM', () => void stopAll(EXIT.ok));

  const step = (text: string) => process.stdout.write(`${cyan('›')} ${text}\n`);
  const onChildExit = (s: SpawnedService) =>
    s.exited.then((code) => {
      if (!stopping) {
        process.stderr.write(
          `${s.name} exited unexpectedly (code ${code}); see ${resolve(logsDir, `${s.name}.log`)}\n`,
        );
        void stopAll(EXIT.failure);
      }
    });

  try {
    const operator = loadOrCreateKeyFile(resolve(dir, 'operator.key'));
    const routerKey = loadOrCreateKeyFile(resolve(dir, 'router.key'));
    const ports = {
      relay: await freePort(PREFERRED_PORTS.relay),
      settlement: await freePort(PREFERRED_PORTS.settlement),
      router: await freePort(PREFERRED_PORTS.router),
      node1: await freePort(PREFERRED_PORTS.node1),
      node2: await freePort(PREFERRED_PORTS.node2),
    };
    const relayUrl = `ws://127.0.0.1:${ports.relay}`;
    const routerUrl = `http://127.0.0.1:${ports.router}`;
    const model = await resolveModel(options.model, dir);
    if (model.demo) process.stdout.write(`${yellow('note:')} ${DEMO_NOTICE}\n`);

    step(`relay on ${relayUrl}`);
    const relay = spawnService(
      'relay',
      'relay',
      { RELAY_HOST: '127.0.0.1', RELAY_PORT: String(ports.relay) },
      resolve(logsDir, 'relay.log'),
    );
    children.push(relay);
    void onChildExit(relay);
    await waitForHttp(`http://127.0.0.1:${ports.relay}/health`, 30_000, relay);

    const settlementUrl = `http://127.0.0.1:${ports.settlement}`;
    step(`settlement on ${settlementUrl} (ledger, internal Lightning, devnet faucet)`);
    const settlement = spawnService(
      'settlement',
      'settlement',
      {
        SETTLEMENT_HOST: '127.0.0.1',
        SETTLEMENT_PORT: String(ports.settlement),
        SETTLEMENT_KEY_FILE: resolve(dir, 'settlement.key'),
        SETTLEMENT_ROUTER_PUBKEYS: publicKeyOf(routerKey.secretKey),
        SETTLEMENT_OPERATOR_PUBKEYS: publicKeyOf(operator.secretKey),
        FAUCET: 'true',
        DATA_DIR: resolve(dir, 'settlement'),
      },
      resolve(logsDir, 'settlement.log'),
    );
    children.push(settlement);
    void onChildExit(settlement);
    await waitForHttp(`${settlementUrl}/ready`, 60_000, settlement);

    step(`router on ${routerUrl}`);
    const router = spawnService(
      'router',
      'router',
      {
        ROUTER_HOST: '127.0.0.1',
        ROUTER_PORT: String(ports.router),
        ROUTER_PUBLIC_URL: routerUrl,
        ROUTER_KEY_FILE: resolve(dir, 'router.key'),
        ROUTER_NAME: 'fedai-devnet',
        OPERATOR_PUBKEYS: publicKeyOf(operator.secretKey),
        ALLOW_PRIVATE_ENDPOINTS: 'true',
        DATA_DIR: resolve(dir, 'router'),
        RELAY_URLS: relayUrl,
        SETTLEMENT_URL: settlementUrl,
      },
      resolve(logsDir, 'router.log'),
    );
    children.push(router);
    void onChildExit(router);
    await waitForHttp(`${routerUrl}/ready`, 60_000, router);
    const routerInfo = (await (await fetch(`${routerUrl}/v1/router`)).json()) as { pubkey: string };

    const nodes: Devnet['nodes'] = [];
    for (const [index, port] of [ports.node1, ports.node2].entries()) {
      const name = `node-${index + 1}`;
      const url = `http://127.0.0.1:${port}`;
      step(`${name} on ${url} (${model.label})`);
      const child = spawnService(
        'node',
        name,
        {
          NODE_HOST: '127.0.0.1',
          NODE_PORT: String(port),
          NODE_PUBLIC_URL: url,
          NODE_KEY_FILE: resolve(dir, `${name}.key`),
          ROUTER_URLS: routerUrl,
          ROUTER_PUBKEYS: routerInfo.pubkey,
          DATA_DIR: resolve(dir, name),
          PRICE_INPUT_MSAT_PER_1K: String(1000 + index * 200),
          PRICE_OUTPUT_MSAT_PER_1K: String(2000 + index * 400),
          HEARTBEAT_INTERVAL_S: '5',
          ...model.env,
        },
        resolve(logsDir, `${name}.log`),
      );
      children.push(child);
      void onChildExit(child);
      nodes.push({ name, url, pubkey: '' });
    }
    for (const node of nodes) {
      const child = children.find((c) => c.name === node.name)!;
      await waitForHttp(
        `${node.url}/ready`,
        (options.readyTimeoutS ?? 180) * 1000,
        child,
        `loading the model on ${node.name}`,
      );
      const info = (await (await fetch(`${node.url}/v1/info`)).json()) as { pubkey: string };
      node.pubkey = info.pubkey;
    }
    step('waiting for nodes to register with the router');
    await waitFor(async () => {
      const list = (await (await fetch(`${routerUrl}/v1/models`)).json()) as { data?: { id: string }[] };
      return (list.data ?? []).some((m) => m.id === model.id);
    }, 60_000);

    const apiKey = await ensureApiKey(dir, routerUrl, operator.secretKey);
    const balanceMsat = await fundFromFaucet(routerUrl, apiKey);
    const devnet: Devnet = {
      version: 1,
      pid: process.pid,
      started_at: new Date().toISOString(),
      router_url: routerUrl,
      router_pubkey: routerInfo.pubkey,
      relay_url: relayUrl,
      settlement_url: settlementUrl,
      api_key: apiKey,
      model: model.id,
      model_is_demo: model.demo,
      nodes,
      data_dir: dir,
      logs_dir: logsDir,
    };
    writeFileSync(devnetPath(dir), `${JSON.stringify(devnet, null, 2)}\n`, { mode: 0o600 });
    printSummary(devnet, Date.now() - started, balanceMsat);

    if (options.firstRequest !== false) await firstRequest(devnet);
    process.stdout.write(`\n${green('network running')} — press Ctrl-C to stop.\n`);
    await new Promise(() => {}); // until a signal or a child exit
  } catch (error) {
    process.stderr.write(`fedai up failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.stderr.write(`logs: ${logsDir}\n`);
    await stopAll(EXIT.failure);
  }
}

export async function down(): Promise<void> {
  const dir = dataDir();
  const devnet = readDevnet(dir);
  const pidFile = resolve(dir, 'devnet.pid');
  const pid = devnet?.pid ?? (existsSync(pidFile) ? Number(readFileSync(pidFile, 'utf8')) : undefined);
  if (!pid || !isAlive(pid)) {
    rmSync(pidFile, { force: true });
    process.stdout.write('no network is running.\n');
    return;
  }
  process.kill(pid, 'SIGINT');
  const deadline = Date.now() + 30_000;
  while (isAlive(pid) && Date.now() < deadline) await sleep(200);
  if (isAlive(pid)) fail(`network (pid ${pid}) did not stop in 30 s`, EXIT.failure);
  rmSync(pidFile, { force: true });
  process.stdout.write(`${green('stopped')} the network (pid ${pid}).\n`);
}

function detach(dir: string): void {
  const log = openSync(resolve(dir, 'logs-up.log'), 'a');
  const child = spawn(
    process.execPath,
    ['--import', tsxImport(), resolve(REPO_ROOT, 'tools/cli/src/main.ts'), 'up'],
    {
      cwd: process.cwd(),
      env: process.env,
      detached: true,
      stdio: ['ignore', log, log],
    },
  );
  child.unref();
  writeFileSync(resolve(dir, 'devnet.pid'), String(child.pid));
  process.stdout.write(
    `network starting in the background (pid ${child.pid}); it is ready when ${devnetPath(dir)} exists.\n` +
      `log: ${resolve(dir, 'logs-up.log')}\nstop it with: pnpm fedai down\n`,
  );
}

interface ModelChoice {
  id: string;
  demo: boolean;
  label: string;
  env: Record<string, string>;
}

async function resolveModel(flag: string | undefined, dir: string): Promise<ModelChoice> {
  const configured = flag ?? process.env.FEDAI_MODEL;
  if (configured) {
    if (/^https?:\/\//.test(configured))
      return openAiModel(configured.replace(/\/+$/, ''), process.env.FEDAI_MODEL_ID);
    return {
      id: process.env.FEDAI_MODEL_ID ?? modelIdFromPath(configured),
      demo: false,
      label: `embedded ${configured}`,
      env: {
        RUNNER: 'embedded',
        MODEL_PATH: configured,
        ...(process.env.FEDAI_MODEL_ID ? { MODEL_ID: process.env.FEDAI_MODEL_ID } : {}),
      },
    };
  }
  for (const base of ['http://127.0.0.1:11434/v1', 'http://127.0.0.1:8080/v1']) {
    const found = await openAiModel(base, process.env.FEDAI_MODEL_ID).catch(() => null);
    if (found) {
      process.stdout.write(`${cyan('›')} found a local model server at ${base}: serving ${found.id}\n`);
      return found;
    }
  }
  return {
    id: 'fedai-demo-noise-v1',
    demo: true,
    label: 'demo model (noise)',
    env: { RUNNER: 'embedded', DEMO_MODEL: 'true', MODEL_DIR: resolve(dir, 'models') },
  };
}

async function openAiModel(base: string, wanted: string | undefined): Promise<ModelChoice> {
  const response = await fetch(`${base}/models`, { signal: AbortSignal.timeout(800) });
  if (!response.ok) throw new Error(`${base} answered ${response.status}`);
  const list = (await response.json()) as { data?: { id: string }[] };
  const id = wanted ?? list.data?.[0]?.id;
  if (!id) throw new Error(`${base} lists no models`);
  return {
    id,
    demo: false,
    label: `${id} via ${base}`,
    env: { RUNNER: 'openai', OPENAI_BASE_URL: base, MODEL_ID: id },
  };
}

function modelIdFromPath(path: string): string {
  const base = path.split('/').pop() ?? path;
  return base.replace(/\.gguf$/i, '').replace(/[^A-Za-z0-9_\-:./@+]/g, '-');
}

async function ensureApiKey(dir: string, routerUrl: string, operatorKey: Uint8Array): Promise<string> {
  const keyPath = resolve(dir, 'api-key');
  if (existsSync(keyPath)) {
    const saved = readFileSync(keyPath, 'utf8').trim();
    const check = await fetch(`${routerUrl}/v1/models`, { headers: { authorization: `Bearer ${saved}` } });
    if (check.ok && saved) return saved;
  }
  const url = `${routerUrl}/admin/apikeys`;
  const body = JSON.stringify({ name: 'devnet' });
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(url, 'POST', body, operatorKey),
    },
    body,
  });
  if (!response.ok)
    throw new Error(`creating the API key failed: HTTP ${response.status} ${await response.text()}`);
  const created = (await response.json()) as { key?: string; api_key?: string };
  const key = created.key ?? created.api_key;
  if (!key) throw new Error('the router did not return an API key');
  writeFileSync(keyPath, `${key}\n`, { mode: 0o600 });
  return key;
}

/** Devnet only: tops the demo key's tab up from the settlement faucet (a real BOLT11, paid internally). */
async function fundFromFaucet(routerUrl: string, apiKey: string): Promise<number> {
  const call = async (path: string, body?: unknown) => {
    const response = await fetch(`${routerUrl}/v1/tabs/${path}`, {
      method: body === undefined ? 'GET' : 'POST',
      headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
    });
    const json = (await response.json()) as Record<string, unknown>;
    if (!response.ok) throw new Error(`tab ${path}: ${JSON.stringify(json)}`);
    return json;
  };
  const tab = await call('me');
  if (Number(tab.balance_msat) >= 100_000) return Number(tab.balance_msat);
  const invoice = await call('topup', { amount_msat: 1_000_000 });
  await call('faucet', { bolt11: invoice.bolt11 });
  return Number((await call('me')).balance_msat);
}

function printSummary(devnet: Devnet, elapsedMs: number, balanceMsat: number): void {
  const line = (k: string, v: string) => process.stdout.write(`  ${k.padEnd(10)} ${v}\n`);
  process.stdout.write(`\n${bold('fed-ai local network ready')} in ${(elapsedMs / 1000).toFixed(1)} s\n`);
  line('router', devnet.router_url);
  line('relay', devnet.relay_url);
  line('model', `${devnet.model}${devnet.model_is_demo ? yellow(' (demo: answers are noise)') : ''}`);
  for (const n of devnet.nodes) line(n.name, `${n.url}  ${dim(n.pubkey.slice(0, 16))}…`);
  line('api key', `${devnet.api_key}  (tab: ${balanceMsat} msat from the devnet faucet)`);
  if (devnet.settlement_url) line('settlement', devnet.settlement_url);
  line('facts', devnetPath(devnet.data_dir));
  line('logs', devnet.logs_dir);
  process.stdout.write(`\n${bold('try it')}\n`);
  process.stdout.write(
    `  curl ${devnet.router_url}/v1/chat/completions -H "authorization: Bearer ${devnet.api_key}" \\\n` +
      `    -H "content-type: application/json" -d '{"model":"${devnet.model}","messages":[{"role":"user","content":"Hello"}],"max_tokens":32}'\n`,
  );
  process.stdout.write(
    `  # in a project with the openai package:\n  node -e "const OpenAI=require('openai');new OpenAI({baseURL:'${devnet.router_url}/v1',apiKey:'${devnet.api_key}'})` +
      `.chat.completions.create({model:'${devnet.model}',messages:[{role:'user',content:'Hello'}],max_tokens:32}).then(r=>console.log(r.choices[0].message.content))"\n`,
  );
  process.stdout.write(`  pnpm fedai chat "Hello"\n`);
  process.stdout.write(`  stop: Ctrl-C here (or pnpm fedai down for --detach)\n`);
}

async function firstRequest(devnet: Devnet): Promise<void> {
  process.stdout.write(`\n${bold('first request')} through the router (streamed):\n  `);
  const client = new FedAiClient({ routerUrl: devnet.router_url, apiKey: devnet.api_key, timeoutMs: 60_000 });
  try {
    for await (const event of client.chatStream({
      model: devnet.model,
      messages: [{ role: 'user', content: 'Say hello to the fed-ai network in one sentence.' }],
      maxTokens: 24,
      temperature: 0,
    })) {
      if (event.type === 'delta') process.stdout.write(event.text.replace(/\n/g, '\n  '));
      else {
        const r = event.result;
        process.stdout.write(
          `\n  ${dim(`${r.usage.prompt_tokens} prompt + ${r.usage.completion_tokens} completion tokens, cost ${r.costMsat} msat, node ${r.node.slice(0, 16)}…, receipt signed ${r.receipt.id.slice(0, 16)}…`)}\n`,
        );
      }
    }
  } catch (error) {
    process.stdout.write(
      `\n  ${yellow('first request failed:')} ${error instanceof Error ? error.message : String(error)}\n`,
    );
  } finally {
    await client.close();
  }
}

async function waitForHttp(
  url: string,
  timeoutMs: number,
  child: SpawnedService,
  label?: string,
): Promise<void> {
  const started = Date.now();
  let lastProgress = 0;
  let exited = false;
  void child.exited.then(() => {
    exited = true;
  });
  while (Date.now() - started < timeoutMs) {
    if (exited) throw new Error(`${child.name} exited while starting`);
    try {
      const response = await fetch(url, { signal: AbortSignal.timeout(1000) });
      if (response.ok) return;
    } catch {
      // not listening yet
    }
    if (label && Date.now() - lastProgress > 3000) {
      lastProgress = Date.now();
      process.stdout.write(`  ${dim(`${label}... ${Math.round((Date.now() - started) / 1000)} s`)}\n`);
    }
    await sleep(150);
  }
  throw new Error(`${child.name} was not ready at ${url} within ${Math.round(timeoutMs / 1000)} s`);
}

async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s`);
}

/** The preferred port when free, else any free port on 127.0.0.1. */
export function freePort(preferred: number): Promise<number> {
  const tryListen = (port: number) =>
    new Promise<number | null>((done) => {
      const server = createServer();
      server.once('error', () => done(null));
      server.listen(port, '127.0.0.1', () => {
        const address = server.address();
        server.close(() => done(typeof address === 'object' && address ? address.port : null));
      });
    });
  return tryListen(preferred).then(
    async (port) => port ?? (await tryListen(0)) ?? fail('no free port', EXIT.failure),
  );
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
