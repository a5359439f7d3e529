/**
 * Composition root of the redelivery service: finds async_event tasks whose target has not
 * acknowledged within its ack SLA and sends that target alone its event again (a new outbox
 * row with `redelivery: {attempt, target}`), with a growing backoff; after
 * REDELIVERY_MAX_ATTEMPTS deliveries the task fails with a reason a person can act on.
 * Any number of replicas may run: tasks are claimed FOR UPDATE SKIP LOCKED.
 */
import type { BackoffPolicy } from '../shared/compute-backoff.ts';
import { createPool } from '../shared/db/create-pool.ts';
import { ConfigurationError } from '../shared/errors.ts';
import { collectInfraConfig, intSetting, type DatabaseTimeouts } from '../shared/infra-config.ts';
import { logLevelSetting } from '../shared/log-level-setting.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import { createRedeliveryLoop } from './redelivery-loop.ts';

export interface RedeliveryConfig {
  readonly databaseUrl: string;
  readonly databaseTimeouts: DatabaseTimeouts;
  /** REDELIVERY_INTERVAL_MS: pause between passes when idle, 10 to 600 000 ms. Default 5000. */
  readonly intervalMs: number;
  /**
   * REDELIVERY_MAX_ATTEMPTS: deliveries per target, the first publication included, 1 to 100.
   * Default 5: the first and four redeliveries; then the task fails.
   */
  readonly maxAttempts: number;
  /** REDELIVERY_BATCH_SIZE: tasks per pass (one transaction), 1 to 5000. Default 500. */
  readonly batchSize: number;
  /**
   * Extra wait after each redelivery, on top of the target's ack SLA (not configurable by
   * environment): up to 1 min after the first redelivery, doubling, capped at 6 h.
   */
  readonly backoff: BackoffPolicy;
  /** Wait after a failed pass (database down), growing with consecutive failures. */
  readonly loopBackoff: BackoffPolicy;
  readonly logLevel: string;
}

/** Reads and validates the service's settings once; every problem is reported together. */
export function loadRedeliveryConfig(env: NodeJS.ProcessEnv): RedeliveryConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const intervalMs = intSetting(env, problems, 'REDELIVERY_INTERVAL_MS', 5000, 10, 600_000);
  const maxAttempts = intSetting(env, problems, 'REDELIVERY_MAX_ATTEMPTS', 5, 1, 100);
  const batchSize = intSetting(env, problems, 'REDELIVERY_BATCH_SIZE', 500, 1, 5000);
  const logLevel = logLevelSetting(env, problems);
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  return Object.freeze({
    databaseUrl: infra.databaseUrl,
    databaseTimeouts: infra.databaseTimeouts,
    intervalMs,
    maxAttempts,
    batchSize,
    backoff: Object.freeze({ initialMs: 60_000, maxMs: 6 * 3_600_000, multiplier: 2 }),
    loopBackoff: Object.freeze({ initialMs: 1000, maxMs: 60_000, multiplier: 2 }),
    logLevel,
  });
}

export async function start(
  cfg: RedeliveryConfig,
  logger: Logger = createLogger({ service: 'redelivery', level: cfg.logLevel }),
): Promise<{ url: string; stop(): Promise<void> }> {
  const pool = createPool({
    connectionString: cfg.databaseUrl,
    max: 2,
    timeouts: cfg.databaseTimeouts,
    logger,
  });
  const loop = createRedeliveryLoop({
    pool,
    logger,
    options: {
      intervalMs: cfg.intervalMs,
      batchSize: cfg.batchSize,
      maxAttempts: cfg.maxAttempts,
      backoff: cfg.backoff,
      loopBackoff: cfg.loopBackoff,
    },
  });
  loop.start();
  logger.info('redelivery started', { intervalMs: cfg.intervalMs, maxAttempts: cfg.maxAttempts });
  return {
    url: 'redelivery',
    async stop() {
      // Reverse order of creation: finish the pass in flight, then close the pool.
      await loop.stop();
      await pool.end();
      logger.info('redelivery stopped');
    },
  };
}
