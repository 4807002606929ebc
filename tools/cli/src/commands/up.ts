// `fedai up`: a real local network on 127.0.0.1 — relay, router, two nodes (and settlement when
// present) as separate processes on embedded PGlite under ./data — then one real request.
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { EXIT_PORT_IN_USE, type ReadyFacts, readReadyFile } from '@fed-ai/kit';
import { publicKeyOf } from '@fed-ai/protocol';
import { FedAiClient } from '@fed-ai/sdk';
import { type Devnet, dataDir, devnetPath, readDevnet } from '../devnet-file';
import { bold, cyan, dim, EXIT, fail, green, yellow } from '../output';
import { REPO_ROOT, type ServiceName, type SpawnedService, spawnService, tsxImport } from '../services';
import { ensureApiKey } from './devnet-key';
import { setupDemoAgent } from './devnet-wallet';
import {
  networkKeys,
  nodeSpec,
  relaySpec,
  routerSpec,
  settlementSpec,
  walletFleetSpec,
} from './network-specs';

export interface UpOptions {
  detach?: boolean;
  /** More than 1: a federated network (up-federation.ts). */
  routers?: number;
  model?: string;
  firstRequest?: boolean;
  readyTimeoutS?: number;
}

const PREFERRED_PORTS = {
  relay: 7447,
  router: 7000,
  node1: 7101,
  node2: 7102,
  settlement: 7200,
  walletFleet: 7300,
};
export const DEMO_NOTICE =
  'No model configured and no local Ollama or llama.cpp server found: serving the generated DEMO model.\n' +
  '  Its answers are random noise; it exists to show the network working end to end.\n' +
  '  Serve a real model:  FEDAI_MODEL=/path/to/model.gguf pnpm fedai up\n' +
  '                  or:  FEDAI_MODEL=http://127.0.0.1:11434/v1 pnpm fedai up   (Ollama, llama.cpp, vLLM, LM Studio)';

export async function up(options: UpOptions): Promise<void> {
  const dir = dataDir();
  mkdirSync(dir, { recursive: true });
  const existing = readDevnet(dir);
  if (existing && isAlive(existing.pid)) {
    fail('NETWORK_RUNNING', `a network is already running (pid ${existing.pid})`);
  }
  if (options.detach) return detach(dir, options);
  if ((options.routers ?? 1) > 1) return (await import('./up-federation')).upFederation(options);

  const started = Date.now();
  const { logsDir, launch, stopAll, step } = superviseNetwork(dir);
  try {
    const keys = networkKeys(dir);
    const model = await resolveModel(options.model, dir);
    if (model.demo) process.stdout.write(`${yellow('note:')} ${DEMO_NOTICE}\n`);

    const relayUrl = (await launch(relaySpec(PREFERRED_PORTS.relay))).url;
    const settlementUrl = (
      await launch(
        settlementSpec(dir, keys, PREFERRED_PORTS.settlement, {
          // Payouts on a local network: at once, from 1 sat, to wallets on 127.0.0.1 (production
          // holds charges back for the dispute window and pays from 100 sat).
          PAYOUT_HOLD_BACK_S: '0',
          PAYOUT_THRESHOLD_MSAT: '1000',
          PAYOUT_MIN_FEE_MSAT: '0',
          PAYOUT_ALLOW_PRIVATE: 'true',
        }),
      )
    ).url;
    const urls = { relay: relayUrl, settlement: settlementUrl };
    const routerPubkey = publicKeyOf(keys.router);
    const routerUrl = (await launch(routerSpec(dir, keys, PREFERRED_PORTS.router, urls))).url;

    // The wallet fleet starts while the nodes load their model.
    const fleetStart = launch(walletFleetSpec(dir, keys, PREFERRED_PORTS.walletFleet, urls));

    // Both nodes load their model at the same time; each reports once loaded and listening.
    step(`starting node-1 and node-2 (${model.label})`);
    const nodeStarts = [PREFERRED_PORTS.node1, PREFERRED_PORTS.node2].map((preferredPort, index) => {
      const spec = nodeSpec(
        dir,
        index,
        preferredPort,
        { url: routerUrl, pubkey: routerPubkey },
        model.env,
        (options.readyTimeoutS ?? 180) * 1000,
      );
      // Both load at once: one progress line is enough.
      return launch(index === 0 ? { ...spec, progress: 'loading the model on the nodes' } : spec).then(
        (started) => ({ name: spec.name, url: started.url, pubkey: started.pubkey ?? '' }),
      );
    });
    const nodes: Devnet['nodes'] = await Promise.all(nodeStarts);
    step('waiting for nodes to register with the router');
    await waitFor(async () => {
      const list = (await (await fetch(`${routerUrl}/v1/models`)).json()) as { data?: { id: string }[] };
      return (list.data ?? []).some((m) => m.id === model.id);
    }, 60_000);

    const { key: apiKey, minted } = await ensureApiKey(dir, routerUrl, keys.operator);
    if (minted) step('created an API key (none was saved, or the router refused the saved one)');
    const balanceMsat = await fundFromFaucet(routerUrl, apiKey);
    const fleet = await fleetStart;
    const agent = await setupDemoAgent({
      dir,
      fleetUrl: fleet.url,
      fleetPubkey: publicKeyOf(keys.fleet),
      relayUrl,
      ownerKey: keys.owner,
      routerUrl,
      apiKey,
    });
    const devnet: Devnet = {
      version: 1,
      pid: process.pid,
      started_at: new Date().toISOString(),
      router_url: routerUrl,
      router_pubkey: routerPubkey,
      relay_url: relayUrl,
      settlement_url: settlementUrl,
      wallet_fleet_url: fleet.url,
      wallet_owner_key_file: resolve(dir, 'owner.key'),
      agent_wallet_id: agent.walletId,
      agent_nwc_uri: agent.nwcUri,
      api_key: apiKey,
      model: model.id,
      model_is_demo: model.demo,
      nodes,
      data_dir: dir,
      logs_dir: logsDir,
    };
    writeFileSync(devnetPath(dir), `${JSON.stringify(devnet, null, 2)}\n`, { mode: 0o600 });
    printSummary(devnet, Date.now() - started, balanceMsat, agent.balanceMsat);

    if (options.firstRequest !== false) await firstRequest(devnet);
    process.stdout.write(`\n${green('network running')} — press Ctrl-C to stop.\n`);
    await new Promise(() => {}); // until a signal or a child exit
  } catch (error) {
    process.stderr.write(`fedai up failed: ${error instanceof Error ? error.message : String(error)}\n`);
    process.stderr.write(`logs: ${logsDir}\n`);
    await stopAll(EXIT.failure);
  }
}

