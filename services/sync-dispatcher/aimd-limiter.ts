/**
 * Adaptive rate per target (AIMD, as TCP congestion control and Netflix's concurrency
 * limits): the registered rate is a ceiling, not a target. Once per interval:
 *
 *   - if enough calls came back congested (429, 503, timeout), or their mean latency rose
 *     well above the target's healthy baseline: rate × decreaseFactor (multiplicative), or
 *     × (1 − congested share) when that cuts deeper (at most to a tenth per interval);
 *   - otherwise, if there were calls: rate + maxRate × increaseFraction (additive, slow);
 *   - never above maxRate, never below maxRate × minFraction.
 *
 * Calls that started before the last decrease are not counted afterwards: they were sent at
 * the old rate, and counting them again would cut the rate twice for one overload.
 * Pure apart from the injected clock.
 */
export interface AimdPolicy {
  /** How often the rate is reconsidered, in milliseconds. */
  readonly intervalMs: number;
  /** Multiplier on congestion, in (0, 1). */
  readonly decreaseFactor: number;
  /** Step up per healthy interval, as a share of the ceiling. */
  readonly increaseFraction: number;
  /** Floor, as a share of the ceiling. */
  readonly minFraction: number;
  /** Share of congested calls in an interval that counts as congestion. */
  readonly congestionRatio: number;
  /** Mean latency above baseline × this factor counts as congestion ... */
  readonly latencyFactor: number;
  /** ... if it is also at least this many milliseconds above the baseline (noise at low latency). */
  readonly latencyFloorMs: number;
}

export const DEFAULT_AIMD_POLICY: AimdPolicy = Object.freeze({
  intervalMs: 1000,
  decreaseFactor: 0.7,
  increaseFraction: 0.02,
  minFraction: 0.01,
  congestionRatio: 0.05,
  latencyFactor: 2,
  latencyFloorMs: 50,
});

/** Never cut below a tenth of the rate in one interval. */
const MAX_CUT = 0.1;

export interface AimdSample {
  /** When the call started (clock of the limiter). */
  readonly startedAt: number;
  readonly latencyMs: number;
  readonly congested: boolean;
}

export interface AimdLimiter {
  /** The rate to use now, in calls per second (reconsidered first if an interval has passed). */
  rate(): number;
  record(sample: AimdSample): void;
  /** The registered ceiling changed (PATCH of the target). */
  setMaxRate(maxRate: number): void;
  /** The healthy mean latency it compares against, or undefined before the first interval. */
  baselineMs(): number | undefined;
}

export function createAimdLimiter(opts: {
  maxRate: number;
  policy?: AimdPolicy;
  now: () => number;
  /** Told of each change of rate, for the gauge and debug logs. */
  onChange?: (rate: number, why: 'congestion' | 'latency' | 'healthy') => void;
}): AimdLimiter {
  const p = opts.policy ?? DEFAULT_AIMD_POLICY;
  let max = opts.maxRate;
  let rate = max;
  let intervalStart = opts.now();
  let lastDecreaseAt = -Infinity;
  let baseline: number | undefined;
  let calls = 0;
  let congested = 0;
  let latencySum = 0;

  const floor = () => Math.min(max, max * p.minFraction);
  const set = (next: number, why: 'congestion' | 'latency' | 'healthy') => {
    const clamped = Math.min(max, Math.max(floor(), next));
    if (clamped === rate) return;
    rate = clamped;
    opts.onChange?.(rate, why);
  };

  const decide = () => {
    const t = opts.now();
    if (t - intervalStart < p.intervalMs) return;
    intervalStart = t;
    const n = calls;
    const mean = n > 0 ? latencySum / n : 0;
    const c = congested;
    calls = congested = latencySum = 0;
    if (n === 0) return; // idle: no evidence either way
    const slow =
      baseline !== undefined && mean > Math.max(baseline * p.latencyFactor, baseline + p.latencyFloorMs);
    const share = c / n;
    if (share >= p.congestionRatio || slow) {
      lastDecreaseAt = t;
      // At least decreaseFactor; deeper when most calls were refused (80% refused: × 0.2),
      // so a ceiling far above what the target takes is left in one step, not five.
      const factor = Math.min(p.decreaseFactor, Math.max(MAX_CUT, 1 - share));
      set(rate * factor, slow && share < p.congestionRatio ? 'latency' : 'congestion');
      return;
    }
    // Healthy: the baseline follows a fall at once and a rise only slowly, so creeping
    // latency is still noticed as a rise.
    baseline = baseline === undefined || mean < baseline ? mean : baseline * 0.95 + mean * 0.05;
    set(rate + max * p.increaseFraction, 'healthy');
  };

  return {
    rate() {
      decide();
      return rate;
    },
    record(s) {
      decide();
      if (s.startedAt < lastDecreaseAt) return;
      calls += 1;
      latencySum += s.latencyMs;
      if (s.congested) congested += 1;
    },
    setMaxRate(maxRate) {
      max = maxRate;
      rate = Math.min(rate, max);
      if (rate < floor()) rate = floor();
    },
    baselineMs: () => baseline,
  };
}
