// Service configuration from the environment, validated with zod at start. A bad value stops the
// process with one line that names the variable, so an operator can fix it without reading code.
import type { z } from 'zod';

export class ConfigError extends Error {
  constructor(
    readonly variable: string,
    message: string,
  ) {
    super(message);
    this.name = 'ConfigError';
  }
}

/** Parses env against a schema whose keys are the variable names. Throws ConfigError on the first problem. */
export function parseConfig<S extends z.ZodObject>(
  schema: S,
  env: NodeJS.ProcessEnv = process.env,
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
    throw new ConfigError(variable, `config error: ${variable} is invalid (${shown}): ${issue.message}`);
  }
  return result.data;
}

/** For `main.ts` files: parse or print one line and exit 2. */
export function loadConfigOrExit<S extends z.ZodObject>(
  schema: S,
  env: NodeJS.ProcessEnv = process.env,
): z.infer<S> {
  try {
    return parseConfig(schema, env);
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
}
