/**
 * Composition root of the outbox relay: publishes the outbox rows that intake (and later
 * the task tracker) write in their transactions to Kafka, then marks them sent. Any number
 * of replicas may run against one database: rows are claimed with FOR UPDATE SKIP LOCKED
 * and a lease (claim-outbox-batch.ts). Delivery is at least once; consumers dedupe on eventId.
 */
import { hostname } from 'node:os';
import { Kafka, logLevel, Partitioners, type logCreator, type ProducerConfig } from 'kafkajs';
import type { Registry } from 'prom-client';
import type { BackoffPolicy } from '../shared/compute-backoff.ts';
import { createPool } from '../shared/db/create-pool.ts';
import { ConfigurationError } from '../shared/errors.ts';
import { createEventCodec } from '../shared/event-codec.ts';
import { collectInfraConfig, intSetting, type DatabaseTimeouts } from '../shared/infra-config.ts';
import { logLevelSetting } from '../shared/log-level-setting.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import { listenForOutbox } from '../shared/listen-for-outbox.ts';
import { createPartitionLookup } from '../../packages/partner-sdk/src/partition-lookup.ts';
import { createProducerHolder } from './producer-holder.ts';
import { createRelay } from './relay-loop.ts';
import { createRelayMetrics, type RelayMetrics } from './relay-metrics.ts';

export interface RelayConfig {
  readonly databaseUrl: string;
  readonly databaseTimeouts: DatabaseTimeouts;
  readonly kafkaBrokers: readonly string[];
  readonly schemaRegistryUrl: string;
  readonly schemaRegistryTimeoutMs: number;
  /** RELAY_BATCH_SIZE: rows per claim and per Kafka send, 1 to 10 000. Default 500. */
  readonly batchSize: number;
  /**
   * RELAY_LEASE_MS: how long a claim holds, 100 to 3 600 000 ms. Default 30 000. Renewed
   * every third of it while the batch is published and marked (hold-lease.ts), for at most
   * LEASE_HOLD_MAX_LEASES leases; a relay that dies stops renewing and its rows are
   * republished by another relay after the lease: a duplicate, never a loss.
   */
  readonly leaseMs: number;
  /** RELAY_POLL_INTERVAL_MS: fallback poll when no notification comes, 10 to 600 000 ms. Default 1000. */
  readonly pollIntervalMs: number;
  /** RELAY_ID: this replica's lease owner name. Default `<hostname>-<pid>`. */
  readonly relayId: string;
  /** Per-row and loop backoff after failures (not configurable by environment). */
  readonly backoff: BackoffPolicy;
  readonly logLevel: string;
}

/** Reads and validates the relay's settings once; every problem is reported together. */
export function loadRelayConfig(env: NodeJS.ProcessEnv): RelayConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const batchSize = intSetting(env, problems, 'RELAY_BATCH_SIZE', 500, 1, 10_000);
  const leaseMs = intSetting(env, problems, 'RELAY_LEASE_MS', 30_000, 100, 3_600_000);
  const pollIntervalMs = intSetting(env, problems, 'RELAY_POLL_INTERVAL_MS', 1000, 10, 600_000);
  const relayId = env['RELAY_ID']?.trim() || `${hostname()}-${process.pid}`;
  if (!/^[\x21-\x7e]{1,200}$/.test(relayId))
    problems.push('RELAY_ID must be 1 to 200 printable ASCII characters without spaces');
  const logLevel = logLevelSetting(env, problems);
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  return Object.freeze({
    databaseUrl: infra.databaseUrl,
    databaseTimeouts: infra.databaseTimeouts,
    kafkaBrokers: infra.kafkaBrokers,
    schemaRegistryUrl: infra.schemaRegistryUrl,
    schemaRegistryTimeoutMs: infra.schemaRegistryTimeoutMs,
    batchSize,
    leaseMs,
    pollIntervalMs,
    relayId,
    backoff: Object.freeze({ initialMs: 500, maxMs: 60_000, multiplier: 2 }),
    logLevel,
  });
}

