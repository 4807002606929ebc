#!/usr/bin/env node
// Global entry point (`npm i -g` / `pnpm link`): loads the TypeScript CLI through tsx.
import { register } from 'tsx/esm/api';

register();
await import('../src/main.ts');
