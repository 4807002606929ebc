export * from '../demo-model';
export * from './embedded';
export * from './openai-http';
export * from './runner';
