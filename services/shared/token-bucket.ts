/**
 * A token bucket: `ratePerSecond` refill, `burst` capacity. Pure apart from the injected
 * clock, so tests drive time.
 */
export interface TokenBucket {
  /** Takes one token; when empty, says how long until one is available. */
  take(): { ok: true } | { ok: false; retryAfterMs: number };
  /** Tokens available now (fractional), without taking any. */
  available(): number;
  /**
   * Changes the refill rate (and optionally the capacity) from now on: tokens earned so far
   * are counted at the old rate first, so a change never hands out a free burst.
   */
  setRate(ratePerSecond: number, burst?: number): void;
}

export function createTokenBucket(opts: {
  ratePerSecond: number;
  burst: number;
  now: () => number;
}): TokenBucket {
  let rate = opts.ratePerSecond;
  let burst = opts.burst;
  let tokens = burst;
  let last = opts.now();
  const refill = () => {
    const t = opts.now();
    tokens = Math.min(burst, tokens + ((t - last) / 1000) * rate);
    last = t;
  };
  return {
    take() {
      refill();
      if (tokens >= 1) {
        tokens -= 1;
        return { ok: true };
      }
      return { ok: false, retryAfterMs: Math.ceil(((1 - tokens) / rate) * 1000) };
    },
    available() {
      refill();
      return tokens;
    },
    setRate(ratePerSecond, newBurst) {
      refill();
      rate = ratePerSecond;
      if (newBurst !== undefined) {
        burst = newBurst;
        tokens = Math.min(tokens, burst);
      }
    },
  };
}
