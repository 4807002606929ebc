export * from './admission';
export * from './config';
export * from './metering';
export * from './metering-log';
export * from './node';
export * from './runners/index';
export * from './server';
