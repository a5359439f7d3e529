/**
 * After a retriable failure: when to call again, or that the task has had its chances.
 * Pure; retry policy as data (STYLE), the waits from the one computeBackoff.
 */
import { computeBackoff, type BackoffPolicy } from '../shared/compute-backoff.ts';

export interface SyncRetryPolicy {
  /** Calls before the task fails (the first call included). */
  readonly maxAttempts: number;
  /** Milliseconds from the first call after which a retriable failure fails the task. */
  readonly maxAgeMs: number;
  /** Wait before the next call: full jitter, growing per attempt. */
  readonly backoff: BackoffPolicy;
}

export type RetryPlan =
  | { kind: 'retry'; delayMs: number }
  | { kind: 'give_up'; cause: 'max_attempts' | 'max_age'; message: string };

/**
 * @param attempt the attempt that just failed (1 for the first call).
 * @param ageMs milliseconds since the task's first call.
 * @param retryAfterMs the partner's Retry-After, already clamped; a floor for the wait.
 */
export function planRetry(
  attempt: number,
  ageMs: number,
  retryAfterMs: number | undefined,
  policy: SyncRetryPolicy,
  random: () => number,
): RetryPlan {
  if (attempt >= policy.maxAttempts)
    return { kind: 'give_up', cause: 'max_attempts', message: `gave up after ${attempt} attempts` };
  if (ageMs >= policy.maxAgeMs)
    return {
      kind: 'give_up',
      cause: 'max_age',
      message: `gave up after ${attempt} attempts: retries stop ${Math.round(policy.maxAgeMs / 1000)} s after the first call`,
    };
  // The partner's Retry-After is a floor, not a replacement: jitter still spreads the herd.
  const delayMs = Math.max(computeBackoff(attempt, policy.backoff, random), retryAfterMs ?? 0);
  return { kind: 'retry', delayMs };
}
