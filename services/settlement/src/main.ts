// Entry point: `fedai settlement start` or `node --import tsx services/settlement/src/main.ts`.
import { runService } from '@fed-ai/kit';
import { settlementConfigSchema } from './config';
import { startSettlement } from './settlement';

await runService('settlement', settlementConfigSchema, startSettlement);
