#!/usr/bin/env node
// Entry point of the `fedai` command.
// - In a source checkout (src/ next to this folder): loads the TypeScript CLI through tsx.
// - In an installed package (npm i @fed-ai/cli: dist/ only): runs the built dist/main.js with plain node.
// Commands that start services (up, <service> start, models demo) run the services' TypeScript
// from a fed-ai checkout; an installed CLI that is not inside one says so and exits 2.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const packageDir = new URL('..', import.meta.url);
// The same folder tools/cli/src/services.ts calls REPO_ROOT (three levels above the module).
const repoRoot = fileURLToPath(new URL('../..', packageDir));
const NEEDS_REPO = new Set(['up', 'node', 'router', 'relay', 'settlement', 'simulate', 'soak', 'chaos']);

const args = process.argv.slice(2);
const words = args.filter((arg) => !arg.startsWith('-'));
const wantsHelp = args.includes('--help') || args.includes('-h') || words[0] === 'help';
const needsRepo = NEEDS_REPO.has(words[0] ?? '') || (words[0] === 'models' && words[1] === 'demo');
if (needsRepo && !wantsHelp && !existsSync(new URL('../../services', packageDir))) {
  process.stderr.write(
    `fedai ${words[0] === 'models' ? 'models demo' : words[0]}: needs a fed-ai source checkout (no services/ in ${repoRoot}); clone the repository and run \`pnpm fedai ${words.join(' ')}\` there\n`,
  );
  process.exit(2);
}

if (existsSync(new URL('src/main.ts', packageDir))) {
  const { register } = await import('tsx/esm/api');
  register();
  await import(new URL('src/main.ts', packageDir).href);
} else {
  await import(new URL('dist/main.js', packageDir).href);
}
