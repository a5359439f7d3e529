/**
 * A token bucket: `ratePerSecond` refill, `burst` capacity. Pure apart from the injected
 * clock, so tests drive time.
 */
export interface TokenBucket {
  /** Takes one token; when empty, says how long until one is available. */
  take(): { ok: true } | { ok: false; retryAfterMs: number };
}

export function createTokenBucket(opts: {
  ratePerSecond: number;
  burst: number;
  now: () => number;
}): TokenBucket {
  let tokens = opts.burst;
  let last = opts.now();
  return {
    take() {
      const t = opts.now();
      tokens = Math.min(opts.burst, tokens + ((t - last) / 1000) * opts.ratePerSecond);
      last = t;
      if (tokens >= 1) {
        tokens -= 1;
        return { ok: true };
      }
      return { ok: false, retryAfterMs: Math.ceil(((1 - tokens) / opts.ratePerSecond) * 1000) };
    },
  };
}
