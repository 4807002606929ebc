// `fedai doctor`: finds what stops a local network from working, and says how to fix each thing.
import { existsSync, readdirSync, statSync } from 'node:fs';
import { createServer } from 'node:net';
import { resolve } from 'node:path';
import {
  CONFIG_SECTIONS,
  type ConfigSection,
  configFileSections,
  isProduction,
  keyFileProblem,
  layeredConfig,
  openDb,
  SAFE_START_VARIABLES,
  safeStartProblems,
} from '@fed-ai/kit';
import { createNip98Header } from '@fed-ai/protocol';
import { z } from 'zod';
import { dataDir, readDevnet } from '../devnet-file';
import { EXIT, green, printJson, red, yellow } from '../output';
import { readKeyFile } from './key-file';

interface Finding {
  check: string;
  ok: boolean;
  detail: string;
  fix?: string;
  /** The UPPER_SNAKE code of a safe-start problem (the one the service itself would stop with). */
  code?: string;
}

/** Services whose settings `fedai doctor` checks when not told: the relay has none worth a finding. */
const SERVICES: readonly ConfigSection[] = CONFIG_SECTIONS.filter((s) => s !== 'cli');
const DEFAULT_SERVICES = SERVICES.filter((s) => s !== 'lightning-devnet');

/**
 * The same fail-closed rules every service applies at start (kit's safe-start.ts), over the
 * settings each service would see here (environment, .env, fedai.toml), one finding per problem.
 */
function safeStartFindings(services: readonly ConfigSection[] | undefined): Finding[] {
  let chosen: readonly ConfigSection[];
  try {
    chosen = services ?? (configFileSections().filter((s) => s !== 'cli') as ConfigSection[]);
  } catch (error) {
    return [
      {
        check: 'config files',
        ok: false,
        detail: error instanceof Error ? error.message : String(error),
        fix: 'fix fedai.toml (or the file FEDAI_CONFIG names)',
      },
    ];
  }
  if (chosen.length === 0) chosen = DEFAULT_SERVICES;
  const findings: Finding[] = [];
  for (const service of chosen) {
    const check = `safe start ${service}`;
    let values: Record<string, string | undefined>;
    try {
      values = layeredConfig(service, SAFE_START_VARIABLES, { ignoreUnknownKeys: true }).values;
    } catch (error) {
      findings.push({
        check,
        ok: false,
        detail: error instanceof Error ? error.message : String(error),
        fix: 'fix fedai.toml (or the file FEDAI_CONFIG names)',
      });
      continue;
    }
    const problems = safeStartProblems(service, values);
    if (problems.length === 0)
      findings.push({
        check,
        ok: true,
        detail: `no unsafe settings (${isProduction(values) ? 'production' : 'development'} mode)`,
      });
    for (const p of problems)
      findings.push({ check, ok: false, code: p.code, detail: `${p.code}: ${p.message}`, fix: p.fix });
  }
  return findings;
}

async function runDoctor(
  options: { ports?: number[]; dir?: string; services?: readonly ConfigSection[] } = {},
): Promise<Finding[]> {
  const dir = options.dir ?? dataDir();
  const findings: Finding[] = [];
  const add = (f: Finding) => findings.push(f);

  const major = Number(process.versions.node.split('.')[0]);
  add({
    check: 'node version',
    ok: major >= 20,
    detail: `Node ${process.versions.node}`,
    ...(major >= 20 ? {} : { fix: 'install Node 20 or newer' }),
  });

  const devnet = readDevnet(dir);
  const ports = options.ports ?? [7447, 7200, 7000, 7101, 7102];
  for (const port of ports) {
    const free = await portFree(port);
    const ours = devnet !== null && JSON.stringify(devnet).includes(`:${port}`);
    add({
      check: `port ${port}`,
      ok: free || ours,
      detail: free ? 'free' : ours ? 'in use by the running fed-ai network' : 'in use by another program',
      ...(free || ours
        ? {}
        : {
            fix: `stop what listens on ${port} (ss -ltnp 'sport = :${port}'), or let fedai up bind another one (it prints which)`,
          }),
    });
  }

  if (existsSync(dir)) {
    for (const name of readdirSync(dir).filter((f) => f.endsWith('.key'))) {
      const path = resolve(dir, name);
      const problem = keyFileProblem(path);
      add({
        check: `key file ${name}`,
        ok: !problem,
        detail: problem?.message ?? 'mode 0600, valid key',
        ...(problem ? { fix: problem.fix } : {}),
      });
    }
  }

  try {
    const db = await openDb(process.env.DATABASE_URL ? { url: process.env.DATABASE_URL } : {});
    await db.query('SELECT 1');
    await db.close();
    add({
      check: 'database',
      ok: true,
      detail: process.env.DATABASE_URL ? 'PostgreSQL reachable' : 'embedded PGlite works',
    });
  } catch (error) {
    add({
      check: 'database',
      ok: false,
      detail: error instanceof Error ? error.message : String(error),
      fix: process.env.DATABASE_URL
        ? 'check DATABASE_URL and that PostgreSQL runs'
        : 'reinstall dependencies: pnpm install',
    });
  }

  if (devnet) {
    const relayHttp = devnet.relay_url.replace(/^ws/, 'http');
    for (const [name, url] of [
      ['router', `${devnet.router_url}/ready`],
      ['relay', `${relayHttp}/health`],
    ] as const) {
      const reachable = await fetch(url, { signal: AbortSignal.timeout(1500) })
        .then((r) => r.ok)
        .catch(() => false);
      add({
        check: `${name} reachable`,
        ok: reachable,
        detail: reachable ? url : `no answer from ${url}`,
        ...(reachable ? {} : { fix: 'the network in data/devnet.json is not running: pnpm fedai up' }),
      });
    }
    if (devnet.settlement_url) add(await backendFinding(devnet.settlement_url, resolve(dir, 'operator.key')));
    const dateHeader = await fetch(`${devnet.router_url}/health`, { signal: AbortSignal.timeout(1500) })
      .then((r) => r.headers.get('date'))
      .catch(() => null);
    if (dateHeader) {
      const skewS = Math.abs(Date.now() - Date.parse(dateHeader)) / 1000;
      add({
        check: 'clock skew',
        ok: skewS < 60,
        detail: `${skewS.toFixed(0)} s against the router`,
        ...(skewS < 60 ? {} : { fix: 'sync the clock (NTP): signed messages older than 120 s are refused' }),
      });
    }
  }

  const model = process.env.FEDAI_MODEL;
  if (model && !/^https?:\/\//.test(model) && !model.startsWith('hf:')) {
    const exists = existsSync(model) && statSync(model).isFile();
    add({
      check: 'model file',
      ok: exists,
      detail: exists ? model : `${model} not found`,
      ...(exists
        ? {}
        : { fix: 'set FEDAI_MODEL to an existing .gguf file, an hf: URI, or an OpenAI-compatible URL' }),
    });
  }
  findings.push(...safeStartFindings(options.services));
  return findings;
}

