/**
 * A circuit breaker per target (Nygard, "Release It!"): stops calling a target that is
 * failing, so an outage on their side does not become a flood of retries from ours, and
 * tasks keep their attempts for when it is back. Pure apart from the injected clock.
 *
 *   closed     calls flow; outcomes counted in a sliding window. When the window holds at
 *              least `minCalls` calls and the failure share reaches `failureRatio`: open.
 *   open       no calls for `cooldownMs`; due tasks stay unclaimed in the database (no
 *              attempt is spent on them), and one claimed just before it opened is handed
 *              back uncalled (run-task.ts). Then half-open.
 *   half_open  exactly one call (the probe). Success closes the breaker; failure opens it
 *              again for another cool-down; a result that says nothing (429, shutdown) lets
 *              another probe go.
 *
 * Only the probe's outcome counts while not closed: answers to calls that started before the
 * breaker opened describe the past and are ignored.
 */
export type BreakerState = 'closed' | 'open' | 'half_open';

export interface BreakerPolicy {
  /** Sliding window over which the failure share is measured, in milliseconds. */
  readonly windowMs: number;
  /** Fewest calls in the window before the breaker may open. */
  readonly minCalls: number;
  /** Failure share (0..1] at which it opens. */
  readonly failureRatio: number;
  /** How long it stays open before probing, in milliseconds. */
  readonly cooldownMs: number;
}

export interface BreakerTicket {
  readonly probe: boolean;
}

export interface CircuitBreaker {
  state(): BreakerState;
  /** Calls that may start now: Infinity when closed, 1 or 0 when half-open, 0 when open. */
  permits(): number;
  /** A call starts; in half-open it becomes the probe. Call only when permits() > 0. */
  start(): BreakerTicket;
  record(ticket: BreakerTicket, result: 'success' | 'failure' | 'ignore'): void;
  /** Milliseconds until an open breaker lets a probe through; 0 when not open. */
  msUntilProbe(): number;
}

const BUCKETS = 10;

export function createCircuitBreaker(opts: {
  policy: BreakerPolicy;
  now: () => number;
  /** Told of every state change, for the gauge and one log line. */
  onChange?: (from: BreakerState, to: BreakerState) => void;
}): CircuitBreaker {
  const { policy, now } = opts;
  const bucketMs = Math.max(1, Math.floor(policy.windowMs / BUCKETS));
  // Bucket i covers [start, start + bucketMs); old buckets are dropped as time passes.
  let buckets: { start: number; calls: number; failures: number }[] = [];
  let current: BreakerState = 'closed';
  let openedAt = 0;
  let probeInFlight = false;

  const move = (to: BreakerState) => {
    if (to === current) return;
    const from = current;
    current = to;
    if (to === 'open') openedAt = now();
    if (to !== 'closed') buckets = [];
    probeInFlight = false;
    opts.onChange?.(from, to);
  };

  const state = (): BreakerState => {
    if (current === 'open' && now() - openedAt >= policy.cooldownMs) move('half_open');
    return current;
  };

  const count = (failure: boolean) => {
    const t = now();
    const start = t - (t % bucketMs);
    buckets = buckets.filter((b) => b.start > t - policy.windowMs);
    let b = buckets.at(-1);
    if (!b || b.start !== start) {
      b = { start, calls: 0, failures: 0 };
      buckets.push(b);
    }
    b.calls += 1;
    if (failure) b.failures += 1;
    const calls = buckets.reduce((n, x) => n + x.calls, 0);
    const failures = buckets.reduce((n, x) => n + x.failures, 0);
    if (calls >= policy.minCalls && failures / calls >= policy.failureRatio) move('open');
  };

  return {
    state,
    permits() {
      const s = state();
      if (s === 'closed') return Infinity;
      if (s === 'half_open') return probeInFlight ? 0 : 1;
      return 0;
    },
    start() {
      if (state() === 'half_open' && !probeInFlight) {
        probeInFlight = true;
        return { probe: true };
      }
      return { probe: false };
    },
    record(ticket, result) {
      const s = state();
      if (ticket.probe) {
        if (s !== 'half_open') return;
        if (result === 'success') move('closed');
        else if (result === 'failure') move('open');
        else probeInFlight = false;
        return;
      }
      if (s !== 'closed' || result === 'ignore') return;
      count(result === 'failure');
    },
    msUntilProbe() {
      return state() === 'open' ? Math.max(0, openedAt + policy.cooldownMs - now()) : 0;
    },
  };
}
