import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { S3Client } from '@aws-sdk/client-s3';
import { Kafka, logLevel } from 'kafkajs';
import { loadInfraConfig } from '../../services/shared/infra-config.ts';

/** The same settings the pipeline uses; tests run against the real stack they point at. */
export const infra = loadInfraConfig(process.env);

export function uniqueName(prefix: string): string {
  return `${prefix}_${randomBytes(6).toString('hex')}`;
}

/**
 * A fresh database per test file (isolation without mocks), dropped by `drop()`.
 */
export async function createTestDatabase(): Promise<{
  pool: pg.Pool;
  url: string;
  drop: () => Promise<void>;
}> {
  const name = uniqueName('test');
  const admin = new pg.Client({ connectionString: infra.databaseUrl });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${name}`);
  await admin.end();
  const u = new URL(infra.databaseUrl);
  u.pathname = `/${name}`;
  const url = u.toString();
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  return {
    pool,
    url,
    drop: async () => {
      await pool.end();
      const c = new pg.Client({ connectionString: infra.databaseUrl });
      await c.connect();
      await c.query(`DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
      await c.end();
    },
  };
}

export function testKafka(clientId = uniqueName('test')): Kafka {
  return new Kafka({ clientId, brokers: [...infra.kafkaBrokers], logLevel: logLevel.NOTHING });
}

export function testS3(
  credentials = { accessKeyId: infra.s3.accessKeyId, secretAccessKey: infra.s3.secretAccessKey },
) {
  return new S3Client({
    endpoint: infra.s3.endpoint,
    region: infra.s3.region,
    forcePathStyle: true,
    credentials,
    maxAttempts: 1,
  });
}
