import {
  computeBackoff,
  retryWithBackoff,
  type RetryPolicy as BaseRetryPolicy,
} from '../../../services/shared/compute-backoff.ts';

/** In-process retry of a partner's handler: short blips only; anything longer ends in the dead-letter topic. */
export interface RetryPolicy extends BaseRetryPolicy {
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

// One backoff and retry implementation for the whole repository (full jitter; see its comment).
export { computeBackoff, retryWithBackoff };
