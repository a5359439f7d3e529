/**
 * Composition root of the exporter (issue 6): privacy.erasure.requested.v1 → the offline
 * Parquet dataset at s3://$S3_BUCKET/$DATASET_PREFIX/dt=YYYY-MM-DD/. Scales out by replicas
 * in one consumer group; each file belongs to one partition, so replicas never write the
 * same object. Compaction and backfill are CLI jobs (`erasure dataset compact|backfill`).
 */
import { Kafka, logLevel } from 'kafkajs';
import { Registry } from 'prom-client';
import { createDatasetStore, createS3Client } from '../shared/dataset/dataset-store.ts';
import {
  exporterTopicSetting,
  loadDatasetSettings,
  type DatasetSettings,
} from '../shared/dataset/dataset-config.ts';
import { ConfigurationError } from '../shared/errors.ts';
import { boolSetting, collectInfraConfig, intSetting } from '../shared/infra-config.ts';
import { logLevelSetting } from '../shared/log-level-setting.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import { createRequestedDecoder } from './decode-requested.ts';
import { runExporter, type ExportLimits } from './export-loop.ts';
import { loadNativeHmac } from './hmac-sha256.ts';

export interface ExporterConfig {
  readonly kafkaBrokers: readonly string[];
  readonly schemaRegistryUrl: string;
  readonly schemaRegistryTimeoutMs: number;
  /** Bucket, prefix, HMAC key and S3 connection (DATASET_PREFIX, DATASET_HMAC_KEY, S3_*, AWS_*). */
  readonly dataset: DatasetSettings;
  /** EXPORTER_GROUP: Kafka consumer group, default 'erasure-exporter'. */
  readonly groupId: string;
  /** EXPORTER_TOPIC: default privacy.erasure.requested.v1 (the contract); benchmarks use their own. */
  readonly topic: string;
  /**
   * EXPORTER_MAX_FILE_ROWS (default 1,000,000 rows), EXPORTER_MAX_FILE_BYTES (default
   * 134,217,728 = 128 MiB encoded), EXPORTER_MAX_FILE_AGE_MS (default 300,000 = 5 min):
   * a file is rolled at whichever comes first. EXPORTER_MAX_BUFFERED_BYTES (default
   * 134,217,728 = 128 MiB): memory cap over all open files and files being uploaded.
   * EXPORTER_ROW_GROUP_ROWS (default 32,768). EXPORTER_MAX_CONCURRENT_UPLOADS (default 16:
   * age rolls close every partition's file at once, and 4 stalled reading behind them).
   */
  readonly limits: ExportLimits;
  /** EXPORTER_MAX_BACKOFF_MS: longest pause between retries of S3 or registry calls, default 10,000. */
  readonly maxBackoffMs: number;
  /**
   * EXPORTER_FROM_BEGINNING (default true): a new group starts at the oldest retained event,
   * as the invariant needs (every published event in the dataset); `false` starts at the end.
   * `true` or `false` in any case; anything else is a configuration error.
   */
  readonly fromBeginning: boolean;
  readonly logLevel: string;
}

const GROUP = /^[A-Za-z0-9._-]{1,200}$/;

export function loadExporterConfig(env: NodeJS.ProcessEnv): ExporterConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const dataset = loadDatasetSettings(env, problems);
  const int = (name: string, dflt: number, min: number, max: number) =>
    intSetting(env, problems, name, dflt, min, max);
  const groupId = env['EXPORTER_GROUP'] || 'erasure-exporter';
  if (!GROUP.test(groupId)) problems.push('EXPORTER_GROUP must be 1 to 200 of A-Z a-z 0-9 . _ -');
  const topic = exporterTopicSetting(env, problems);
  const limits: ExportLimits = Object.freeze({
    maxFileRows: int('EXPORTER_MAX_FILE_ROWS', 1_000_000, 1, 100_000_000),
    maxFileBytes: int('EXPORTER_MAX_FILE_BYTES', 128 * 1024 * 1024, 1024, 4 * 1024 * 1024 * 1024),
    maxFileAgeMs: int('EXPORTER_MAX_FILE_AGE_MS', 300_000, 100, 86_400_000),
    maxBufferedBytes: int(
      'EXPORTER_MAX_BUFFERED_BYTES',
      128 * 1024 * 1024,
      1024 * 1024,
      64 * 1024 * 1024 * 1024,
    ),
    rowGroupRows: int('EXPORTER_ROW_GROUP_ROWS', 32_768, 1, 10_000_000),
    caughtUpRollRows: int('EXPORTER_CAUGHT_UP_ROLL_ROWS', 32_768, 1, 100_000_000),
    maxConcurrentUploads: int('EXPORTER_MAX_CONCURRENT_UPLOADS', 16, 1, 64),
  });
  const maxBackoffMs = int('EXPORTER_MAX_BACKOFF_MS', 10_000, 100, 300_000);
  const logLevelName = logLevelSetting(env, problems);
  const fromBeginning = boolSetting(env, problems, 'EXPORTER_FROM_BEGINNING', true);
  if (problems.length > 0 || !infra || !dataset) throw new ConfigurationError(problems);
  return Object.freeze({
    kafkaBrokers: infra.kafkaBrokers,
    schemaRegistryUrl: infra.schemaRegistryUrl,
    schemaRegistryTimeoutMs: infra.schemaRegistryTimeoutMs,
    dataset,
    groupId,
    topic,
    limits,
    maxBackoffMs,
    fromBeginning,
    logLevel: logLevelName,
  });
}

