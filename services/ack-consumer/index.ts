/**
 * Composition root of the ack consumer: partners' acknowledgements from Kafka applied to
 * their tasks (services/shared/apply-ack.ts). Scales out by replicas in one consumer group;
 * Kafka gives each replica its partitions.
 */
import { Kafka, logLevel } from 'kafkajs';
import { Registry } from 'prom-client';
import { ConfigurationError } from '../shared/errors.ts';
import { createEventCodec, TOPICS } from '../shared/event-codec.ts';
import { createPool } from '../shared/db/create-pool.ts';
import {
  boolSetting,
  collectInfraConfig,
  intSetting,
  type DatabaseTimeouts,
} from '../shared/infra-config.ts';
import { logLevelSetting } from '../shared/log-level-setting.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import { runAckConsumer } from './consume-acks.ts';

export interface AckConsumerConfig {
  readonly databaseUrl: string;
  readonly databaseTimeouts: DatabaseTimeouts;
  readonly kafkaBrokers: readonly string[];
  readonly schemaRegistryUrl: string;
  readonly schemaRegistryTimeoutMs: number;
  /** ACK_CONSUMER_GROUP: Kafka consumer group, default 'erasure-ack-consumer'. */
  readonly groupId: string;
  /** The acks topic; always privacy.erasure.acks.v1 (the contract's name). */
  readonly topic: string;
  /** ACK_CONSUMER_MAX_BACKOFF_MS: longest pause between retries of a failing call, default 10000. */
  readonly maxBackoffMs: number;
  /**
   * ACK_CONSUMER_FROM_BEGINNING (default true): a new group reads every retained ack, so a
   * first deployment misses none; `false` starts at the end (benchmarks, throwaway groups).
   * `true` or `false` in any case; anything else is a configuration error.
   */
  readonly fromBeginning: boolean;
  /** ACK_CONSUMER_BATCH_SIZE: most acks applied in one transaction, 1 to 5000. Default 500. */
  readonly batchSize: number;
  /** ACK_CONSUMER_CONCURRENCY: partitions worked on at once, 1 to 64. Default 3. */
  readonly concurrency: number;
  /**
   * ACK_CONSUMER_FETCH_MIN_BYTES (default 65536, 1 to 10 MiB) / ACK_CONSUMER_FETCH_MAX_WAIT_MS
   * (default 200, 10 to 5000): a fetch answers once this many bytes of acks are there or the
   * wait is over. Under load acks arrive in batches of a few hundred instead of a few each,
   * so each transaction applies more of them and the broker answers fewer fetches; when
   * quiet an ack waits at most the wait. Also bounds how late an offset commit is (commits
   * queue behind a waiting fetch on the coordinator's connection).
   */
  readonly fetchMinBytes: number;
  readonly fetchMaxWaitMs: number;
  readonly logLevel: string;
}

const GROUP = /^[A-Za-z0-9._-]{1,200}$/;

export function loadAckConsumerConfig(env: NodeJS.ProcessEnv): AckConsumerConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const groupId = env['ACK_CONSUMER_GROUP'] || 'erasure-ack-consumer';
  if (!GROUP.test(groupId)) problems.push('ACK_CONSUMER_GROUP must be 1 to 200 of A-Z a-z 0-9 . _ -');
  const maxBackoffMs = intSetting(env, problems, 'ACK_CONSUMER_MAX_BACKOFF_MS', 10_000, 100, 300_000);
  const batchSize = intSetting(env, problems, 'ACK_CONSUMER_BATCH_SIZE', 500, 1, 5000);
  const concurrency = intSetting(env, problems, 'ACK_CONSUMER_CONCURRENCY', 3, 1, 64);
  const fetchMinBytes = intSetting(env, problems, 'ACK_CONSUMER_FETCH_MIN_BYTES', 65_536, 1, 10_485_760);
  const fetchMaxWaitMs = intSetting(env, problems, 'ACK_CONSUMER_FETCH_MAX_WAIT_MS', 200, 10, 5000);
  const logLevel = logLevelSetting(env, problems);
  const fromBeginning = boolSetting(env, problems, 'ACK_CONSUMER_FROM_BEGINNING', true);
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  return Object.freeze({
    databaseUrl: infra.databaseUrl,
    databaseTimeouts: infra.databaseTimeouts,
    kafkaBrokers: infra.kafkaBrokers,
    schemaRegistryUrl: infra.schemaRegistryUrl,
    schemaRegistryTimeoutMs: infra.schemaRegistryTimeoutMs,
    groupId,
    topic: TOPICS.acks,
    maxBackoffMs,
    fromBeginning,
    batchSize,
    concurrency,
    fetchMinBytes,
    fetchMaxWaitMs,
    logLevel,
  });
}

export interface RunningAckConsumer {
  url: string;
  /** `erasure_acks_consumed_total{result}`; the process that runs the service decides where to expose it. */
  metrics: Registry;
  stop(): Promise<void>;
}

/**
 * Starts consuming. The topic and its schema must exist (the API or `npm run stack:up`
 * creates and registers them at start-up). Stop drains the batch in hand, commits offsets,
 * leaves the group, then ends the pool: reverse order of creation.
 */
export async function start(
  cfg: AckConsumerConfig,
  logger: Logger = createLogger({ service: 'ack-consumer', level: cfg.logLevel }),
  opts: { registry?: Registry } = {},
): Promise<RunningAckConsumer> {
  const pool = createPool({
    connectionString: cfg.databaseUrl,
    max: cfg.concurrency + 1,
    timeouts: cfg.databaseTimeouts,
    logger,
  });
  const metrics = opts.registry ?? new Registry();
  const kafka = new Kafka({
    clientId: 'erasure-ack-consumer',
    brokers: [...cfg.kafkaBrokers],
    logLevel: logLevel.NOTHING,
  });
  const consumer = kafka.consumer({
    groupId: cfg.groupId,
    minBytes: cfg.fetchMinBytes,
    maxWaitTimeInMs: cfg.fetchMaxWaitMs,
  });
  let running: Awaited<ReturnType<typeof runAckConsumer>>;
  try {
    running = await runAckConsumer({
      consumer,
      codec: createEventCodec(cfg.schemaRegistryUrl, { timeoutMs: cfg.schemaRegistryTimeoutMs }),
      pool,
      logger,
      metrics,
      topic: cfg.topic,
      maxBackoffMs: cfg.maxBackoffMs,
      fromBeginning: cfg.fromBeginning,
      batchSize: cfg.batchSize,
      concurrency: cfg.concurrency,
    });
  } catch (err) {
    await consumer.disconnect().catch(() => undefined);
    await pool.end().catch(() => undefined);
    throw err;
  }
  logger.info('ack consumer started', { groupId: cfg.groupId });
  return {
    url: 'ack-consumer',
    metrics,
    async stop() {
      await running.stop();
      await pool.end();
      logger.info('ack consumer stopped');
    },
  };
}
