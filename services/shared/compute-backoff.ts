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
