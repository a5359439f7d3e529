import { HeadBucketCommand, type S3Client } from '@aws-sdk/client-s3';
import type { Admin } from 'kafkajs';
import type pg from 'pg';

export type Check = () => Promise<void>;

/** Readiness of each dependency: a cheap real request, bounded in time. */
export function dependencyChecks(deps: {
  pool: pg.Pool;
  kafkaAdmin: Admin;
  schemaRegistryUrl: string;
  s3: S3Client;
  bucket: string;
}): Record<string, Check> {
  return {
    postgres: async () => {
      await deps.pool.query('SELECT 1');
    },
    kafka: async () => {
      await deps.kafkaAdmin.describeCluster();
    },
    registry: async () => {
      const res = await fetch(`${deps.schemaRegistryUrl}/subjects`, { signal: AbortSignal.timeout(2000) });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
    },
    s3: async () => {
      await deps.s3.send(new HeadBucketCommand({ Bucket: deps.bucket }), {
        abortSignal: AbortSignal.timeout(2000),
      });
    },
  };
}

export async function runChecks(
  checks: Record<string, Check>,
  timeoutMs = 3000,
): Promise<{ ready: boolean; checks: Record<string, string> }> {
  const names = Object.keys(checks);
  const results = await Promise.allSettled(
    names.map((n) =>
      Promise.race([
        checks[n]!(),
        new Promise<never>((_, reject) =>
          setTimeout(() => reject(new Error('timed out')), timeoutMs).unref(),
        ),
      ]),
    ),
  );
  const out: Record<string, string> = {};
  results.forEach((r, i) => {
    out[names[i]!] = r.status === 'fulfilled' ? 'ok' : `failing: ${(r.reason as Error)?.message ?? r.reason}`;
  });
  return { ready: results.every((r) => r.status === 'fulfilled'), checks: out };
}
