export * from './config';
export * from './db';
export * from './http';
export * from './metrics';
export * from './replay-store';
export * from './keyfile';
