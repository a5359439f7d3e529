import { computeBackoff } from './compute-backoff.ts';
import type { Logger } from './logger.ts';

/** What `retrying` answers instead of a value once the service is stopping. */
export const STOPPED = Symbol('stopped');

export interface StoppableRetryOptions {
  readonly logger: Logger;
  /** Stable log code of each failed attempt (docs/errors.md). */
  readonly code: string;
  /** Longest wait between attempts, ms; waits start at 200 ms and double (full jitter). */
  readonly maxBackoffMs: number;
  readonly isStopping: () => boolean;
  /**
   * Attempts still made once stopping, default 1: a stop ends retrying at once. More lets a
   * stop's last work (a final upload) try a few times, with waits cut short by wakeAll().
   */
  readonly attemptsWhenStopping?: number;
  /** [0, 1) for the jitter; injected so tests are deterministic. Default Math.random. */
  readonly random?: () => number;
}

/**
 * Retries a call while its failure is retriable, with backoff, until it succeeds, fails for
 * good (rethrown) or the service stops (STOPPED). Waits are cut short by wakeAll(), which a
 * service's stop() calls so that it never waits out a backoff. Shared by the Kafka consumers
 * (ack consumer, exporter), whose retries must give way to a rebalance or a stop.
 *
 * An error thrown by `beforeWait` (a consumer's heartbeat: the group is rebalancing, the
 * coordinator moved) is rethrown as it is, so kafkajs still recognises it, and `interrupted`
 * answers true for it: it says nothing about the call, and a caller that took it for the
 * call's own failure would act on work it never did (an ack marked failed, its offset
 * committed).
 */
export function createStoppableRetry(opts: StoppableRetryOptions) {
  const random = opts.random ?? Math.random;
  const attemptsWhenStopping = opts.attemptsWhenStopping ?? 1;
  const sleepers = new Set<() => void>();
  const pause = (ms: number) =>
    new Promise<void>((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        sleepers.delete(done);
        resolve();
      }
      sleepers.add(done);
    });
  const stopNow = (attempt: number) => opts.isStopping() && attempt >= attemptsWhenStopping;
  const interruptions = new WeakSet<object>();
  const interrupted = (err: unknown) => typeof err === 'object' && err !== null && interruptions.has(err);

  async function retrying<T>(
    what: string,
    fn: () => Promise<T>,
    retriable: (err: unknown) => boolean,
    /** Runs before each wait (a consumer's heartbeat: a long outage must not cost the partition). */
    beforeWait?: () => Promise<void>,
  ): Promise<T | typeof STOPPED> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await fn();
      } catch (err) {
        if (!retriable(err)) throw err;
        const delayMs = computeBackoff(
          attempt,
          { initialMs: 200, maxMs: opts.maxBackoffMs, multiplier: 2 },
          random,
        );
        opts.logger.warn(`${what} failed; retrying`, {
          code: opts.code,
          attempt,
          retryInMs: delayMs,
          errorCode: (err as { code?: unknown }).code,
          error: err instanceof Error ? err.message : String(err),
        });
        if (stopNow(attempt)) return STOPPED;
        try {
          await beforeWait?.();
        } catch (interruption) {
          if (typeof interruption === 'object' && interruption !== null) interruptions.add(interruption);
          throw interruption;
        }
        await pause(delayMs);
        if (stopNow(attempt)) return STOPPED;
      }
    }
  }

  return {
    retrying,
    /** True for an error `retrying` rethrew from its beforeWait rather than from the call. */
    interrupted,
    /** Ends every wait in progress now (the call is then tried again, or STOPPED). */
    wakeAll() {
      for (const wake of [...sleepers]) wake();
    },
  };
}
