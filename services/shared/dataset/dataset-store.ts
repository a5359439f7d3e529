/**
 * The dataset's object store: put, get, list and delete under one bucket, with S3 errors
 * classified once, here. A PutObject that returned is durable (S3's contract, and S3Proxy
 * writes the file before answering); LIST after PUT is strongly consistent on S3 since 2020,
 * which the exporter's crash recovery relies on.
 */
import {
  DeleteObjectsCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { ErasureError } from '../errors.ts';

/** An object-store call failed; `retriable` when a later attempt may succeed. */
export class DatasetStoreError extends ErasureError {
  constructor(message: string, retriable: boolean, detail?: Record<string, unknown>) {
    super('ERR_DATASET_S3', message, 500, retriable, detail);
  }
}

export interface S3Settings {
  readonly endpoint: string;
  readonly region: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
}

export function createS3Client(s3: S3Settings): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true, // S3Proxy and most S3-compatible servers; AWS accepts it too
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
  });
}

/** Status and name of an SDK error: 5xx, throttling and network failures are worth retrying. */
export function classifyS3Error(err: unknown, what: string): DatasetStoreError {
  const e = err as {
    name?: string;
    $metadata?: { httpStatusCode?: number };
    $retryable?: unknown;
    code?: string;
  };
  const status = e.$metadata?.httpStatusCode;
  const retriable =
    e.$retryable !== undefined ||
    status === undefined ||
    status >= 500 ||
    status === 429 ||
    /Throttl|SlowDown|Timeout|ECONN|EPIPE|socket/i.test(`${e.name} ${e.code}`);
  return new DatasetStoreError(
    `${what} failed: ${e.name ?? 'Error'}${status ? ` (HTTP ${status})` : ''}`,
    retriable,
    {
      s3Error: e.name,
      status,
    },
  );
}

export interface ListedObject {
  key: string;
  size: number;
}

export function createDatasetStore(client: S3Client, bucket: string) {
  return {
    bucket,
    async put(key: string, body: Uint8Array | string, contentType: string): Promise<void> {
      try {
        await client.send(
          new PutObjectCommand({
            Bucket: bucket,
            Key: key,
            Body: typeof body === 'string' ? Buffer.from(body, 'utf8') : body,
            ContentType: contentType,
          }),
        );
      } catch (err) {
        throw classifyS3Error(err, 'PutObject');
      }
    },
    /** The object's bytes, or undefined when there is none. */
    async get(key: string): Promise<Buffer | undefined> {
      try {
        const res = await client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
        return Buffer.from(await res.Body!.transformToByteArray());
      } catch (err) {
        const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
        if (e.name === 'NoSuchKey' || e.$metadata?.httpStatusCode === 404) return undefined;
        throw classifyS3Error(err, 'GetObject');
      }
    },
    /** Every object under `prefix`, in key order. */
    async list(prefix: string): Promise<ListedObject[]> {
      const out: ListedObject[] = [];
      let token: string | undefined;
      try {
        do {
          const res = await client.send(
            new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
          );
          for (const o of res.Contents ?? []) if (o.Key) out.push({ key: o.Key, size: o.Size ?? 0 });
          token = res.IsTruncated ? res.NextContinuationToken : undefined;
        } while (token);
      } catch (err) {
        throw classifyS3Error(err, 'ListObjectsV2');
      }
      return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
    },
    async delete(keys: readonly string[]): Promise<void> {
      for (let i = 0; i < keys.length; i += 1000) {
        try {
          await client.send(
            new DeleteObjectsCommand({
              Bucket: bucket,
              Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
            }),
          );
        } catch (err) {
          throw classifyS3Error(err, 'DeleteObjects');
        }
      }
    },
  };
}

export type DatasetStore = ReturnType<typeof createDatasetStore>;
