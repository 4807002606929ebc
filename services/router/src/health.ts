// Per-node health: moving averages of what we measured and a circuit breaker (pure; time is an
// argument). Like LiteLLM's cooldowns: open after N consecutive failures or a high failure rate,
// stay open for a cooldown that doubles on each re-open, then allow ONE trial request.

export interface HealthConfig {
  allowedFailures: number;
  cooldownMs: number;
  maxCooldownMs: number;
  failureRateThreshold: number;
  minRequestsForRate: number;
  windowSize: number;
  ewmaAlpha: number;
  /** A half-open trial not resolved within this time (a lost outcome) no longer blocks the next. */
  trialTimeoutMs: number;
}

export const DEFAULT_HEALTH_CONFIG: HealthConfig = {
  allowedFailures: 3,
  cooldownMs: 10_000,
  maxCooldownMs: 300_000,
  failureRateThreshold: 0.5,
  minRequestsForRate: 10,
  windowSize: 50,
  ewmaAlpha: 0.2,
  trialTimeoutMs: 600_000,
};

export type BreakerState = 'closed' | 'open' | 'half_open';

export interface HealthSnapshot {
  state: BreakerState;
  successRate: number;
  ttftMs?: number | undefined;
  tokensPerS?: number | undefined;
  latencyMs?: number | undefined;
  consecutiveFailures: number;
  openUntilMs?: number | undefined;
}

export class NodeHealth {
  private state: BreakerState = 'closed';
  private openUntilMs = 0;
  private nextCooldownMs: number;
  private consecutiveFailures = 0;
  private trialInFlight = false;
  /** When the half-open trial started: a trial never resolved within trialTimeoutMs is void. */
  private trialStartedMs = 0;
  private readonly outcomes: boolean[] = [];
  private ttftMs: number | undefined;
  private tokensPerS: number | undefined;
  private latencyMs: number | undefined;

  constructor(
    private readonly config: HealthConfig = DEFAULT_HEALTH_CONFIG,
    _nowMs = 0,
  ) {
    this.nextCooldownMs = config.cooldownMs;
  }

  private ewma(old: number | undefined, sample: number): number {
    return old === undefined ? sample : old + this.config.ewmaAlpha * (sample - old);
  }

  private remember(ok: boolean): void {
    this.outcomes.push(ok);
    if (this.outcomes.length > this.config.windowSize) this.outcomes.shift();
  }

  recordSuccess(_nowMs: number, sample: { ttftMs?: number; tokensPerS?: number; latencyMs?: number }): void {
    this.remember(true);
    this.consecutiveFailures = 0;
    if (sample.ttftMs !== undefined) this.ttftMs = this.ewma(this.ttftMs, sample.ttftMs);
    if (sample.tokensPerS !== undefined && sample.tokensPerS > 0)
      this.tokensPerS = this.ewma(this.tokensPerS, sample.tokensPerS);
    if (sample.latencyMs !== undefined) this.latencyMs = this.ewma(this.latencyMs, sample.latencyMs);
    if (this.state !== 'closed') {
      this.state = 'closed';
      this.nextCooldownMs = this.config.cooldownMs;
    }
    this.trialInFlight = false;
  }

  recordFailure(nowMs: number, info: { retryAfterS?: number | undefined } = {}): void {
    this.remember(false);
    this.consecutiveFailures += 1;
    const failures = this.outcomes.filter((ok) => !ok).length;
    const rateTripped =
      this.outcomes.length >= this.config.minRequestsForRate &&
      failures / this.outcomes.length >= this.config.failureRateThreshold;
    const retryAfterMs = (info.retryAfterS ?? 0) * 1000;
    // Late failures of requests sent before the breaker opened do not extend the cooldown.
    if (this.state === 'open') {
      if (retryAfterMs > 0) this.openUntilMs = Math.max(this.openUntilMs, nowMs + retryAfterMs);
      this.trialInFlight = false;
      return;
    }
    if (
      this.state === 'half_open' ||
      this.consecutiveFailures >= this.config.allowedFailures ||
      rateTripped ||
      retryAfterMs > 0
    ) {
      this.open(nowMs, retryAfterMs);
    }
    this.trialInFlight = false;
  }

  private open(nowMs: number, atLeastMs: number): void {
    const cooldown = Math.max(this.nextCooldownMs, atLeastMs);
    this.state = 'open';
    this.openUntilMs = nowMs + cooldown;
    // Backoff doubles for each re-open without a success in between; a success resets it.
    this.nextCooldownMs = Math.min(this.config.maxCooldownMs, this.nextCooldownMs * 2);
  }

  /** Whether a request may go to this node now. In half-open, only one trial at a time. */
  available(nowMs: number): boolean {
    if (this.state === 'closed') return true;
    if (this.state === 'open') {
      if (nowMs < this.openUntilMs) return false;
      this.state = 'half_open';
      this.trialInFlight = false;
    }
    if (this.trialInFlight && nowMs - this.trialStartedMs < this.config.trialTimeoutMs) return false;
    this.trialInFlight = true;
    this.trialStartedMs = nowMs;
    return true;
  }

  /**
   * A request ended with no verdict on the node (the client cancelled, or the client's own request
   * was refused): the half-open trial, if this was it, is given back for the next request.
   */
  releaseTrial(): void {
    this.trialInFlight = false;
  }

  /** Read-only check (does not claim the half-open trial). */
  wouldAccept(nowMs: number): boolean {
    if (this.state === 'closed') return true;
    if (this.state === 'open') return nowMs >= this.openUntilMs;
    return !this.trialInFlight || nowMs - this.trialStartedMs >= this.config.trialTimeoutMs;
  }

  snapshot(): HealthSnapshot {
    const ok = this.outcomes.filter(Boolean).length;
    return {
      state: this.state,
      successRate: this.outcomes.length === 0 ? 1 : ok / this.outcomes.length,
      ttftMs: this.ttftMs,
      tokensPerS: this.tokensPerS,
      latencyMs: this.latencyMs,
      consecutiveFailures: this.consecutiveFailures,
      openUntilMs: this.state === 'open' ? this.openUntilMs : undefined,
    };
  }
}

export function isHeartbeatFresh(lastSeenMs: number, nowMs: number, ttlMs: number): boolean {
  return nowMs - lastSeenMs <= ttlMs;
}
