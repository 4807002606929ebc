// Service configuration from the environment (and config files, see config-file.ts), validated
// with zod at start. A bad value stops the process with one line that names the variable and
// where its value came from, so an operator can fix it without reading code.
import { parsePublicKey } from '@fed-ai/protocol';
import { z } from 'zod';

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/**
 * Parses env against a schema whose keys are the variable names. Throws ConfigError on the first
 * problem. `sources` says where each value came from ("fedai.toml [router]", "environment").
 */
export function parseConfig<S extends z.ZodObject>(
  schema: S,
  env: Readonly<Record<string, string | undefined>> = process.env,
  sources: Readonly<Record<string, string>> = {},
): z.infer<S> {
  const input: Record<string, string | undefined> = {};
  for (const key of Object.keys(schema.shape)) {
    const value = env[key];
    input[key] = value === '' ? undefined : value;
  }
  const result = schema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const variable = String(issue.path[0] ?? '(config)');
    const shown = input[variable] === undefined ? 'unset' : JSON.stringify(input[variable]);
    const from = sources[variable] && sources[variable] !== 'environment' ? ` from ${sources[variable]}` : '';
    throw new ConfigError(
      variable,
      `config error: ${variable} is invalid (${shown}${from}): ${issue.message}`,
    );
  }
  return result.data;
}

/** For `main.ts` files: parse or print one line and exit 2. */
export function loadConfigOrExit<S extends z.ZodObject>(
  schema: S,
  env: Readonly<Record<string, string | undefined>> = process.env,
  sources: Readonly<Record<string, string>> = {},
): z.infer<S> {
  try {
    return parseConfig(schema, env, sources);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}

/** A comma-separated list (empty items dropped). */
export const commaList = z.string().transform((s) =>
  s
    .split(',')
    .map((x) => x.trim())
    .filter(Boolean),
);

/**
 * One public key, 64-hex or npub1…, normalised to lower-case hex. Hex is checked for form only
 * (as before npub was accepted: tests and fixtures use placeholder keys); an npub is decoded.
 */
export const publicKeyText = z.string().transform((s, ctx) => {
  const text = s.trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return text.toLowerCase();
  try {
    if (text.startsWith('npub1')) return parsePublicKey(text);
  } catch {
    // Falls through to the one message below.
  }
  ctx.addIssue({ code: 'custom', message: 'expected a 64-hex public key or an npub1… key' });
  return z.NEVER;
});

/** Comma-separated public keys, each 64-hex or npub1…, normalised to hex. */
export const publicKeyList = commaList.pipe(z.array(publicKeyText));

/** Comma-separated Nostr relay URLs (ws:// or wss://), at most 8. */
export const relayUrlList = commaList.pipe(
  z.array(z.string().regex(/^wss?:\/\/[^\s]+$/, 'relay URLs start with ws:// or wss://')).max(8),
);

/** Comma-separated http(s) URLs. */
export const httpUrlList = commaList.pipe(
  z.array(
    z
      .string()
      .url('expected http(s) URLs, comma-separated')
      .refine((u) => /^https?:\/\//i.test(u), 'expected http(s) URLs, comma-separated'),
  ),
);
