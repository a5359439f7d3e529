import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadBucketCommand,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { livePid, spawnDaemon, stopDaemon, waitUntil } from '../processes.ts';
import { StackError } from '../stack-error.ts';
import { mavenClasspath, renderTemplate, requireJava } from '../toolchain.ts';
import type { StackConfig } from '../stack-config.ts';
import type { Part } from './part.ts';

export function createS3Part(cfg: StackConfig): Part {
  const name = 's3';
  const external = cfg.infra.external.s3;
  const logFile = join(cfg.logsDir, 's3.log');
  const pidFile = join(cfg.runDir, 's3.pid');
  const workDir = join(cfg.dataDir, 's3');
  const port = cfg.ports.s3Port;
  const endpoint = external ? cfg.infra.s3.endpoint : `http://127.0.0.1:${port}`;
  let classpath = '';

  return {
    name,
    processCount: 1,
    dependsOn: [],
    external,
    endpoint,
    logFile,
    ports: [port],
    async fetch() {
      if (external) return;
      requireJava(name);
      classpath = await mavenClasspath(cfg, name, 's3');
    },
    running() {
      const pid = livePid(pidFile);
      return pid === undefined ? [] : [pid];
    },
    async start() {
      mkdirSync(join(workDir, 'objects'), { recursive: true });
      const props = join(workDir, 's3proxy.properties');
      writeFileSync(
        props,
        renderTemplate(cfg, 's3/s3proxy.properties', {
          PORT: port,
          ACCESS_KEY: cfg.infra.s3.accessKeyId,
          SECRET_KEY: cfg.infra.s3.secretAccessKey,
          BASE_DIR: join(workDir, 'objects'),
        }),
        { mode: 0o600 },
      );
      spawnDaemon({
        command: 'java',
        args: [
          '-Xms64m',
          '-Xmx256m',
          '-XX:+UseSerialGC',
          '-cp',
          classpath,
          'org.gaul.s3proxy.Main',
          '--properties',
          props,
        ],
        cwd: workDir,
        logFile,
        pidFile,
      });
    },
    async probe(timeoutMs) {
      const pid = external ? undefined : livePid(pidFile);
      const s3 = new S3Client({
        endpoint,
        region: cfg.infra.s3.region,
        forcePathStyle: true,
        credentials: { accessKeyId: cfg.infra.s3.accessKeyId, secretAccessKey: cfg.infra.s3.secretAccessKey },
        maxAttempts: 1,
      });
      const Bucket = cfg.infra.s3.bucket;
      try {
        await waitUntil(
          async () => {
            try {
              await s3.send(new HeadBucketCommand({ Bucket }));
            } catch (err) {
              const status = (err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
              if (status !== 404) throw err;
              await s3.send(new CreateBucketCommand({ Bucket }));
            }
            // A real round trip: put an object and read the same bytes back.
            const Key = '_stack/health';
            const body = randomUUID();
            await s3.send(new PutObjectCommand({ Bucket, Key, Body: body }));
            const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
            const text = await got.Body?.transformToString();
            if (text !== body) throw new Error('object read back differs from what was written');
          },
          { what: 'storing and serving objects', timeoutMs, pid },
        );
      } catch (err) {
        throw new StackError(
          name,
          (err as Error).message || (err as Error).name,
          external ? undefined : logFile,
        );
      } finally {
        s3.destroy();
      }
    },
    async stop() {
      return stopDaemon(pidFile, 'SIGTERM', 15_000);
    },
  };
}
