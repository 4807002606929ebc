// The node's own copy of every metering record it signed: one JSON line per signed envelope in a
// file per UTC day (`<dir>/metering-YYYY-MM-DD.jsonl`). It is what a node checks settlement's
// payout statements against (`fedai node statement verify`). Each line is written at once with one
// write(2) to a file opened for appending: in the page cache when the response leaves, so a killed
// process loses none (no fsync per request: a machine crash can lose the last lines, as before).
// Synchronously, because a write stream sent each line through libuv's thread pool: at one request
// at a time that was two thread wake-ups and three more system calls per request (issue 15).
// Files past the retention are removed at start. Records carry hashes and counts only: no prompt
// or output text.
import { closeSync, createReadStream, mkdirSync, openSync, readdirSync, rmSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import {
  type Envelope,
  eventHash,
  KIND,
  type MeteringRecord,
  meteringRecordSchema,
  verifyEventSignature,
} from '@fed-ai/protocol';

const FILE = /^metering-(\d{4}-\d{2}-\d{2})\.jsonl$/;
const MAX_LINE_CHARS = 64 * 1024;

const dayOf = (ms: number) => new Date(ms).toISOString().slice(0, 10);

export class MeteringLog {
  /** Today's file, open for appending (null before the first line and after close). */
  private fd: number | null = null;
  private day = '';

  constructor(
    private readonly dir: string,
    options: { retentionDays: number; nowMs?: number },
  ) {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const oldest = dayOf((options.nowMs ?? Date.now()) - options.retentionDays * 86_400_000);
    for (const name of readdirSync(dir)) {
      const day = FILE.exec(name)?.[1];
      if (day && day < oldest) rmSync(join(dir, name), { force: true });
    }
  }

  /**
   * Appends one signed metering envelope (a line in today's file). Throws when it cannot be
   * written (a full disk): the node then answers an error instead of a record it has no copy of.
   */
  append(envelope: Envelope, nowMs = Date.now()): void {
    const day = dayOf(nowMs);
    if (day !== this.day || this.fd === null) {
      this.closeFile();
      this.fd = openSync(join(this.dir, `metering-${day}.jsonl`), 'a', 0o600);
      this.day = day;
    }
    const line = Buffer.from(`${JSON.stringify(envelope)}\n`);
    // O_APPEND: every write lands at the end; a short write (a nearly full disk) goes on from there.
    for (let at = 0; at < line.length; ) {
      const wrote = writeSync(this.fd, line, at);
      if (wrote <= 0) throw new Error('metering log: the write made no progress');
      at += wrote;
    }
  }

  /** Closes today's file (every line is already written). */
  async close(): Promise<void> {
    this.closeFile();
  }

  private closeFile(): void {
    if (this.fd === null) return;
    const fd = this.fd;
    this.fd = null;
    closeSync(fd);
  }
}

/**
 * The records in `dir` whose envelope ids are in `wanted`, signed by `node` (a line that does not
 * verify, is not a metering record or is not the node's own is skipped). Reads line by line, so a
 * long log costs time, not memory.
 */
export async function readMeteringLog(
  dir: string,
  node: string,
  wanted: ReadonlySet<string>,
): Promise<Map<string, MeteringRecord>> {
  const found = new Map<string, MeteringRecord>();
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((n) => FILE.test(n))
      .sort();
  } catch {
    return found;
  }
  for (const name of names) {
    const lines = createInterface({ input: createReadStream(join(dir, name), 'utf8'), crlfDelay: Infinity });
    for await (const line of lines) {
      if (line.length > MAX_LINE_CHARS) continue;
      const record = ownRecord(line, node, wanted);
      if (record) found.set(record.id, record.record);
    }
  }
  return found;
}

function ownRecord(
  line: string,
  node: string,
  wanted: ReadonlySet<string>,
): { id: string; record: MeteringRecord } | null {
  let envelope: Envelope;
  try {
    envelope = JSON.parse(line) as Envelope;
  } catch {
    return null;
  }
  if (typeof envelope?.id !== 'string' || !wanted.has(envelope.id)) return null;
  if (envelope.kind !== KIND.meteringRecord || envelope.pubkey !== node) return null;
  if (eventHash(envelope) !== envelope.id || !verifyEventSignature({ ...envelope })) return null;
  try {
    return { id: envelope.id, record: meteringRecordSchema.parse(JSON.parse(envelope.content)) };
  } catch {
    return null;
  }
}
