/**
 * Composition root of the journal sealer: chains journal entries written by the other
 * services (see services/shared/journal.ts). One sealer works at a time across replicas
 * (an advisory lock); more replicas only stand by.
 */
import pg from 'pg';
import { ConfigurationError } from '../shared/errors.ts';
import { collectInfraConfig, intSetting } from '../shared/infra-config.ts';
import { startJournalSealer } from '../shared/journal.ts';
import { createLogger, type Logger } from '../shared/logger.ts';

export interface SealerConfig {
  readonly databaseUrl: string;
  /** JOURNAL_SEAL_INTERVAL_MS: pause between batches when idle, default 200. */
  readonly intervalMs: number;
  readonly logLevel: string;
}

export function loadSealerConfig(env: NodeJS.ProcessEnv): SealerConfig {
  const problems: string[] = [];
  const infra = collectInfraConfig(env, problems);
  const intervalMs = intSetting(env, problems, 'JOURNAL_SEAL_INTERVAL_MS', 200, 10, 60_000);
  if (problems.length > 0 || !infra) throw new ConfigurationError(problems);
  return Object.freeze({ databaseUrl: infra.databaseUrl, intervalMs, logLevel: env['LOG_LEVEL'] || 'info' });
}

export async function start(
  cfg: SealerConfig,
  logger: Logger = createLogger({ service: 'journal-sealer', level: cfg.logLevel }),
) {
  const pool = new pg.Pool({ connectionString: cfg.databaseUrl, max: 2 });
  pool.on('error', (err) => logger.warn('idle postgres client failed', { code: 'ERR_PG_IDLE', error: err }));
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
