// Relay configuration from the environment (or .env / fedai.toml [relay]), validated at start.
//   RELAY_HOST (default 127.0.0.1), RELAY_PORT (default 7447, 0 = random),
//   RELAY_MAX_EVENTS, RELAY_MAX_CONNECTIONS, RELAY_MAX_CONNECTIONS_PER_CLIENT (optional bounds).
import { z } from 'zod';

export const relayConfigSchema = z.object({
  RELAY_HOST: z.string().min(1).default('127.0.0.1'),
  RELAY_PORT: z.coerce.number().int().min(0).max(65535).default(7447),
  RELAY_MAX_EVENTS: z.coerce.number().int().positive().optional(),
  RELAY_MAX_CONNECTIONS: z.coerce.number().int().positive().optional(),
  RELAY_MAX_CONNECTIONS_PER_CLIENT: z.coerce.number().int().positive().optional(),
});
