// Group commit: operations that arrive while one batch is being written are written together in
// the next batch (one database transaction, or one request, for many callers). By default no timer:
// a lone operation starts at once, so batching adds no latency when there is no concurrency. Work
// off every caller's critical path may linger a few ms to gather more (`lingerMs`).
//
// If a whole batch fails (a database error, an invariant), each of its items is run again alone,
// so one poisonous item fails only its own caller.
import { FedAiError } from '@fed-ai/protocol';

export type ItemOutcome<O> = { ok: true; value: O } | { ok: false; error: unknown };

export interface GroupCommitOptions {
  /** Most items per batch. */
  maxBatch?: number;
  /** Most items waiting; past that, submit() refuses with OVERLOADED. */
  maxQueued?: number;
  /** How long a batch that is not full waits for more items before it is written (default 0). */
  lingerMs?: number;
  /**
   * Without a linger, a lone item still waits for the rest of this turn of the event loop
   * (setImmediate), so items that callers reach in the same turn (the ops of one request, say)
   * share its batch. Costs microseconds, not a timer.
   */
  gatherTurn?: boolean;
}

interface Waiting<I, O> {
  item: I;
  resolve: (value: O) => void;
  reject: (error: unknown) => void;
}

export class GroupCommit<I, O> {
  private queue: Waiting<I, O>[] = [];
  private running = false;
  private readonly maxBatch: number;
  private readonly maxQueued: number;
  private readonly lingerMs: number;
  private readonly gatherTurn: boolean;
  /** Ends the current linger early (the queue filled a batch). */
  private wake: (() => void) | null = null;

  /** `write` returns one outcome per item, in order, or throws for the whole batch. */
  constructor(
    private readonly write: (items: I[]) => Promise<ItemOutcome<O>[]>,
    options: GroupCommitOptions = {},
  ) {
    this.maxBatch = options.maxBatch ?? 256;
    this.maxQueued = options.maxQueued ?? 10_000;
    this.lingerMs = options.lingerMs ?? 0;
    this.gatherTurn = options.gatherTurn ?? false;
  }

  submit(item: I): Promise<O> {
    if (this.queue.length >= this.maxQueued)
      return Promise.reject(new FedAiError('OVERLOADED', 'Too many operations waiting to be written.'));
    return new Promise<O>((resolve, reject) => {
      this.queue.push({ item, resolve, reject });
      if (!this.running) void this.drain();
      else if (this.queue.length >= this.maxBatch) this.wake?.();
    });
  }

  private async drain(): Promise<void> {
    this.running = true;
    try {
      while (this.queue.length > 0) {
        if (this.queue.length < this.maxBatch) {
          if (this.lingerMs > 0) await this.linger();
          else if (this.gatherTurn) await new Promise<void>((done) => setImmediate(done));
        }
        const batch = this.queue.splice(0, this.maxBatch);
        await this.writeBatch(batch);
      }
    } finally {
      this.running = false;
    }
  }

  private linger(): Promise<void> {
    return new Promise<void>((resolve) => {
      const timer = setTimeout(done, this.lingerMs);
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.wake = () => {
        this.wake = null;
        done();
      };
    }).finally(() => {
      this.wake = null;
    });
  }

  private async writeBatch(batch: Waiting<I, O>[]): Promise<void> {
    let outcomes: ItemOutcome<O>[];
    try {
      outcomes = await this.write(batch.map((w) => w.item));
      if (outcomes.length !== batch.length) throw new Error('group commit: one outcome per item');
    } catch (error) {
      if (batch.length === 1) {
        batch[0]!.reject(error);
        return;
      }
      for (const waiting of batch) await this.writeBatch([waiting]);
      return;
    }
    outcomes.forEach((outcome, i) => {
      if (outcome.ok) batch[i]!.resolve(outcome.value);
      else batch[i]!.reject(outcome.error);
    });
  }
}
