export * from './client';
export * from './errors';
export * from './receipt';
export { readSse } from './sse';
