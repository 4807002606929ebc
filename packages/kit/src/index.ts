export * from './config';
export * from './db';
export * from './http';
export * from './keyfile';
export * from './metrics';
export * from './pg-server';
export * from './replay-store';
export * from './service';
