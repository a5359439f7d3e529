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
  /** Longest wait for a TCP connection, ms (S3_CONNECT_TIMEOUT_MS, infra-config.ts). */
  readonly connectTimeoutMs: number;
  /**
   * Longest silence on a connection during a call, ms (S3_SOCKET_TIMEOUT_MS). Idle time, not
   * the call's duration: an upload that keeps sending never trips it.
   */
  readonly socketTimeoutMs: number;
}

/**
 * The SDK waits forever by default: an endpoint that accepts connections and never answers
 * would hang the exporter (and its shutdown) and the dataset jobs. Both limits are idle
 * limits (NodeHttpHandler's connectionTimeout and socketTimeout); requestTimeout, a cap on
 * the whole call, is left off because a 128 MiB file on a slow link may take minutes. node
 * holds a socket's idle timer while a write is still draining into the kernel, so an upload
 * that keeps moving never trips it; what must fit in socketTimeout is the silence after the
 * last byte leaves: the kernel's send buffer (up to 4 MiB) reaching the server, and the
 * server's answer.
 */
export function createS3Client(s3: S3Settings): S3Client {
  return new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true, // S3Proxy and most S3-compatible servers; AWS accepts it too
    credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    requestHandler: {
      connectionTimeout: s3.connectTimeoutMs,
      socketTimeout: s3.socketTimeoutMs,
    },
  });
}

/**
 * Status, name and network code of an SDK error: 5xx, throttling, timeouts and network
 * failures are worth retrying. The message keeps what names the cause (`ECONNREFUSED`,
 * `TimeoutError`, the HTTP status); `cause` keeps the SDK's error itself.
 */
export function classifyS3Error(err: unknown, what: string): DatasetStoreError {
  const e = (err ?? {}) as {
    name?: string;
    message?: string;
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
    /Throttl|SlowDown|Timeout|ECONN|EPIPE|ETIMEDOUT|EAI_AGAIN|ENOTFOUND|socket/i.test(`${e.name} ${e.code}`);
  const name = e.name && e.name !== 'Error' ? e.name : undefined;
  const kind = [name, e.code].filter(Boolean).join(' ') || 'Error';
  // The SDK's own message for network errors says where and why ("connect ECONNREFUSED
  // 127.0.0.1:9000", "... timed out after 30000 ms of inactivity"); S3's for HTTP errors is
  // its <Message>. Neither carries object contents.
  const message = typeof e.message === 'string' && e.message !== '' && e.message !== e.name ? e.message : '';
  const error = new DatasetStoreError(
    `${what} failed: ${kind}${status ? ` (HTTP ${status})` : ''}${message ? `: ${message}` : ''}`,
    retriable,
    { s3Error: e.name, code: e.code, status },
  );
  error.cause = err;
  return error;
}

export interface ListedObject {
  key: string;
  size: number;
}

/** S3's x-amz-checksum-crc32: the CRC32's four bytes, big-endian, in base64. */
function crc32Base64(crc: number): string {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(crc >>> 0);
  return b.toString('base64');
}

export function createDatasetStore(client: S3Client, bucket: string) {
  return {
    bucket,
    /**
     * Writes the object. `digests`, when the caller has them (the exporter computes them on
     * its encoder thread): the body's SHA-256 (hex) and CRC32, sent as they are instead of
     * the S3 client hashing the body again. The SHA-256 is what SigV4 signs as the payload
     * hash and the server checks the body against; the CRC32 is S3's own checksum header.
     */
    async put(
      key: string,
      body: Uint8Array | string,
      contentType: string,
      digests?: { sha256: string; crc32?: number },
    ): Promise<void> {
      const crc32 = digests?.crc32;
      const command = new PutObjectCommand({
        Bucket: bucket,
        Key: key,
        Body: typeof body === 'string' ? Buffer.from(body, 'utf8') : body,
        ContentType: contentType,
        ...(crc32 !== undefined ? { ChecksumCRC32: crc32Base64(crc32) } : {}),
      });
      if (digests)
        command.middlewareStack.add(
          (next) => (args) => {
            // The signer takes a payload hash already in the headers as it is.
            const request = args.request as { headers?: Record<string, string> };
            if (request.headers) request.headers['x-amz-content-sha256'] = digests.sha256;
            return next(args);
          },
          { step: 'build', name: 'precomputedPayloadHash' },
        );
      try {
        await client.send(command);
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
    /**
     * Deletes keys, 1,000 per call. DeleteObjects answers 200 even when some keys could not
     * be deleted, listing them under Errors (Quiet mode lists only those): any such key
     * fails the whole call, retriable, so no caller counts a file gone that is still there.
     */
    async delete(keys: readonly string[]): Promise<void> {
      for (let i = 0; i < keys.length; i += 1000) {
        let failed: { Key?: string; Code?: string }[];
        try {
          const res = await client.send(
            new DeleteObjectsCommand({
              Bucket: bucket,
              Delete: { Objects: keys.slice(i, i + 1000).map((Key) => ({ Key })), Quiet: true },
            }),
          );
          failed = res.Errors ?? [];
        } catch (err) {
          throw classifyS3Error(err, 'DeleteObjects');
        }
        if (failed.length > 0) {
          const codes = [...new Set(failed.map((f) => f.Code ?? 'unknown'))].join(', ');
          throw new DatasetStoreError(
            `DeleteObjects failed for ${failed.length} of ${Math.min(1000, keys.length - i)} keys (${codes}), e.g. ${failed[0]?.Key ?? '?'}`,
            true,
            { s3Error: 'DeleteObjectsErrors', code: codes },
          );
        }
      }
    },
  };
}

export type DatasetStore = ReturnType<typeof createDatasetStore>;
