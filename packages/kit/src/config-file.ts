// Settings from files: `.env` (dotenv) and `fedai.toml` in the working directory, or the one file
// named by FEDAI_CONFIG. Precedence, highest first: flags > environment > .env > fedai.toml >
// defaults. fedai.toml has one table per service ([router], [node], [settlement], [relay], [cli])
// whose keys are the same variable names as the environment's; a key a service does not know is
// refused with one line naming it (a typo must not be silently ignored). A .env file is often
// shared, so there only the keys the service knows are taken.
import { existsSync, readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { parse as parseDotenv } from 'dotenv';
import { parse as parseToml } from 'smol-toml';
import { ConfigError } from './config';

export const CONFIG_SECTIONS = [
  'router',
  'node',
  'settlement',
  'relay',
  'cli',
  'wallet-fleet',
  'lightning-devnet',
] as const;
export type ConfigSection = (typeof CONFIG_SECTIONS)[number];

/** Variable -> value, and variable -> where the value came from (for error lines). */
export interface ConfigLayers {
  values: Record<string, string | undefined>;
  sources: Record<string, string>;
}

export interface ConfigLayerOptions {
  env?: NodeJS.ProcessEnv;
  /** Directory searched for `.env` and `fedai.toml` (default: the working directory). */
  cwd?: string;
  /** Command-line values (the CLI's flags): they beat everything. */
  flags?: Record<string, string | undefined>;
  /** Skip fedai.toml keys outside `keys` instead of refusing them (a reader of a few settings: doctor). */
  ignoreUnknownKeys?: boolean;
}

const MAX_CONFIG_FILE_BYTES = 1024 * 1024;

/**
 * The settings a service sees, merged from flags, environment, files and nothing else (defaults
 * come from the schema). Only `keys` are taken from files; the environment passes through whole.
 * Throws ConfigError with one line on an unreadable file, bad syntax or an unknown key.
 */
export function layeredConfig(
  section: ConfigSection,
  keys: readonly string[],
  options: ConfigLayerOptions = {},
): ConfigLayers {
  const env = options.env ?? process.env;
  const known = new Set(keys);
  const values: Record<string, string | undefined> = {};
  const sources: Record<string, string> = {};
  const put = (key: string, value: string | undefined, source: string) => {
    if (value === undefined || value === '') return;
    values[key] = value;
    sources[key] = source;
  };
  for (const file of configFiles(env, options.cwd ?? process.cwd())) {
    const fromFile =
      file.kind === 'toml'
        ? readToml(file.path, section, known, options.ignoreUnknownKeys ?? false)
        : readDotenv(file.path, known);
    for (const [key, value] of Object.entries(fromFile.values)) put(key, value, fromFile.source);
  }
  for (const [key, value] of Object.entries(env)) put(key, value, 'environment');
  for (const [key, value] of Object.entries(options.flags ?? {})) put(key, value, 'command line');
  return { values, sources };
}

/** The sections fedai.toml (or a FEDAI_CONFIG .toml) has: the services configured here. */
export function configFileSections(options: Omit<ConfigLayerOptions, 'flags'> = {}): ConfigSection[] {
  const sections = new Set<ConfigSection>();
  for (const file of configFiles(options.env ?? process.env, options.cwd ?? process.cwd())) {
    if (file.kind !== 'toml') continue;
    let doc: Record<string, unknown>;
    try {
      doc = parseToml(readText(file.path)) as Record<string, unknown>;
    } catch (error) {
      if (error instanceof ConfigError) throw error;
      throw new ConfigError(
        'FEDAI_CONFIG',
        `config error: ${basename(file.path)} is not valid TOML — fix the syntax`,
      );
    }
    for (const key of Object.keys(doc))
      if ((CONFIG_SECTIONS as readonly string[]).includes(key)) sections.add(key as ConfigSection);
  }
  return [...sections];
}

/** Lowest precedence first: fedai.toml, then .env (or only the FEDAI_CONFIG file). */
function configFiles(env: NodeJS.ProcessEnv, cwd: string): { path: string; kind: 'toml' | 'dotenv' }[] {
  const named = env.FEDAI_CONFIG;
  if (named) {
    const path = resolve(cwd, named);
    if (!existsSync(path))
      throw new ConfigError(
        'FEDAI_CONFIG',
        `config error: FEDAI_CONFIG names ${named}, which does not exist — fix the path or unset FEDAI_CONFIG`,
      );
    return [{ path, kind: path.endsWith('.toml') ? 'toml' : 'dotenv' }];
  }
  const files: { path: string; kind: 'toml' | 'dotenv' }[] = [];
  const toml = resolve(cwd, 'fedai.toml');
  if (existsSync(toml)) files.push({ path: toml, kind: 'toml' });
  const dotenv = resolve(cwd, '.env');
  if (existsSync(dotenv)) files.push({ path: dotenv, kind: 'dotenv' });
  return files;
}

function readText(path: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError(
      'FEDAI_CONFIG',
      `config error: cannot read ${basename(path)} (${(error as NodeJS.ErrnoException).code ?? 'unreadable'}) — fix its permissions or remove it`,
    );
  }
  if (text.length > MAX_CONFIG_FILE_BYTES)
    throw new ConfigError(
      'FEDAI_CONFIG',
      `config error: ${basename(path)} is over 1 MiB — is it the right file?`,
    );
  return text;
}

function readDotenv(path: string, known: ReadonlySet<string>) {
  const parsed = parseDotenv(readText(path));
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(parsed)) if (known.has(key)) values[key] = value;
  const name = basename(path);
  return { values, source: name };
}

function readToml(path: string, section: ConfigSection, known: ReadonlySet<string>, ignoreUnknown: boolean) {
  const name = basename(path);
  let doc: Record<string, unknown>;
  try {
    doc = parseToml(readText(path)) as Record<string, unknown>;
  } catch (error) {
    const line = (error as { line?: number }).line;
    throw new ConfigError(
      'FEDAI_CONFIG',
      `config error: ${name} is not valid TOML${line ? ` (line ${line})` : ''} — fix the syntax`,
    );
  }
  for (const [key, value] of Object.entries(doc)) {
    const isTable = typeof value === 'object' && value !== null && !Array.isArray(value);
    if (!isTable)
      throw new ConfigError(
        key,
        `config error: ${name}: ${key} is outside a section — put it under [${CONFIG_SECTIONS.join('], [')}]`,
      );
    if (!(CONFIG_SECTIONS as readonly string[]).includes(key))
      throw new ConfigError(
        key,
        `config error: ${name}: unknown section [${key}] — use [${CONFIG_SECTIONS.join('], [')}]`,
      );
  }
  const table = (doc[section] ?? {}) as Record<string, unknown>;
  const values: Record<string, string> = {};
  for (const [key, value] of Object.entries(table)) {
    if (!known.has(key) && ignoreUnknown) continue;
    if (!known.has(key))
      throw new ConfigError(
        key,
        `config error: ${name} [${section}] ${key} is not a ${section} setting — check the spelling or remove it`,
      );
    values[key] = tomlValueText(name, section, key, value);
  }
  return { values, source: `${name} [${section}]` };
}

/** Strings as they are; numbers and booleans as written; arrays of those joined with commas. */
function tomlValueText(file: string, section: string, key: string, value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint')
    return String(value);
  if (Array.isArray(value) && value.every((v) => ['string', 'number', 'bigint'].includes(typeof v)))
    return value.map(String).join(',');
  throw new ConfigError(
    key,
    `config error: ${file} [${section}] ${key} must be a string, number, boolean or list of strings`,
  );
}
