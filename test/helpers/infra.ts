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
  // pool.end() resolves once its clients are told to end, before their server sessions are
  // gone; drop()'s DROP DATABASE ... WITH (FORCE) may then terminate one, and that client's
  // "terminating connection due to administrator command" reaches the pool as an 'error'
  // event: without a listener, an uncaught exception that failed a test file in CI.
  pool.on('error', () => undefined);
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
    // The SDK's default 3 attempts, as the services' clients have: a call that reuses a
    // keep-alive connection the server is closing just then gets `socket hang up`, which
    // the SDK retries (with one attempt, the exporter tests' cleanup failed a CI run so).
  });
}

/** Each partition's end offset now: events produced later are after it. */
export async function topicEnd(topic: string): Promise<{ partition: number; offset: string }[]> {
  const admin = testKafka().admin();
  await admin.connect();
  try {
    return (await admin.fetchTopicOffsets(topic)).map((p) => ({ partition: p.partition, offset: p.high }));
  } finally {
    await admin.disconnect();
  }
}

/**
 * Positions a consumer group that has never committed at `offsets`, so a test's consumer
 * reads only what the test produced, not the history other runs left on a shared topic
 * (a new group would otherwise start at the beginning and wade through all of it).
 * A group with committed offsets is left alone (a restart must resume where it was).
 */
export async function positionNewGroup(
  groupId: string,
  topic: string,
  offsets: { partition: number; offset: string }[],
): Promise<void> {
  const admin = testKafka().admin();
  await admin.connect();
  try {
    const [committed] = await admin.fetchOffsets({ groupId, topics: [topic] });
    if (committed?.partitions.some((p) => p.offset !== '-1')) return;
    await admin.setOffsets({ groupId, topic, partitions: offsets });
  } finally {
    await admin.disconnect();
  }
}
