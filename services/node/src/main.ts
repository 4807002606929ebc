// Entry point: `fedai node start` or `node --import tsx services/node/src/main.ts`.
import { runService } from '@fed-ai/kit';
import { nodeConfigSchema } from './config';
import { startNode } from './node';

await runService('node', nodeConfigSchema, startNode);