/**
 * The supervisor of a local network's child processes: launches services (each binds its
 * preferred port, or any free one when that is taken, and reports the URL it really bound in its
 * ready file; only that URL is used, after an identity check), stops them all on Ctrl-C or when
 * one exits unexpectedly, and removes the facts file.
 */
export function superviseNetwork(
  dir: string,
  /** Runs after every service exited, before this process exits (e.g. stop a database server). */
  beforeExit?: () => Promise<void>,
) {
  const logsDir = resolve(dir, 'logs');
  mkdirSync(logsDir, { recursive: true });
  const children: SpawnedService[] = [];
  /** What each service was launched with and the URL it bound (restart reuses both). */
  const specs = new Map<string, { spec: LaunchSpec; url: string }>();
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
    await beforeExit?.().catch(() => {});
    const current = readDevnet(dir);
    if (current?.pid === process.pid) rmSync(devnetPath(dir), { force: true });
    rmSync(resolve(dir, 'run'), { recursive: true, force: true });
    process.stdout.write(`${green('stopped')}: every process exited.\n`);
    process.exit(code);
  };
  process.on('SIGINT', () => void stopAll(EXIT.ok));
  process.on('SIGTERM', () => void stopAll(EXIT.ok));

  const step = (text: string) => process.stdout.write(`${cyan('›')} ${text}\n`);
  const onChildExit = (s: SpawnedService) =>
    s.exited.then(async (code) => {
      // A Ctrl-C reaches the children too (one process group), and a fast one may exit before this
      // process has run its own SIGINT handler: give that a moment before calling the exit unexpected.
      await sleep(500);
      if (!stopping && children.includes(s)) {
        process.stderr.write(
          `${s.name} exited unexpectedly (code ${code}); see ${resolve(logsDir, `${s.name}.log`)}\n`,
        );
        void stopAll(EXIT.failure);
      }
    });

  const launch = async (spec: LaunchSpec) => {
    const launched = await launchService(spec, {
      runDir: resolve(dir, 'run'),
      logsDir,
      children,
      onStarted: onChildExit,
    });
    specs.set(spec.name, { spec, url: launched.url });
    return launched;
  };
  /**
   * SIGKILLs one child (an exit this supervisor expects) and, after `downMs`, starts it again with
   * the same spec on the port it had bound (fails if that port cannot be had again).
   */
  const restart = async (name: string, downMs = 0): Promise<Launched> => {
    const known = specs.get(name);
    if (!known) throw new Error(`restart: no service named ${name}`);
    for (const s of children.filter((c) => c.name === name)) {
      s.child.kill('SIGKILL');
      await s.exited;
      // Off the list before onChildExit looks (it waits 500 ms): this exit is not unexpected.
      children.splice(children.indexOf(s), 1);
    }
    await sleep(downMs);
    const port = Number(new URL(known.url).port);
    const again = await launch({ ...known.spec, preferredPort: port });
    if (again.url !== known.url)
      throw new Error(`restart: ${name} came back on ${again.url}, not ${known.url}`);
    return again;
  };
  return { logsDir, launch, restart, stopAll, step };
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
  if (isAlive(pid))
    fail('NOT_STOPPED', `the network (pid ${pid}) did not stop in 30 s`, { fix: `kill ${pid}` });
  rmSync(pidFile, { force: true });
  process.stdout.write(`${green('stopped')} the network (pid ${pid}).\n`);
}

