// Fenced code blocks of a markdown file, as written: the examples a newcomer copies.
// A block's info string is `<lang> [tags...]`; the tag `runnable` marks a shell block that
// `pnpm newcomer` runs against the local network (TypeScript/JavaScript blocks always run).

export interface CodeBlock {
  /** File and 1-based line of the opening fence, e.g. `README.md:42`. */
  where: string;
  lang: string;
  tags: string[];
  code: string;
  /** The nearest heading above the block (without the #s), '' when none. */
  heading: string;
}

const SCRIPT_LANGS = new Set(['ts', 'typescript', 'js', 'javascript', 'mjs']);

export function isScript(block: CodeBlock): boolean {
  return SCRIPT_LANGS.has(block.lang);
}

export function isTypeScript(block: CodeBlock): boolean {
  return block.lang === 'ts' || block.lang === 'typescript';
}

export function codeBlocks(markdown: string, file: string): CodeBlock[] {
  const blocks: CodeBlock[] = [];
  const lines = markdown.split(/\r?\n/);
  let heading = '';
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!;
    const headingMatch = /^#{1,6}\s+(.*)$/.exec(line);
    if (headingMatch) {
      heading = headingMatch[1]!.trim();
      continue;
    }
    const open = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(line);
    if (!open) continue;
    const [, indent, fence, info] = open;
    const words = info!.trim().split(/\s+/).filter(Boolean);
    const body: string[] = [];
    let j = i + 1;
    for (; j < lines.length; j++) {
      const candidate = lines[j]!;
      const trimmed = candidate.trim();
      if (trimmed.length >= fence!.length && trimmed === fence![0]!.repeat(trimmed.length)) break;
      body.push(candidate.startsWith(indent!) ? candidate.slice(indent!.length) : candidate);
    }
    if (j === lines.length) throw new Error(`${file}:${i + 1}: code fence never closed`);
    blocks.push({
      where: `${file}:${i + 1}`,
      lang: (words[0] ?? '').toLowerCase(),
      tags: words.slice(1),
      code: `${body.join('\n')}\n`,
      heading,
    });
    i = j;
  }
  return blocks;
}
