export * from './filter';
export * from './memory-repository';
export * from './nip11';
export * from './relay';
