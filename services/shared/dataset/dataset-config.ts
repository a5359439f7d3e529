/**
 * Dataset settings shared by the exporter and the `erasure dataset` commands, read from the
 * environment once by their config loaders.
 */
import { TOPICS } from '../event-codec.ts';
import { collectInfraConfig } from '../infra-config.ts';
import type { S3Settings } from './dataset-store.ts';

/**
 * The local development key when neither DATASET_HMAC_KEY nor ERASURE_HMAC_KEY is set (the
 * same string as the API's default, so a local stack's hashes match); start-up warns.
 */
export const DEV_DATASET_HMAC_KEY = 'erasure-local-development-hmac-key-not-for-production';

export interface DatasetSettings {
  readonly bucket: string;
  /** DATASET_PREFIX: key prefix in the bucket, default 'erasure_events' (the contract). */
  readonly prefix: string;
  /**
   * DATASET_HMAC_KEY (at least 32 characters), else ERASURE_HMAC_KEY: the key of the
   * identifier_hmac column. A separate setting so warehouse teams can be given the dataset's
   * key without the intake's subject-hash key.
   */
  readonly hmacKey: Buffer;
  readonly hmacKeyIsDevDefault: boolean;
  /** S3_ENDPOINT, AWS_*, S3_CONNECT_TIMEOUT_MS, S3_SOCKET_TIMEOUT_MS (infra-config.ts). */
  readonly s3: S3Settings;
}

type Env = Readonly<Record<string, string | undefined>>;

/** Adds any problems to `problems`; undefined when there were some. */
export function loadDatasetSettings(env: Env, problems: string[]): DatasetSettings | undefined {
  const before = problems.length;
  const infra = collectInfraConfig(env, []);
  const prefix = (env['DATASET_PREFIX'] || 'erasure_events').replace(/\/+$/, '');
  if (!/^[A-Za-z0-9._-]+(\/[A-Za-z0-9._-]+)*$/.test(prefix) || prefix.length > 200)
    problems.push('DATASET_PREFIX must be path segments of A-Z a-z 0-9 . _ - separated by /');
  const raw = env['DATASET_HMAC_KEY'] || env['ERASURE_HMAC_KEY'] || undefined;
  if (raw !== undefined && raw.length < 32)
    problems.push('DATASET_HMAC_KEY (or ERASURE_HMAC_KEY) must be at least 32 characters');
  if (problems.length > before || !infra) return undefined;
  return Object.freeze({
    bucket: infra.s3.bucket,
    prefix,
    hmacKey: Buffer.from(raw ?? DEV_DATASET_HMAC_KEY, 'utf8'),
    hmacKeyIsDevDefault: raw === undefined,
    s3: infra.s3,
  });
}

/**
 * EXPORTER_TOPIC, default privacy.erasure.requested.v1 (the contract): the topic the
 * exporter reads, and so the one the dataset jobs check day closing against, name exporter
 * files by and backfill from. Read by the exporter's and the jobs' config loaders alike.
 */
export function exporterTopicSetting(env: Env, problems: string[]): string {
  const topic = env['EXPORTER_TOPIC'] || TOPICS.requested;
  if (!/^[A-Za-z0-9._-]{1,249}$/.test(topic)) problems.push('EXPORTER_TOPIC is not a valid topic name');
  return topic;
}
