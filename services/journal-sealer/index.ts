/**
 * Composition root of the journal sealer: chains journal entries written by the other
 * services (see services/shared/journal.ts). One sealer works at a time across replicas
 * (an advisory lock); more replicas only stand by.
 */
import { createPool } from '../shared/db/create-pool.ts';
import { ConfigurationError } from '../shared/errors.ts';
import { collectInfraConfig, intSetting, type DatabaseTimeouts } from '../shared/infra-config.ts';
import { startJournalSealer } from '../shared/journal.ts';
import { logLevelSetting } from '../shared/log-level-setting.ts';
import { createLogger, type Logger } from '../shared/logger.ts';

export interface SealerConfig {
  readonly databaseUrl: string;
  readonly databaseTimeouts: DatabaseTimeouts;
  /** JOURNAL_SEAL_INTERVAL_MS: pause between batches when idle, default 200. */
  readonly intervalMs: number;
  readonly logLevel: string;
}

export function loadSealerConfig(env: NodeJS.ProcessEnv): SealerConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const intervalMs = intSetting(env, problems, 'JOURNAL_SEAL_INTERVAL_MS', 200, 10, 60_000);
  const logLevel = logLevelSetting(env, problems);
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  return Object.freeze({
    databaseUrl: infra.databaseUrl,
    databaseTimeouts: infra.databaseTimeouts,
    intervalMs,
    logLevel,
  });
}

export async function start(
  cfg: SealerConfig,
  logger: Logger = createLogger({ service: 'journal-sealer', level: cfg.logLevel }),
) {
  const pool = createPool({
    connectionString: cfg.databaseUrl,
    max: 2,
    timeouts: cfg.databaseTimeouts,
    logger,
  });
  const sealer = startJournalSealer({ pool, logger, intervalMs: cfg.intervalMs });
  logger.info('journal sealer started');
  return {
    url: 'journal-sealer',
    async stop() {
      await sealer.stop();
      await pool.end();
      logger.info('journal sealer stopped');
    },
  };
}