/**
 * One producer at a time per relay, replaced by a new one (a new producer id) after any
 * failed send (producer-holder.ts). Idempotent with one request in flight: kafkajs' retries can then
 * neither duplicate nor reorder records within a partition. Retries are bounded (kafkajs
 * warns this weakens exactly-once, which we never rely on) so a send fails inside the lease
 * and the relay's own backoff, persisted in the outbox, takes over. Topics are never
 * created by producing: a missing topic is a failed send, not a topic with the wrong config.
 */
export const RELAY_PRODUCER_CONFIG: Readonly<ProducerConfig> = Object.freeze({
  idempotent: true,
  maxInFlightRequests: 1,
  allowAutoTopicCreation: false,
  createPartitioner: Partitioners.DefaultPartitioner,
  retry: { retries: 3, initialRetryTime: 300, maxRetryTime: 3000 },
});

/** kafkajs' own log lines into ours (they name brokers and topics, never keys or values). */
function kafkaLogs(logger: Logger): logCreator {
  const levels: Record<number, string> = { 1: 'error', 2: 'warn', 4: 'info', 5: 'debug' };
  return () =>
    ({ level, log }) => {
      const { message, ...extra } = log;
      logger.log(levels[level] ?? 'info', String(message), {
        component: 'kafkajs',
        broker: extra['broker'],
        error: extra['error'],
      });
    };
}

export async function start(
  cfg: RelayConfig,
  logger: Logger = createLogger({ service: 'relay', level: cfg.logLevel }),
  opts: { registry?: Registry } = {},
): Promise<{ url: string; metrics: RelayMetrics; stop(): Promise<void> }> {
  const pool = createPool({
    connectionString: cfg.databaseUrl,
    max: 3,
    timeouts: cfg.databaseTimeouts,
    logger,
  });
  const kafka = new Kafka({
    clientId: `erasure-relay-${cfg.relayId}`,
    brokers: [...cfg.kafkaBrokers],
    requestTimeout: 5000,
    logLevel: logLevel.WARN,
    logCreator: kafkaLogs(logger),
  });
  const admin = kafka.admin({ retry: { retries: 2 } });
  const metrics = createRelayMetrics(opts.registry);
  const producer = createProducerHolder({
    create: () => kafka.producer(RELAY_PRODUCER_CONFIG),
    logger,
    metrics,
  });
  try {
    await producer.connect();
    await admin.connect();
  } catch (err) {
    await producer.disconnect().catch(() => undefined);
    await pool.end();
    throw err;
  }
  const relay = createRelay({
    pool,
    logger,
    metrics,
    publish: {
      producer,
      codec: createEventCodec(cfg.schemaRegistryUrl, { timeoutMs: cfg.schemaRegistryTimeoutMs }),
      partitions: createPartitionLookup(admin),
      ackTimeoutMs: 5000,
    },
    options: {
      owner: cfg.relayId,
      batchSize: cfg.batchSize,
      leaseMs: cfg.leaseMs,
      pollIntervalMs: cfg.pollIntervalMs,
      backoff: cfg.backoff,
    },
  });
  const listener = listenForOutbox({
    connectionString: cfg.databaseUrl,
    timeouts: cfg.databaseTimeouts,
    onNotify: () => relay.wake(),
    logger,
    listener: 'outbox relay',
    errorCode: 'ERR_RELAY_LISTEN',
    reconnect: { initialMs: 500, maxMs: 30_000, multiplier: 2 },
  });
  await listener.ready;
  relay.start();
  logger.info('outbox relay started', { relayId: cfg.relayId, listening: listener.listening() });

  return {
    url: 'relay',
    metrics,
    async stop() {
      // Reverse order of creation: no new wake-ups, finish the batch in flight, then close.
      await listener.stop();
      await relay.stop();
      await producer.disconnect();
      await admin.disconnect();
      await pool.end();
      logger.info('outbox relay stopped');
    },
  };
}
