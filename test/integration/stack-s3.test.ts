// Smoke test: the S3-compatible server is real, stores objects, and checks access keys.
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import {
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
} from '@aws-sdk/client-s3';
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
});
