// Smoke test: the S3-compatible server is real, stores objects, and checks access keys.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
import { fileDigests, FileDigester } from '../../services/exporter/columnar-file.ts';
import { createDatasetStore, DatasetStoreError } from '../../services/shared/dataset/dataset-store.ts';
import { infra, testS3, uniqueName } from '../helpers/infra.ts';

describe('S3', () => {
  const s3 = testS3();
  const Bucket = infra.s3.bucket;
  const Key = `smoke/${uniqueName('object')}.bin`;
  after(async () => {
    await s3.send(new DeleteObjectCommand({ Bucket, Key })).catch(() => undefined);
    s3.destroy();
  });

  it('writes an object and reads the same bytes back, path-style', async () => {
    const body = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251));
    await s3.send(new PutObjectCommand({ Bucket, Key, Body: body }));
    const got = await s3.send(new GetObjectCommand({ Bucket, Key }));
    assert.deepEqual(Buffer.from(await got.Body!.transformToByteArray()), body);
    const listed = await s3.send(new ListObjectsV2Command({ Bucket, Prefix: 'smoke/' }));
    assert.ok(listed.Contents?.some((o) => o.Key === Key));
  });

  it('refuses a request signed with the wrong secret', async () => {
    const bad = testS3({ accessKeyId: infra.s3.accessKeyId, secretAccessKey: 'not-the-secret' });
    await assert.rejects(
      bad.send(new GetObjectCommand({ Bucket, Key })),
      (err: { $metadata?: { httpStatusCode?: number } }) => {
        assert.equal(err.$metadata?.httpStatusCode, 403);
        return true;
      },
    );
    bad.destroy();
  });

  it('checks the digests the exporter sends with an upload, and refuses a body that does not match', async () => {
    // The exporter's encoder thread feeds each row group to a FileDigester as it encodes it,
    // and the S3 client sends those digests instead of hashing the file again: they must be
    // the whole file's, and the server must hold them to the body.
    const store = createDatasetStore(s3, Bucket);
    const groups = [
      Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 7)),
      Buffer.from('second group'),
    ];
    const footer = Buffer.from('footer PAR1');
    const fed = new FileDigester();
    for (const g of groups) fed.update(g);
    const digests = fed.digest(footer);
    const bytes = Buffer.concat([Buffer.from('PAR1'), ...groups, footer]);
    assert.deepEqual(digests, fileDigests(bytes));
    await store.put(Key, bytes, 'application/vnd.apache.parquet', digests);
    assert.deepEqual(await store.get(Key), bytes);
    const other = fileDigests(Buffer.from('something else'));
    for (const wrong of [
      { sha256: other.sha256, crc32: digests.crc32 },
      { sha256: digests.sha256, crc32: other.crc32 },
    ])
      await assert.rejects(store.put(Key, bytes, 'application/octet-stream', wrong), (err) => {
        assert.ok(err instanceof DatasetStoreError);
        assert.equal(err.retriable, false, 'a 400, not worth retrying');
        return true;
      });
  });
});
