/**
 * Composition root of the API service: config → clients → app → listen; shutdown in
 * reverse order. No business logic here.
 */
import type { Server } from 'node:http';
import { join } from 'node:path';
import { Kafka, logLevel } from 'kafkajs';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createS3Client } from '../shared/dataset/dataset-store.ts';
import { createPool } from '../shared/db/create-pool.ts';
import { createLogger, type Logger } from '../shared/logger.ts';
import { dependencyChecks } from '../shared/readiness.ts';
import type { RunningService } from '../shared/service-group.ts';
import { createTokenStore } from './auth/token-store.ts';
import type { ApiConfig } from './config.ts';
import { createApp } from './create-app.ts';
import { hardenServer } from './http/harden-server.ts';

const REPO_ROOT = join(import.meta.dirname, '..', '..');

export async function start(
  cfg: ApiConfig,
  logger: Logger = createLogger({ service: 'api', level: cfg.logLevel }),
  /**
   * registry: the process's metrics registry, served on /metrics (other services in the
   * process register into it too). metricsText: what /metrics serves instead (an API worker
   * serves its whole process group's, cluster.ts).
   */
  opts: { registry?: Registry; metricsText?: () => Promise<string> } = {},
) {
  // JIT off: intake statements are short and many; compiling a 10,000-row accept costs
  // more than it saves (measured: 0.7 s of a 1.75 s batch).
  const pool = createPool({
    connectionString: cfg.infra.databaseUrl,
    max: cfg.dbPoolSize,
    timeouts: cfg.infra.databaseTimeouts,
    options: '-c jit=off',
    logger,
  });
  const tokens = createTokenStore({ pool, cacheMs: cfg.tokenCacheMs });
  if (cfg.adminToken) await tokens.bootstrapAdmin(cfg.adminToken);
  else
    logger.warn('ERASURE_ADMIN_TOKEN is not set: no admin token is bootstrapped', {
      code: 'WARN_NO_ADMIN_TOKEN',
    });
  if (cfg.hmacKeyIsDevDefault) {
    logger.warn('ERASURE_HMAC_KEY is not set: using the local development key', {
      code: 'WARN_DEV_HMAC_KEY',
    });
  }

  const kafka = new Kafka({
    clientId: 'erasure-api',
    brokers: [...cfg.infra.kafkaBrokers],
    logLevel: logLevel.NOTHING,
  });
  const kafkaAdmin = kafka.admin();
  await kafkaAdmin
    .connect()
    .catch((err: Error) => logger.warn('kafka not reachable yet', { code: 'ERR_KAFKA', error: err }));
  const s3 = createS3Client(cfg.infra.s3);
  const metrics = opts.registry ?? new Registry();
  collectDefaultMetrics({ register: metrics, prefix: 'erasure_api_' });

  const app = createApp({
    cfg,
    pool,
    tokens,
    logger,
    metrics,
    metricsText: opts.metricsText,
    openApiPath: join(REPO_ROOT, 'schemas', 'openapi.json'),
    checks: dependencyChecks({
      pool,
      kafkaAdmin,
      schemaRegistryUrl: cfg.infra.schemaRegistryUrl,
      s3,
      bucket: cfg.infra.s3.bucket,
    }),
  });
  /**
   * Closes the clients in reverse order of creation: their sockets keep the process alive.
   * The first error stops the sequence and rejects, unless ignoreErrors: then every client
   * is still closed.
   */
  const closeClients = async (ignoreErrors = false): Promise<void> => {
    const onError = ignoreErrors ? () => undefined : undefined;
    s3.destroy();
    await kafkaAdmin.disconnect().catch(onError);
    await pool.end().catch(onError);
  };
  let server: Server;
  try {
    server = await new Promise((resolve, reject) => {
      // Express 5 also registers this callback with server.once('error'), so a listen error
      // (port in use) rejects here.
      const s = app.listen(cfg.port, cfg.host, (err?: Error) => (err ? reject(err) : resolve(s)));
      hardenServer(s, cfg, logger); // before 'listening', which reads its check interval
    });
  } catch (err) {
    // Nothing listens: close the clients made for it; the listen error is the one to report.
    await closeClients(true);
    throw err;
  }
  const addr = server.address();
  const url = `http://${cfg.host}:${typeof addr === 'object' && addr ? addr.port : cfg.port}`;
  logger.info('api listening', { url });

  return {
    url,
    async stop() {
      // Stop intake first, then background work, then clients: reverse order of creation.
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeIdleConnections();
      });
      await closeClients();
      logger.info('api stopped');
    },
  } satisfies RunningService;
}
