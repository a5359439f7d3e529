/**
 * Composition root of the sync dispatcher (issue 5): calls the delete APIs of sync_http
 * targets for their due tasks, with retries, rate limits, adaptive throttling and a circuit
 * breaker per target. Any number of replicas may run against one database: tasks are
 * claimed FOR UPDATE SKIP LOCKED under a lease (claim-sync-tasks.ts). Calls are at least
 * once; every call carries an Idempotency-Key stable per task, so partners can dedupe.
 */
import type { Registry } from 'prom-client';
import { createPool } from '../shared/db/create-pool.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import type { SyncDispatcherConfig } from './config.ts';
import { createSyncDispatcher } from './dispatcher-loop.ts';
import { listenForOutbox } from '../shared/listen-for-outbox.ts';
import { createAgents } from './send-call.ts';
import { createSyncMetrics, type SyncMetrics } from './sync-metrics.ts';

export { loadSyncDispatcherConfig, type SyncDispatcherConfig } from './config.ts';

export async function start(
  cfg: SyncDispatcherConfig,
  logger: Logger = createLogger({ service: 'sync-dispatcher', level: cfg.logLevel }),
  opts: { registry?: Registry } = {},
): Promise<{ url: string; metrics: SyncMetrics; stop(): Promise<void> }> {
  const pool = createPool({
    connectionString: cfg.databaseUrl,
    max: 8,
    timeouts: cfg.databaseTimeouts,
    logger,
  });
  const metrics = createSyncMetrics(opts.registry);
  const agents = createAgents();
  const dispatcher = createSyncDispatcher({
    pool,
    logger,
    metrics,
    secrets: cfg.secrets,
    agents,
    options: { ...cfg, owner: cfg.dispatcherId },
  });
  const listener = listenForOutbox({
    connectionString: cfg.databaseUrl,
    timeouts: cfg.databaseTimeouts,
    onNotify: () => dispatcher.wake(),
    logger,
    listener: 'sync dispatcher',
    errorCode: 'ERR_SYNC_LISTEN',
    reconnect: { initialMs: 500, maxMs: 30_000, multiplier: 2 },
  });
  await listener.ready;
  dispatcher.start();
  logger.info('sync dispatcher started', { dispatcherId: cfg.dispatcherId, replicas: cfg.replicas });
  return {
    url: 'sync-dispatcher',
    metrics,
    async stop() {
      // Reverse order of creation: no new wake-ups, stop claiming and settle the calls in
      // flight (finish within the grace period, else abort and release), then close.
      await listener.stop();
      await dispatcher.stop();
      agents.http.destroy();
      agents.https.destroy();
      await pool.end();
      logger.info('sync dispatcher stopped');
    },
  };
}
