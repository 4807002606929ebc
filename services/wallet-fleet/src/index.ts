export * from './config';
export * from './fleet';
export * from './payments';
export * from './policy';
export * from './wallet-fleet';
