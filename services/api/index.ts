/**
 * Composition root of the API service: config → clients → app → listen; shutdown in
 * reverse order. No business logic here.
 */
import type { Server } from 'node:http';
import { S3Client } from '@aws-sdk/client-s3';
import { Kafka, logLevel } from 'kafkajs';
import pg from 'pg';
import { collectDefaultMetrics, Registry } from 'prom-client';
import { createLogger, type Logger } from '../shared/logger.ts';
import { dependencyChecks } from '../shared/readiness.ts';
import type { ApiConfig } from './config.ts';
import { createApp } from './create-app.ts';

export interface RunningService {
  /** Where it listens (for logs and the demo). */
  url: string;
  stop(): Promise<void>;
}

export async function start(
  cfg: ApiConfig,
  logger: Logger = createLogger({ service: 'api', level: cfg.logLevel }),
) {
  const pool = new pg.Pool({ connectionString: cfg.infra.databaseUrl, max: 20 });
  pool.on('error', (err) => logger.warn('idle postgres client failed', { code: 'ERR_PG_IDLE', error: err }));
  const kafka = new Kafka({
    clientId: 'erasure-api',
    brokers: [...cfg.infra.kafkaBrokers],
    logLevel: logLevel.WARN,
  });
  const kafkaAdmin = kafka.admin();
  await kafkaAdmin.connect();
  const s3 = new S3Client({
    endpoint: cfg.infra.s3.endpoint,
    region: cfg.infra.s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: cfg.infra.s3.accessKeyId, secretAccessKey: cfg.infra.s3.secretAccessKey },
  });
  const metrics = new Registry();
  collectDefaultMetrics({ register: metrics, prefix: 'erasure_api_' });

  const app = createApp({
    checks: dependencyChecks({
      pool,
      kafkaAdmin,
      schemaRegistryUrl: cfg.infra.schemaRegistryUrl,
      s3,
      bucket: cfg.infra.s3.bucket,
    }),
    metrics,
  });
  const server: Server = await new Promise((resolve) => {
    const s = app.listen(cfg.port, cfg.host, () => resolve(s));
  });
  const addr = server.address();
  const url = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : cfg.port}`;
  logger.info('api listening', { url });

  return {
    url,
    async stop() {
      await new Promise<void>((resolve) => server.close(() => resolve()));
      s3.destroy();
      await kafkaAdmin.disconnect();
      await pool.end();
      logger.info('api stopped');
    },
  } satisfies RunningService;
}
