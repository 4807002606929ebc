// The simulation's event queue: a binary min-heap on (time, insertion order), so events at the same
// virtual instant run in the order they were scheduled and a run is fully deterministic. Bounded:
// more pending events than `maxPending` is a runaway scenario, refused with SIM_QUEUE_FULL.
import { SimError } from './errors';

interface Entry {
  atMs: number;
  seq: number;
  run: () => void;
}

export class EventQueue {
  private readonly heap: Entry[] = [];
  private seq = 0;
  /** The virtual clock: the time of the event being run. */
  nowMs = 0;

  constructor(private readonly maxPending: number) {}

  get size(): number {
    return this.heap.length;
  }

  /** Schedules `run` at `atMs` (never in the past). */
  at(atMs: number, run: () => void): void {
    if (this.heap.length >= this.maxPending)
      throw new SimError('SIM_QUEUE_FULL', `more than ${this.maxPending} pending events`);
    const entry = { atMs: Math.max(atMs, this.nowMs), seq: this.seq++, run };
    this.heap.push(entry);
    this.up(this.heap.length - 1);
  }

  /** Runs events in order until none is left at or before `untilMs`; returns how many ran. */
  runUntil(untilMs: number): number {
    let ran = 0;
    while (this.heap.length > 0 && this.heap[0]!.atMs <= untilMs) {
      const entry = this.pop();
      this.nowMs = entry.atMs;
      entry.run();
      ran += 1;
    }
    this.nowMs = Math.max(this.nowMs, untilMs);
    return ran;
  }

  private less(a: Entry, b: Entry): boolean {
    return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
  }

  private pop(): Entry {
    const top = this.heap[0]!;
    const last = this.heap.pop()!;
    if (this.heap.length > 0) {
      this.heap[0] = last;
      this.down(0);
    }
    return top;
  }

  private up(i: number): void {
    const heap = this.heap;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.less(heap[i]!, heap[parent]!)) return;
      [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
      i = parent;
    }
  }

  private down(i: number): void {
    const heap = this.heap;
    for (;;) {
      const left = 2 * i + 1;
      const right = left + 1;
      let smallest = i;
      if (left < heap.length && this.less(heap[left]!, heap[smallest]!)) smallest = left;
      if (right < heap.length && this.less(heap[right]!, heap[smallest]!)) smallest = right;
      if (smallest === i) return;
      [heap[i], heap[smallest]] = [heap[smallest]!, heap[i]!];
      i = smallest;
    }
  }
}
