/**
 * Everything that protects one target's live traffic, in one place: a concurrency cap, a
 * token bucket at the adaptive rate, and the circuit breaker. The dispatcher asks it how
 * many tasks to claim (so it never leases work it cannot start soon), and reports every
 * call back. Pure apart from the injected clock.
 *
 * Limits are per dispatcher process: with N replicas the composition root divides each
 * target's registered rate and concurrency by SYNC_REPLICAS before they reach here.
 */
import { createTokenBucket } from '../shared/token-bucket.ts';
import { createAimdLimiter, type AimdPolicy } from './aimd-limiter.ts';
import {
  createCircuitBreaker,
  type BreakerPolicy,
  type BreakerState,
  type BreakerTicket,
} from './circuit-breaker.ts';
import type { CallHealth } from './classify-outcome.ts';

export interface GateLimits {
  /** Ceiling of the adaptive rate, calls per second (this replica's share). */
  readonly ratePerSecond: number;
  /** Calls in flight at once (this replica's share), at least 1. */
  readonly concurrency: number;
}

export interface CallTicket {
  readonly startedAt: number;
  readonly breaker: BreakerTicket;
}

export interface TargetGate {
  /** Tasks that may be claimed now: free slots, whole tokens and breaker permits, the least. */
  capacity(): number;
  /**
   * Milliseconds until capacity() may grow without a call finishing (token refill, cool-down);
   * Infinity when only a call finishing can make room.
   */
  nextReadyInMs(): number;
  /** A claimed task holds a slot from claim to recorded outcome. */
  occupy(): void;
  vacate(): void;
  /**
   * Starts one call: takes a token (and the breaker's probe permit if half-open), or says what
   * holds it back (`breaker` only for a first call) and how long to wait.
   */
  beginCall(
    first: boolean,
  ): { ok: true; ticket: CallTicket } | { ok: false; blockedBy: 'breaker' | 'rate'; waitMs: number };
  /** The call's outcome, for the breaker and the adaptive rate; `cancelled` when it was aborted. */
  endCall(ticket: CallTicket, health: CallHealth | 'cancelled'): void;
  setLimits(limits: GateLimits): void;
  snapshot(): { breaker: BreakerState; rate: number; inFlight: number };
}

/** Up to a tenth of a second of calls at once, never more than the concurrency allows. */
function burstFor(rate: number, concurrency: number): number {
  return Math.max(1, Math.min(concurrency, Math.ceil(rate / 10)));
}

export function createTargetGate(opts: {
  limits: GateLimits;
  breaker: BreakerPolicy;
  aimd?: AimdPolicy;
  now: () => number;
  onBreakerChange?: (from: BreakerState, to: BreakerState) => void;
  onRateChange?: (rate: number, why: string) => void;
}): TargetGate {
  const { now } = opts;
  let limits = opts.limits;
  let inFlight = 0;
  const breaker = createCircuitBreaker({ policy: opts.breaker, now, onChange: opts.onBreakerChange });
  const aimd = createAimdLimiter({
    maxRate: limits.ratePerSecond,
    policy: opts.aimd,
    now,
    onChange: opts.onRateChange,
  });
  let bucketRate = aimd.rate();
  const bucket = createTokenBucket({
    ratePerSecond: bucketRate,
    burst: burstFor(bucketRate, limits.concurrency),
    now,
  });

  // The bucket follows the limiter's rate whenever anyone looks.
  const syncRate = () => {
    const r = aimd.rate();
    if (r !== bucketRate) {
      bucketRate = r;
      bucket.setRate(r, burstFor(r, limits.concurrency));
    }
  };

  return {
    capacity() {
      syncRate();
      const slots = limits.concurrency - inFlight;
      return Math.max(0, Math.min(slots, Math.floor(bucket.available()), breaker.permits()));
    },
    nextReadyInMs() {
      syncRate();
      // Waiting on a call to finish (slot, or the half-open probe): its end wakes the loop.
      if (inFlight >= limits.concurrency) return Infinity;
      const state = breaker.state();
      if (state === 'open') return Math.max(1, breaker.msUntilProbe());
      if (state === 'half_open' && breaker.permits() === 0) return Infinity;
      const tokens = bucket.available();
      return tokens >= 1 ? 0 : Math.ceil(((1 - tokens) / bucketRate) * 1000);
    },
    occupy() {
      inFlight += 1;
    },
    vacate() {
      inFlight = Math.max(0, inFlight - 1);
    },
    beginCall(first) {
      syncRate();
      if (first && breaker.permits() === 0) return { ok: false, blockedBy: 'breaker', waitMs: 50 };
      const token = bucket.take();
      if (!token.ok) return { ok: false, blockedBy: 'rate', waitMs: token.retryAfterMs };
      return { ok: true, ticket: { startedAt: now(), breaker: first ? breaker.start() : { probe: false } } };
    },
    endCall(ticket, health) {
      if (health === 'cancelled') {
        breaker.record(ticket.breaker, 'ignore');
        return;
      }
      breaker.record(ticket.breaker, health.breaker);
      if (health.breaker !== 'ignore' || health.congested)
        aimd.record({
          startedAt: ticket.startedAt,
          latencyMs: now() - ticket.startedAt,
          congested: health.congested,
        });
    },
    setLimits(next) {
      limits = next;
      aimd.setMaxRate(next.ratePerSecond);
      bucketRate = aimd.rate();
      bucket.setRate(bucketRate, burstFor(bucketRate, next.concurrency));
    },
    snapshot() {
      syncRate();
      return { breaker: breaker.state(), rate: bucketRate, inFlight };
    },
  };
}
