// Admission control: at most `maxConcurrent` generations run; up to `queueMax` more wait in FIFO
// order for at most `queueTimeoutMs`; beyond that a request is refused at once (HTTP 429).

export interface AdmissionOptions {
  maxConcurrent: number;
  queueMax: number;
  queueTimeoutMs: number;
}

export type Admitted =
  | { ok: true; release: () => void }
  | { ok: false; reason: 'QUEUE_FULL' | 'QUEUE_TIMEOUT' | 'CANCELLED' };

interface Waiter {
  grant: () => void;
  timer: NodeJS.Timeout;
}

export class Admission {
  private running = 0;
  private readonly waiters: Waiter[] = [];

  constructor(private readonly options: AdmissionOptions) {}

  get inFlight(): number {
    return this.running;
  }

  get queued(): number {
    return this.waiters.length;
  }

  get freeSlots(): number {
    return Math.max(0, this.options.maxConcurrent - this.running);
  }

  /** Seconds a refused caller should wait: roughly one slot's turn per queued request. */
  retryAfterS(): number {
    return Math.min(60, 1 + Math.ceil(this.waiters.length / this.options.maxConcurrent));
  }

  acquire(signal?: AbortSignal): Promise<Admitted> {
    if (this.running < this.options.maxConcurrent && this.waiters.length === 0) {
      this.running += 1;
      return Promise.resolve({ ok: true, release: this.releaser() });
    }
    if (this.waiters.length >= this.options.queueMax)
      return Promise.resolve({ ok: false, reason: 'QUEUE_FULL' });
    return new Promise<Admitted>((resolve) => {
      const waiter: Waiter = {
        grant: () => {
          clearTimeout(waiter.timer);
          signal?.removeEventListener('abort', onAbort);
          this.running += 1;
          resolve({ ok: true, release: this.releaser() });
        },
        timer: setTimeout(() => {
          this.remove(waiter);
          signal?.removeEventListener('abort', onAbort);
          resolve({ ok: false, reason: 'QUEUE_TIMEOUT' });
        }, this.options.queueTimeoutMs),
      };
      const onAbort = () => {
        clearTimeout(waiter.timer);
        this.remove(waiter);
        resolve({ ok: false, reason: 'CANCELLED' });
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiters.push(waiter);
    });
  }

  private remove(waiter: Waiter): void {
    const index = this.waiters.indexOf(waiter);
    if (index !== -1) this.waiters.splice(index, 1);
  }

  private releaser(): () => void {
    let released = false;
    return () => {
      if (released) return; // idempotent: error and finally paths may both release
      released = true;
      this.running -= 1;
      const next = this.waiters.shift();
      next?.grant();
    };
  }
}
