export * from './books';
export * from './config';
export * from './ledger/index';
export * from './lightning/backend';
export * from './lightning/bolt11';
export * from './lightning/internal';
export * from './server';
export * from './settlement';