/** The `up` flags the background process gets: every one the caller gave, except --detach. */
export function detachedArgs(options: UpOptions): string[] {
  return [
    'up',
    '--routers',
    String(options.routers ?? 1),
    ...(options.model !== undefined ? ['--model', options.model] : []),
    ...(options.firstRequest === false ? ['--no-first-request'] : []),
  ];
}

function detach(dir: string, options: UpOptions): void {
  const log = openSync(resolve(dir, 'logs-up.log'), 'a');
  const child = spawn(
    process.execPath,
    ['--import', tsxImport(), resolve(REPO_ROOT, 'tools/cli/src/main.ts'), ...detachedArgs(options)],
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

export interface ModelChoice {
  id: string;
  demo: boolean;
  label: string;
  env: Record<string, string>;
}

export async function resolveModel(flag: string | undefined, dir: string): Promise<ModelChoice> {
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

/** Devnet only: tops the demo key's tab up from the settlement faucet (a real BOLT11, paid internally). */
export async function fundFromFaucet(routerUrl: string, apiKey: string): Promise<number> {
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

function printSummary(devnet: Devnet, elapsedMs: number, balanceMsat: number, agentMsat: number): void {
  const line = (k: string, v: string) => process.stdout.write(`  ${k.padEnd(10)} ${v}\n`);
  process.stdout.write(`\n${bold('fed-ai local network ready')} in ${(elapsedMs / 1000).toFixed(1)} s\n`);
  line('router', devnet.router_url);
  line('relay', devnet.relay_url);
  line('model', `${devnet.model}${devnet.model_is_demo ? yellow(' (demo: answers are noise)') : ''}`);
  for (const n of devnet.nodes) line(n.name, `${n.url}  ${dim(n.pubkey.slice(0, 16))}…`);
  line('api key', `${devnet.api_key}  (tab: ${balanceMsat} msat from the devnet faucet)`);
  if (devnet.settlement_url) line('settlement', devnet.settlement_url);
  if (devnet.wallet_fleet_url)
    line(
      'wallets',
      `${devnet.wallet_fleet_url}  (agent ${devnet.agent_wallet_id}: ${agentMsat} msat; its NWC URI is in the facts file)`,
    );
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

export interface LaunchSpec {
  service: ServiceName;
  name: string;
  /** The service's port variable; set to the preferred port, or 0 on the retry after PORT_IN_USE. */
  portVar: string;
  preferredPort: number;
  env: Record<string, string>;
  /** Where the service says who it is, and the key it must have (from its key file). */
  identity?: { path: '/v1/info' | '/v1/router'; pubkey: string };
  timeoutMs: number;
  /** Shown after the URL. */
  describe?: string;
  /** Printed every few seconds while waiting (model loading). */
  progress?: string;
}

interface Launched {
  url: string;
  pubkey?: string | undefined;
}

/**
 * Starts one service and returns the URL it reports in its ready file, once that URL is checked to
 * be this child's: the file names the child's pid, and where the service has a key, the key in the
 * file, the key the service has in its key file and the key the URL answers with must all agree.
 * A child that lost its port between its own check and its listen (PORT_IN_USE) is started once
 * more on port 0.
 */
export async function launchService(
  spec: LaunchSpec,
  ctx: {
    runDir: string;
    logsDir: string;
    children: SpawnedService[];
    onStarted: (s: SpawnedService) => Promise<void>;
  },
): Promise<Launched> {
  mkdirSync(ctx.runDir, { recursive: true, mode: 0o700 });
  const readyPath = resolve(ctx.runDir, `${spec.name}.ready.json`);
  for (const port of [spec.preferredPort, 0]) {
    rmSync(readyPath, { force: true });
    const child = spawnService(
      spec.service,
      spec.name,
      {
        ...spec.env,
        [spec.portVar]: String(port),
        FEDAI_READY_FILE: readyPath,
        FEDAI_PORT_FALLBACK: 'true',
      },
      resolve(ctx.logsDir, `${spec.name}.log`),
    );
    ctx.children.push(child);
    const outcome = await waitForReadyFile(readyPath, child, spec);
    if (outcome === 'port-in-use') {
      ctx.children.splice(ctx.children.indexOf(child), 1);
      process.stdout.write(
        `  ${dim(`${spec.name}: port ${port} was taken while it started; retrying on any free port`)}\n`,
      );
      continue;
    }
    const ready = outcome;
    void ctx.onStarted(child);
    if (spec.identity) {
      if (ready.pubkey !== spec.identity.pubkey)
        throw new Error(
          `SERVICE_IDENTITY_MISMATCH: ${spec.name} reported key ${ready.pubkey ?? '(none)'}, its key file holds ${spec.identity.pubkey}`,
        );
      const answered = await fetchJson(`${ready.url}${spec.identity.path}`);
      if (answered.pubkey !== ready.pubkey)
        throw new Error(
          `SERVICE_IDENTITY_MISMATCH: ${ready.url}${spec.identity.path} answers with key ${String(answered.pubkey)}, not ${spec.name}'s ${ready.pubkey}`,
        );
    }
    const boundPort = Number(new URL(ready.url).port);
    const notes = [
      ...(spec.describe ? [spec.describe] : []),
      ...(boundPort !== spec.preferredPort ? [yellow(`preferred port ${spec.preferredPort} is busy`)] : []),
    ];
    process.stdout.write(
      `${cyan('›')} ${spec.name} on ${ready.url}${notes.length ? ` (${notes.join('; ')})` : ''}\n`,
    );
    return { url: ready.url, pubkey: ready.pubkey };
  }
  throw new Error(`PORT_IN_USE: ${spec.name} could not bind any port`);
}

/** The service's own one-line start failure (runService prints it), for the supervisor's message. */
function failureLineOf(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.trim())
    .filter(Boolean);
  const line = lines.findLast((l) => l.includes('failed to start:')) ?? lines.at(-1);
  return line ? `: ${line.slice(0, 500)}` : '';
}

/** Waits for the child's ready file (its pid inside), or its exit, or the deadline. */
async function waitForReadyFile(
  path: string,
  child: SpawnedService,
  spec: LaunchSpec,
): Promise<ReadyFacts | 'port-in-use'> {
  const started = Date.now();
  let lastProgress = Date.now();
  let exitCode: number | null | undefined;
  void child.exited.then((code) => {
    exitCode = code;
  });
  while (Date.now() - started < spec.timeoutMs) {
    const ready = readReadyFile(path);
    if (ready) {
      if (ready.pid !== child.child.pid)
        throw new Error(
          `READY_FILE_INVALID: ${path} names pid ${ready.pid}, not ${spec.name}'s ${child.child.pid}`,
        );
      return ready;
    }
    if (exitCode !== undefined) {
      if (exitCode === EXIT_PORT_IN_USE) return 'port-in-use';
      throw new Error(
        `${spec.name} exited while starting (code ${exitCode})${failureLineOf(child.stderrTail())}`,
      );
    }
    if (spec.progress && Date.now() - lastProgress > 3000) {
      lastProgress = Date.now();
      process.stdout.write(
        `  ${dim(`${spec.progress}... ${Math.round((Date.now() - started) / 1000)} s`)}\n`,
      );
    }
    await sleep(100);
  }
  throw new Error(`${spec.name} did not report ready within ${Math.round(spec.timeoutMs / 1000)} s`);
}

async function fetchJson(url: string): Promise<Record<string, unknown>> {
  const response = await fetch(url, { signal: AbortSignal.timeout(5_000) });
  if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
  return (await response.json()) as Record<string, unknown>;
}

export async function waitFor(check: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const started = Date.now();
  while (Date.now() - started < timeoutMs) {
    if (await check().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`timed out after ${Math.round(timeoutMs / 1000)} s`);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
