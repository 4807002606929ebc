// Node configuration from the environment (or .env / fedai.toml [node]), validated at start.
// Router keys may be given as 64-hex or npub1…; ROUTER_URLS must be http(s) URLs.
import { httpUrlList, publicKeyList } from '@fed-ai/kit';
import { z } from 'zod';

const bool = z.enum(['true', 'false', '1', '0']).transform((v) => v === 'true' || v === '1');
const port = z.coerce.number().int().min(0).max(65535);
const msatPer1k = z.coerce.number().int().min(0).max(1_000_000_000);

export const nodeConfigSchema = z
  .object({
    NODE_HOST: z.string().default('127.0.0.1'),
    NODE_PORT: port.default(7100),
    NODE_PUBLIC_URL: z.string().url().optional(),
    NODE_KEY: z.string().optional(),
    NODE_KEY_FILE: z.string().optional(),
    ROUTER_URLS: httpUrlList.default([]),
    /** Keys of ROUTER_URLS in the same order (else learned on first contact). */
    ROUTER_PUBKEYS: publicKeyList.default([]),
    RUNNER: z.enum(['embedded', 'openai']).default('embedded'),
    MODEL_PATH: z.string().optional(),
    MODEL_ID: z
      .string()
      .regex(/^[A-Za-z0-9_\-:./@+]{1,128}$/)
      .optional(),
    DEMO_MODEL: bool.default(false),
    OPENAI_BASE_URL: z.string().url().optional(),
    OPENAI_API_KEY: z.string().optional(),
    PRICE_INPUT_MSAT_PER_1K: msatPer1k.default(1000),
    PRICE_OUTPUT_MSAT_PER_1K: msatPer1k.default(2000),
    MAX_CONCURRENCY: z.coerce.number().int().min(1).max(256).default(2),
    QUEUE_MAX: z.coerce.number().int().min(0).max(10_000).default(8),
    QUEUE_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(30_000),
    MAX_OUTPUT_TOKENS: z.coerce.number().int().min(1).max(1_000_000).default(1024),
    CONTEXT_SIZE: z.coerce.number().int().min(128).max(1_000_000).default(2048),
    THREADS: z.coerce.number().int().min(1).max(256).default(1),
    DATA_DIR: z.string().default('./data/node'),
    /** Days the node keeps its own log of signed metering records (DATA_DIR/metering). */
    METERING_LOG_DAYS: z.coerce.number().int().min(1).max(3_650).default(400),
    DATABASE_URL: z.string().optional(),
    HEARTBEAT_INTERVAL_S: z.coerce.number().int().min(1).max(3600).default(10),
    REGION: z
      .string()
      .regex(/^[a-z0-9-]{2,32}$/)
      .optional(),
    RUNNER_FIRST_TOKEN_TIMEOUT_MS: z.coerce.number().int().min(100).max(600_000).default(60_000),
    RUNNER_TOTAL_TIMEOUT_MS: z.coerce.number().int().min(100).max(3_600_000).default(600_000),
  })
  .superRefine((c, ctx) => {
    if (c.RUNNER === 'embedded' && !c.MODEL_PATH && !c.DEMO_MODEL) {
      ctx.addIssue({
        code: 'custom',
        path: ['MODEL_PATH'],
        message: 'set MODEL_PATH (a .gguf file) or DEMO_MODEL=true',
      });
    }
    if (c.RUNNER === 'openai' && !c.OPENAI_BASE_URL) {
      ctx.addIssue({ code: 'custom', path: ['OPENAI_BASE_URL'], message: 'required when RUNNER=openai' });
    }
  });

export type NodeConfig = z.infer<typeof nodeConfigSchema>;
