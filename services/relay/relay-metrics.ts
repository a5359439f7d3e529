import { Counter, Histogram, Registry } from 'prom-client';

export interface RelayMetrics {
  readonly registry: Registry;
  /** Events written to Kafka and acknowledged (a republished event counts again). */
  readonly published: Counter;
  /** Events claimed but not published this time, by code; they stay pending and are retried. */
  readonly publishFailures: Counter<'code'>;
  /** Loop iterations that failed outside publishing (claim, mark sent), by code. */
  readonly loopErrors: Counter<'code'>;
  /** Rows per claimed batch. */
  readonly batchSize: Histogram;
  /** Producers discarded after a failed send and replaced by a new one (WARN_RELAY_PRODUCER_RESET). */
  readonly producerResets: Counter;
}

/**
 * The relay's counters, in the registry given (the process's /metrics one) or a new one.
 * Two relays in one process need two registries: metric names are unique per registry.
 */
export function createRelayMetrics(registry: Registry = new Registry()): RelayMetrics {
  const registers = [registry];
  return {
    registry,
    published: new Counter({
      name: 'erasure_relay_published_total',
      help: 'Outbox events published to Kafka and acknowledged by all in-sync replicas',
      registers,
    }),
    publishFailures: new Counter({
      name: 'erasure_relay_publish_failures_total',
      help: 'Outbox events claimed but not published (left pending for a retry), by error code',
      labelNames: ['code'],
      registers,
    }),
    loopErrors: new Counter({
      name: 'erasure_relay_loop_errors_total',
      help: 'Relay loop iterations that failed outside publishing, by error code',
      labelNames: ['code'],
      registers,
    }),
    batchSize: new Histogram({
      name: 'erasure_relay_batch_size',
      help: 'Rows per claimed outbox batch',
      buckets: [1, 10, 50, 100, 250, 500, 1000, 5000],
      registers,
    }),
    producerResets: new Counter({
      name: 'erasure_relay_producer_resets_total',
      help: 'Kafka producers discarded after a failed send and replaced (new producer id)',
      registers,
    }),
  };
}
