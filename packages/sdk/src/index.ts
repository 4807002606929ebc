export {
  type DispatchId,
  dispatchId,
  isDispatchId,
  isNodeId,
  isPayerId,
  type NodeId,
  nodeId,
  type PayerId,
  payerId,
  type ReadSseOptions,
  readSseData,
  SseError,
} from '@fed-ai/protocol';
export * from './client';
export * from './errors';
export * from './receipt';
export type { FetchLike } from './transport';
