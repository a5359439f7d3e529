import { computeBackoff, type BackoffPolicy } from '../../../services/shared/compute-backoff.ts';

/** In-process retry of a partner's handler: short blips only; anything longer ends in the dead-letter topic. */
export interface RetryPolicy extends BackoffPolicy {
  /** Total tries, the first included (so 1 means no retry). Default 5. */
  readonly attempts: number;
  /** Ceiling of the first wait, in milliseconds. Default 200. */
  readonly initialMs: number;
  /** Ceiling of any one wait, in milliseconds. Default 10 000. */
  readonly maxMs: number;
  /** Growth of the ceiling per retry. Default 2. */
  readonly multiplier: number;
}

export const DEFAULT_RETRY: RetryPolicy = Object.freeze({
  attempts: 5,
  initialMs: 200,
  maxMs: 10_000,
  multiplier: 2,
});

// One backoff implementation for the whole repository (full jitter; see its comment).
export { computeBackoff };

export interface RetryOutcome<T> {
  readonly ok: boolean;
  readonly value?: T;
  readonly error?: unknown;
  /** Tries made, the successful one included. */
  readonly attempts: number;
}

export interface RetryDeps {
  readonly sleep: (ms: number) => Promise<void>;
  readonly random: () => number;
  /** Called between tries, e.g. the consumer's heartbeat so a slow retry does not cost the partition. */
  readonly between?: (attempt: number, error: unknown) => Promise<void> | void;
  /** Whether a failure is worth another try. Default: every failure is. */
  readonly retriable?: (error: unknown) => boolean;
}

/**
 * Runs `fn` up to `policy.attempts` times, stopping early at a failure that is not
 * `retriable`; never throws: the caller decides what exhaustion means.
 */
export async function retryWithBackoff<T>(
  fn: (attempt: number) => Promise<T>,
  policy: RetryPolicy,
  deps: RetryDeps,
): Promise<RetryOutcome<T>> {
  let error: unknown;
  for (let attempt = 1; attempt <= policy.attempts; attempt++) {
    try {
      return { ok: true, value: await fn(attempt), attempts: attempt };
    } catch (err) {
      error = err;
      if (deps.retriable && !deps.retriable(err)) return { ok: false, error, attempts: attempt };
      if (attempt === policy.attempts) break;
      await deps.between?.(attempt, err);
      await deps.sleep(computeBackoff(attempt, policy, deps.random));
    }
  }
  return { ok: false, error, attempts: policy.attempts };
}
