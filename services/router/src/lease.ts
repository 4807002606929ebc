// A lease on one node for one dispatch attempt: the one place that owns the node's in-flight count
// and its breaker verdict. Every attempt ends in exactly one of succeed / fail / release, and
// whichever comes first wins, so no path (client cancel, client error, exception) can leave the
// in-flight count raised or a half-open trial unresolved.
import type { NodeRecord } from './registry';

export interface SuccessSample {
  ttftMs?: number;
  tokensPerS?: number;
  latencyMs?: number;
}

export class NodeLease {
  private ended = false;

  private constructor(
    readonly node: NodeRecord,
    private readonly now: () => number,
  ) {
    node.inFlight += 1;
  }

  /** A lease when the node's breaker lets a request through now (claims a half-open trial). */
  static acquire(node: NodeRecord, now: () => number = Date.now): NodeLease | null {
    if (!node.health.available(now())) return null;
    return new NodeLease(node, now);
  }

  /** The node answered and its metering verified. */
  succeed(sample: SuccessSample): void {
    if (this.end()) this.node.health.recordSuccess(this.now(), sample);
  }

  /** The node failed (its fault): counts against its breaker. */
  fail(info: { retryAfterS?: number | undefined } = {}): void {
    if (this.end()) this.node.health.recordFailure(this.now(), info);
  }

  /** No verdict (client cancelled, client-caused refusal): frees the slot and any trial. */
  release(): void {
    if (this.end()) this.node.health.releaseTrial();
  }

  private end(): boolean {
    if (this.ended) return false;
    this.ended = true;
    this.node.inFlight -= 1;
    return true;
  }
}