export async function doctor(flags: { json?: boolean; ports?: string; services?: string }): Promise<void> {
  const ports = flags.ports?.split(',').map((p) => Number(p.trim()));
  if (ports?.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) {
    process.stderr.write('--ports must be a comma-separated list of port numbers\n');
    process.exit(EXIT.usage);
  }
  const services = flags.services?.split(',').map((s) => s.trim());
  if (services?.some((s) => !(SERVICES as readonly string[]).includes(s))) {
    process.stderr.write(`--services must be a comma-separated list of ${SERVICES.join(', ')}\n`);
    process.exit(EXIT.usage);
  }
  const findings = await runDoctor({
    ...(ports ? { ports } : {}),
    ...(services ? { services: services as ConfigSection[] } : {}),
  });
  if (flags.json) printJson(findings);
  else {
    for (const f of findings) {
      process.stdout.write(`${f.ok ? green('ok  ') : red('FAIL')} ${f.check}: ${f.detail}\n`);
      if (f.fix) process.stdout.write(`     ${yellow('fix:')} ${f.fix}\n`);
    }
  }
  process.exitCode = findings.every((f) => f.ok) ? EXIT.ok : EXIT.problemsFound;
}

const backendAnswer = z.object({
  backend: z.string().max(32),
  reachable: z.boolean(),
  balance_msat: z.number().int().nonnegative().nullable(),
});

/** Settlement's Lightning backend (`GET /v1/backend`, NIP-98 by the operator key) in one finding. */
async function backendFinding(settlementUrl: string, keyPath: string): Promise<Finding> {
  const check = 'lightning backend';
  if (!existsSync(keyPath))
    return {
      check,
      ok: false,
      detail: `no operator key at ${keyPath} to ask settlement`,
      fix: 'pnpm fedai up writes data/operator.key',
    };
  let key: Uint8Array;
  try {
    key = readKeyFile(keyPath);
  } catch {
    return { check, ok: false, detail: `${keyPath} holds no valid key`, fix: 'see the key file check above' };
  }
  const url = `${settlementUrl.replace(/\/+$/, '')}/v1/backend`;
  let response: Response;
  try {
    response = await fetch(url, {
      headers: { authorization: createNip98Header(url, 'GET', undefined, key) },
      // The backend check asks the node or wallet: up to settlement's call timeout.
      signal: AbortSignal.timeout(15_000),
    });
  } catch {
    return {
      check,
      ok: false,
      detail: `no answer from ${url}`,
      fix: 'settlement is not running: pnpm fedai up',
    };
  }
  if (response.status === 401 || response.status === 403)
    return {
      check,
      ok: false,
      detail: `settlement refused the operator key (${response.status})`,
      fix: "add the operator key's pubkey to SETTLEMENT_OPERATOR_PUBKEYS",
    };
  const parsed = backendAnswer.safeParse(response.ok ? await response.json().catch(() => null) : null);
  if (!parsed.success)
    return {
      check,
      ok: false,
      detail: `settlement answered ${response.status} to ${url}`,
      fix: 'update settlement',
    };
  const { backend, reachable, balance_msat: balanceMsat } = parsed.data;
  if (!reachable)
    return {
      check,
      ok: false,
      detail: `${backend}: no answer to the balance check`,
      fix: `check that the ${backend} node or wallet runs and settlement's LIGHTNING_BACKEND settings (docs/lightning.md)`,
    };
  return {
    check,
    ok: true,
    detail:
      balanceMsat === null
        ? `${backend} (invoices settle between accounts of this network)`
        : `${backend}, balance ${balanceMsat} msat`,
  };
}

function portFree(port: number): Promise<boolean> {
  return new Promise((done) => {
    const server = createServer();
    server.once('error', () => done(false));
    server.listen(port, '127.0.0.1', () => server.close(() => done(true)));
  });
}
