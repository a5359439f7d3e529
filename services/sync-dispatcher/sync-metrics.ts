import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { BreakerState } from './circuit-breaker.ts';

/** Label values are target names and fixed words, never identifiers or request ids. */
export interface SyncMetrics {
  readonly registry: Registry;
  /** HTTP calls made, by target and result class (2xx, 404, 4xx, 429, 5xx, timeout, network, ...). */
  readonly calls: Counter<'target' | 'class'>;
  /** Task outcomes written, by target: deleted, not_found, retrying, failed, released, handed_back, stale. */
  readonly outcomes: Counter<'target' | 'outcome'>;
  /** Call latency, by target (includes redirects followed). */
  readonly latency: Histogram<'target'>;
  /** 0 closed, 1 half-open, 2 open. */
  readonly breakerState: Gauge<'target'>;
  /** The adaptive rate this replica allows now, calls per second. */
  readonly rate: Gauge<'target'>;
  /** Tasks held by this replica (claimed, not yet recorded). */
  readonly inFlight: Gauge<'target'>;
  /** Dispatcher loop failures by code (claim, record, sweep). */
  readonly loopErrors: Counter<'code'>;
}

export const BREAKER_GAUGE: Record<BreakerState, number> = { closed: 0, half_open: 1, open: 2 };

/** In the registry given (the process's /metrics one) or a new one; names are unique per registry. */
export function createSyncMetrics(registry: Registry = new Registry()): SyncMetrics {
  const registers = [registry];
  return {
    registry,
    calls: new Counter({
      name: 'erasure_sync_calls_total',
      help: 'Calls to sync_http targets, by target and result class',
      labelNames: ['target', 'class'],
      registers,
    }),
    outcomes: new Counter({
      name: 'erasure_sync_task_outcomes_total',
      help: 'Sync task outcomes recorded, by target and outcome',
      labelNames: ['target', 'outcome'],
      registers,
    }),
    latency: new Histogram({
      name: 'erasure_sync_call_duration_seconds',
      help: 'Latency of calls to sync_http targets, by target',
      labelNames: ['target'],
      buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 120],
      registers,
    }),
    breakerState: new Gauge({
      name: 'erasure_sync_breaker_state',
      help: 'Circuit breaker per target: 0 closed, 1 half-open, 2 open',
      labelNames: ['target'],
      registers,
    }),
    rate: new Gauge({
      name: 'erasure_sync_rate_limit_per_second',
      help: "Adaptive call rate this replica allows per target (at most the target's rateLimitPerSecond share)",
      labelNames: ['target'],
      registers,
    }),
    inFlight: new Gauge({
      name: 'erasure_sync_in_flight',
      help: 'Sync tasks this replica holds (claimed, outcome not yet recorded), by target',
      labelNames: ['target'],
      registers,
    }),
    loopErrors: new Counter({
      name: 'erasure_sync_loop_errors_total',
      help: 'Sync dispatcher failures outside calls (claim, record, sweep), by code',
      labelNames: ['code'],
      registers,
    }),
  };
}
