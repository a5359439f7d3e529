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
import { createTokenStore } from './auth/token-store.ts';
import type { ApiConfig } from './config.ts';
import { createApp } from './create-app.ts';
import { hardenServer } from './http/harden-server.ts';

export interface RunningService {
  /** Where it listens (for logs and the demo). */
  url: string;
  stop(): Promise<void>;
}

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
  let server: Server;
  try {
    server = await new Promise((resolve, reject) => {
      // Express 5 hands a listen error (port in use) to this callback, not to an 'error' listener.
      const s = app.listen(cfg.port, cfg.host, (err?: Error) => (err ? reject(err) : resolve(s)));
      s.once('error', reject);
      hardenServer(s, cfg, logger); // before 'listening', which reads its check interval
    });
  } catch (err) {
    // Nothing listens: close the clients made for it, or their sockets keep the process alive.
    s3.destroy();
    await kafkaAdmin.disconnect().catch(() => undefined);
    await pool.end().catch(() => undefined);
    throw err;
  }
  server.keepAliveTimeout = 65_000;
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
      s3.destroy();
      await kafkaAdmin.disconnect();
      await pool.end();
      logger.info('api stopped');
    },
  } satisfies RunningService;
}
