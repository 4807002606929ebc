// Code blocks come out of the markdown exactly as written, with their language, tags and heading.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { codeBlocks, isScript, isTypeScript } from '../src/markdown';

const doc = [
  '# Title',
  '',
  '```',
  'pnpm install && pnpm fedai up',
  'pnpm test',
  '```',
  '## Apps',
  '````ts',
  "const fence = '```';",
  '````',
  '- item:',
  '  ```sh runnable',
  '  curl "$URL"',
  '  ```',
].join('\n');

test('blocks keep their text, language, tags, heading and line', () => {
  const blocks = codeBlocks(doc, 'X.md');
  assert.deepEqual(
    blocks.map((b) => [b.where, b.lang, b.tags, b.heading, b.code]),
    [
      ['X.md:3', '', [], 'Title', 'pnpm install && pnpm fedai up\npnpm test\n'],
      ['X.md:8', 'ts', [], 'Apps', "const fence = '```';\n"],
      ['X.md:12', 'sh', ['runnable'], 'Apps', 'curl "$URL"\n'],
    ],
  );
  assert.deepEqual(
    blocks.map((b) => [isScript(b), isTypeScript(b)]),
    [
      [false, false],
      [true, true],
      [false, false],
    ],
  );
});

test('an unclosed fence is an error, not a silently dropped example', () => {
  assert.throws(() => codeBlocks('text\n```ts\nconst a = 1;\n', 'Y.md'), /Y\.md:2: code fence never closed/);
});
