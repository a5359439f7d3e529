/**
 * Retry policy as data, with one implementation (graphile/worker, pg-boss): every loop
 * and every persisted retry in the pipeline asks this function how long to wait.
 */
export interface BackoffPolicy {
  /** Upper bound of the first wait, in milliseconds. */
  readonly initialMs: number;
  /** No wait exceeds this, in milliseconds, however many attempts failed. */
  readonly maxMs: number;
  /** Growth of the upper bound per attempt (2 doubles it). */
  readonly multiplier: number;
}

/**
 * Full jitter (AWS architecture blog, "Exponential backoff and jitter"): a uniform wait in
 * [0, min(maxMs, initialMs * multiplier^(attempt-1))). Spreading waits over the whole range,
 * rather than around the bound, keeps replicas that failed together from retrying together.
 *
 * @param attempt 1 for the first retry; values below 1 count as 1.
 * @param random a source in [0, 1), injected so tests are deterministic.
 * @returns whole milliseconds.
 */
export function computeBackoff(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const n = Number.isFinite(attempt) ? Math.max(1, Math.floor(attempt)) : 1;
  // Exponent capped: the bound saturates at maxMs long before, and 2^1024 is Infinity.
  const bound = Math.min(policy.maxMs, policy.initialMs * policy.multiplier ** Math.min(n - 1, 64));
  const r = Math.min(Math.max(random(), 0), 1);
  return Math.floor(r * Math.max(0, bound));
}

/** A backoff with a bound on tries. */
export interface RetryPolicy extends BackoffPolicy {
  /** Total tries, the first included (so 1 means no retry). */
  readonly attempts: number;
}

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
