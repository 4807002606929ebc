// Starts the local relay (settings in config.ts) and stops it cleanly on SIGINT/SIGTERM.
//   FEDAI_READY_FILE / FEDAI_PORT_FALLBACK (for supervisors such as `fedai up`): see kit's ready-file.ts.
import { createLogger, runService } from '@fed-ai/kit';
import { relayConfigSchema } from './config';
import { startRelay } from './relay';

await runService(
  'relay',
  relayConfigSchema,
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
