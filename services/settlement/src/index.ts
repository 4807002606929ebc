// The ledger and the Lightning interface are packages of their own; re-exported for callers that
// already import them from here.
export * from '@fed-ai/ledger';
export * from '@fed-ai/lightning';
export * from './books';
export * from './config';
export * from './server';
export * from './settlement';