export interface RunningExporter {
  /** Where the dataset goes: s3://bucket/prefix/. */
  url: string;
  stop(): Promise<void>;
}

export interface ExporterOptions {
  /** Where the exporter's metrics go (erasure_dataset_*); a private registry otherwise. */
  registry?: Registry;
  /** Test hook: runs after an object is durable and before its offsets are committed. */
  afterUpload?: (key: string) => Promise<void> | void;
  /** Test hook: runs before each record is appended; a throw there is a failed batch. */
  beforeAppend?: () => void;
  /** How often a file opened for a past day re-reads its manifest, ms (default 60,000). */
  manifestRecheckMs?: number;
}

/**
 * Starts the exporter. The topic and its schema must exist (the API or `npm run stack:up`
 * creates and registers them). stop() stops reading, writes the open files, commits their
 * offsets, then leaves the group: reverse order of creation. Nothing is committed for rows
 * not yet durable, so a stop that cannot upload (S3 down) loses nothing either.
 */
export async function start(
  cfg: ExporterConfig,
  logger: Logger = createLogger({ service: 'exporter', level: cfg.logLevel }),
  opts: ExporterOptions = {},
): Promise<RunningExporter> {
  if (cfg.dataset.hmacKeyIsDevDefault)
    logger.warn('DATASET_HMAC_KEY (or ERASURE_HMAC_KEY) is not set: using the development key', {
      code: 'WARN_DATASET_DEV_HMAC_KEY',
    });
  const native = loadNativeHmac();
  if ('reason' in native)
    logger.warn('native HMAC unavailable: identifier_hmac is computed in JS (same bytes, slower)', {
      code: 'WARN_EXPORTER_JS_HMAC',
      reason: native.reason,
    });
  const s3 = createS3Client(cfg.dataset.s3);
  const store = createDatasetStore(s3, cfg.dataset.bucket);
  const kafka = new Kafka({
    clientId: 'erasure-exporter',
    brokers: [...cfg.kafkaBrokers],
    // kafkajs' own lines (connection retries, rebalances) are routine here; what matters is
    // logged by the exporter (records expired, fetch and commit failures).
    logLevel: logLevel.NOTHING,
  });
  // kafkajs runs the group (membership, heartbeats, commits); its fetching is paused and the
  // exporter's fetcher reads (kafka-fetch/). Paused, kafkajs sleeps maxWaitTimeInMs between
  // heartbeat checks, and stop() waits out one such sleep.
  const consumer = kafka.consumer({ groupId: cfg.groupId, maxWaitTimeInMs: 500 });
  const admin = kafka.admin();
  let running: Awaited<ReturnType<typeof runExporter>>;
  try {
    await admin.connect();
    running = await runExporter({
      consumer,
      admin,
      groupId: cfg.groupId,
      fetch: {
        // Large fetches: the exporter reads in bulk and every record is small.
        maxBytes: 8 * 1024 * 1024,
        maxBytesPerPartition: 1024 * 1024,
        // A caught-up fetch waits at most this long on the broker; stop() waits for it.
        maxWaitMs: 500,
        requestTimeoutMs: 30_000,
      },
      decoder: createRequestedDecoder(cfg.schemaRegistryUrl, { timeoutMs: cfg.schemaRegistryTimeoutMs }),
      store,
      logger,
      metrics: opts.registry ?? new Registry(),
      topic: cfg.topic,
      prefix: cfg.dataset.prefix,
      hmacKey: cfg.dataset.hmacKey,
      limits: cfg.limits,
      fromBeginning: cfg.fromBeginning,
      maxBackoffMs: cfg.maxBackoffMs,
      afterUpload: opts.afterUpload,
      beforeAppend: opts.beforeAppend,
      manifestRecheckMs: opts.manifestRecheckMs,
    });
  } catch (err) {
    await consumer.disconnect().catch(() => undefined);
    await admin.disconnect().catch(() => undefined);
    s3.destroy();
    throw err;
  }
  logger.info('exporter started', { groupId: cfg.groupId, topic: cfg.topic });
  return {
    url: `s3://${cfg.dataset.bucket}/${cfg.dataset.prefix}/`,
    async stop() {
      await running.stop();
      await admin.disconnect();
      s3.destroy();
      logger.info('exporter stopped');
    },
  };
}
