// Starts the local relay from the environment and stops it cleanly on SIGINT/SIGTERM.
//   RELAY_HOST (default 127.0.0.1), RELAY_PORT (default 7447, 0 = random),
//   RELAY_MAX_EVENTS, RELAY_MAX_CONNECTIONS, RELAY_MAX_CONNECTIONS_PER_CLIENT (optional bounds).
//   FEDAI_READY_FILE / FEDAI_PORT_FALLBACK (for supervisors such as `fedai up`): see kit's ready-file.ts.
import { createLogger, runService } from '@fed-ai/kit';
import { z } from 'zod';
import { startRelay } from './relay';

const EnvSchema = z.object({
  RELAY_HOST: z.string().min(1).default('127.0.0.1'),
  RELAY_PORT: z.coerce.number().int().min(0).max(65535).default(7447),
  RELAY_MAX_EVENTS: z.coerce.number().int().positive().optional(),
  RELAY_MAX_CONNECTIONS: z.coerce.number().int().positive().optional(),
  RELAY_MAX_CONNECTIONS_PER_CLIENT: z.coerce.number().int().positive().optional(),
});

await runService(
  'relay',
  EnvSchema,
  async (env) => {
    const logger = createLogger('relay');
    const relay = await startRelay({
      host: env.RELAY_HOST,
      port: env.RELAY_PORT,
      logger,
      ...(env.RELAY_MAX_EVENTS === undefined ? {} : { maxEvents: env.RELAY_MAX_EVENTS }),
      ...(env.RELAY_MAX_CONNECTIONS === undefined ? {} : { maxConnections: env.RELAY_MAX_CONNECTIONS }),
      ...(env.RELAY_MAX_CONNECTIONS_PER_CLIENT === undefined
        ? {}
        : { maxConnectionsPerClient: env.RELAY_MAX_CONNECTIONS_PER_CLIENT }),
    });
    logger.info({ url: relay.url, port: relay.port }, 'relay listening');
    return {
      url: relay.url,
      async close() {
        logger.info('relay stopping');
        await relay.close();
        logger.info('relay stopped');
      },
    };
  },
  { listen: { host: 'RELAY_HOST', port: 'RELAY_PORT' } },
);
