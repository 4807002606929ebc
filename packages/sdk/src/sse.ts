// Incremental Server-Sent Events reader: yields each event's `data` as soon as its blank line
// arrives. Comment lines (`: ...`) are skipped. Bounded: a single event over the limit is an error.

export async function* readSse(
  body: AsyncIterable<Uint8Array | string>,
  maxEventBytes: number,
): AsyncGenerator<string> {
  const decoder = new TextDecoder();
  let buffer = '';
  let data: string[] = [];
  for await (const chunk of body) {
    buffer += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    if (buffer.length > maxEventBytes) throw new Error('SSE event too large');
    let newline = buffer.indexOf('\n');
    while (newline !== -1) {
      const line = buffer.slice(0, newline).replace(/\r$/, '');
      buffer = buffer.slice(newline + 1);
      if (line === '') {
        if (data.length > 0) yield data.join('\n');
        data = [];
      } else if (line.startsWith('data:')) {
        data.push(line.slice(5).replace(/^ /, ''));
      }
      newline = buffer.indexOf('\n');
    }
  }
  if (data.length > 0) yield data.join('\n');
}

/** The receipt comment line some streams carry before `[DONE]`: `: x-fedai-receipt <base64url>`. */
export const SSE_RECEIPT_COMMENT = 'x-fedai-receipt';
